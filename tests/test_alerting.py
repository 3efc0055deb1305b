"""End-to-end tests of Telltale's alerting: rules and channels in PostgreSQL, the state
machine (for / hysteresis / keep-firing / no data), the durable outbox and its delivery
to Slack, Discord, Teams and generic webhooks (faked by tests/fakes/chat_receiver.py),
leader election between replicas, the admin portal's thresholds, and the CLI
(`telltale migrate`, `telltale test-notify`).

Every test gets a fresh database ``tt_alert_<random>`` (owned by role ``telltale``,
created and dropped by the superuser through TELLTALE_PG_ADMIN_DSN), migrated with
``telltale migrate``.  It also holds the source table ``tt_level_src (svc, v)`` that the
SQL metric ``tt_level{svc}`` reads every 500 ms — the value the tests move across
thresholds.  Advisory locks are per database, so each test has its own leader.

Run against private services while developing:

    TELLTALE_RUN_DIR=/tmp/tt-atests TELLTALE_PG_PORT=55832 TELLTALE_REDIS_PORT=56779 \
        bash scripts/services.sh start
    TELLTALE_RUN_DIR=/tmp/tt-atests .venv/bin/python -m pytest tests/test_alerting.py -q
"""

from __future__ import annotations

import html
import json
import math
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from chat_receiver import ChatReceiver, Recorded  # noqa: E402

import helpers  # noqa: E402
from conftest import find_free_port  # noqa: E402
from helpers import psql_binary, run_psql, scrape  # noqa: E402

EXTERNAL_URL = "http://example.test/telltale"
SECRET = "SECRET-TOKEN-123"
FIRING_AFTER = 6.0  # seconds allowed from a value change to the message at the receiver
LEVEL_COLLECTOR = "sql:main:tt_level"  # the collector of tt_level (every 500 ms)


# ------------------------------------------------------------------ utilities


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """helpers.wait_until(), where a failed assert, connection, parse or lookup in
    ``predicate`` also means "not yet" (telltale not serving yet, a series not there yet)."""
    return helpers.wait_until(predicate, timeout, what, interval, ignore=(AssertionError, OSError, ValueError, KeyError))


def sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return "'NaN'::float8"
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def status_rows(tt) -> list[list[str]]:
    """The table rows of `/`, as lists of unescaped cell texts."""
    page = tt.get("/").text
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", page, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        if cells:
            rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return rows


def status_row(tt, first_cell: str) -> list[str] | None:
    """The last row starting with `first_cell`: a rule's row in the Rules table, which comes
    after the Alerts table (whose rows start with their rule's name too)."""
    for row in reversed(status_rows(tt)):
        if row[0] == first_cell:
            return row
    return None


def rfc3339(text: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def all_strings(value: Any) -> str:
    """Every string and number in a JSON document, joined: what a message says."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                out.append(str(k))
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif v is not None:
            out.append(str(v))

    walk(value)
    return "\n".join(out)


def status_of(r: Recorded) -> str:
    """firing/resolved/test from any platform's payload (the webhook's status field, or
    the title, which every chat platform shows)."""
    body = r.json
    if isinstance(body, dict) and body.get("version") == "4":
        return body["status"]
    text = all_strings(body)
    for word in ("RESOLVED", "FIRING", "TEST"):
        if word in text:
            return word.lower()
    raise AssertionError(f"cannot tell the status of {r.text[:300]}")


# ------------------------------------------------------------------- harness


class Harness:
    """One test's alerting database, channels (pointing at the fake receiver) and
    telltale processes."""

    def __init__(self, env: dict[str, str], rx: ChatReceiver, run_cli, start_telltale, tmp_path: Path) -> None:
        self.rx = rx
        self._run_cli = run_cli
        self._start = start_telltale
        self.tmp = tmp_path
        self.psql = psql_binary(env)
        self.admin_dsn = env["TELLTALE_PG_ADMIN_DSN"]
        self.db = f"tt_alert_{uuid.uuid4().hex[:10]}"
        self.dsn = (f"postgres://telltale:{urllib.parse.quote(env['TELLTALE_PG_PASSWORD'], safe='')}"
                    f"@127.0.0.1:{env['TELLTALE_PG_PORT']}/{self.db}")
        self.env: dict[str, str | None] = {"TELLTALE_PG_DSN": self.dsn}
        self.started: list = []
        self.config_path: Path | None = None
        self._psql(self.admin_dsn, f"CREATE DATABASE {self.db} OWNER telltale")
        self.created = True
        self.sql("""
            CREATE TABLE tt_level_src (svc text NOT NULL, v double precision);
            ALTER TABLE tt_level_src OWNER TO telltale;
            INSERT INTO tt_level_src VALUES ('api', 1);
        """)

    # -- SQL as the superuser, in this test's database
    def _db_dsn(self) -> str:
        if "://" in self.admin_dsn:
            parts = urllib.parse.urlsplit(self.admin_dsn)
            return urllib.parse.urlunsplit(parts._replace(path="/" + self.db))
        return f"{self.admin_dsn} dbname={self.db}"

    def _psql(self, dsn: str, sql: str) -> str:
        return run_psql(self.psql, dsn, sql)

    def sql(self, sql: str) -> str:
        return self._psql(self._db_dsn(), sql)

    def rows(self, query: str) -> list[dict[str, Any]]:
        return json.loads(self.sql(f"SELECT coalesce(json_agg(row_to_json(t)), '[]') FROM ({query}) t"))

    def set_level(self, v: float, svc: str = "api") -> None:
        self.sql(f"UPDATE tt_level_src SET v = {sql_literal(float(v))} WHERE svc = {sql_literal(svc)}")

    # -- channels and rules
    def add_channel(self, name: str, kind: str, path: str | None = None, *, url: str | None = None,
                    enabled: bool = True, env_name: str | None = None) -> str:
        """A channel whose URL (a secret, with SECRET in it) is in an environment variable
        of the telltale processes; returns the receiver path."""
        path = path or f"/hooks/{kind}/{name}/{SECRET}"
        env_name = env_name or "TELLTALE_CHANNEL_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
        self.env[env_name] = url or self.rx.url_for(path)
        self.sql(f"INSERT INTO telltale_channels (name, kind, url_env, enabled) VALUES "
                 f"({sql_literal(name)}, {sql_literal(kind)}, {sql_literal(env_name)}, {sql_literal(enabled)})")
        return path

    def add_rule(self, name: str, threshold: float, *, comparison: str = ">", channel: str | None = None,
                 for_seconds: float = 0, clear: float | None = None, keep: float = 0, severity: str = "critical",
                 matchers: str = "", description: str | None = "tt_level is too high",
                 environment: str = "production", metric: str = "tt_level") -> None:
        self.sql(f"""
            INSERT INTO telltale_alert_rules (name, environment, metric, matchers, comparison, threshold,
                clear_threshold, for_seconds, keep_firing_seconds, severity, channel, description, updated_by)
            VALUES ({sql_literal(name)}, {sql_literal(environment)}, {sql_literal(metric)}, {sql_literal(matchers)},
                {sql_literal(comparison)}, {sql_literal(threshold)}::float8, {sql_literal(clear)}::float8,
                {sql_literal(for_seconds)}, {sql_literal(keep)}, {sql_literal(severity)}, {sql_literal(channel)},
                {sql_literal(description)}, 'pytest')
        """)

    def notifications(self, where: str = "true") -> list[dict[str, Any]]:
        return self.rows(f"SELECT id, idempotency_key, channel, rule, series, status, attempts, "
                         f"delivered_at IS NOT NULL AS delivered, failed_at IS NOT NULL AS failed, last_error, event "
                         f"FROM telltale_notifications WHERE {where} ORDER BY id")

    # -- configuration and processes
    def write_config(self, *, alerting: dict[str, Any] | None = None, host: bool = False,
                     log_level: str | None = None, queries: list[dict[str, Any]] | None = None) -> Path:
        cfg: dict[str, Any] = {
            "collectors": {
                "host": {"enabled": True, "interval": "1s", "timeout": "1s"} if host else {"enabled": False},
                "process": {"enabled": False},
            },
            "postgres": [{
                "name": "main",
                "dsn": "${TELLTALE_PG_DSN}",
                "health": {"enabled": False, "database_size": {"enabled": False}},
                "queries": [{"metric": "tt_level", "sql": "SELECT svc, v FROM tt_level_src", "labels": ["svc"],
                             "values": ["v"], "interval": "500ms", "timeout": "500ms"}] + (queries or []),
            }],
            "alerting": {"dsn": "${TELLTALE_PG_DSN}", "interval": "1s", "external_url": EXTERNAL_URL,
                         **(alerting or {})},
        }
        if log_level:
            cfg["log"] = {"level": log_level}
        self.config_path = self.tmp / f"alerting-{len(self.started)}.yml"
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return self.config_path

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        if self.config_path is None:
            self.write_config()
        return self._run_cli([*args, "--config", str(self.config_path)], env=self.env, timeout=timeout)

    def migrate(self) -> subprocess.CompletedProcess:
        r = self.cli("migrate")
        assert r.returncode == 0, f"telltale migrate failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r

    def start(self, wait_leader: bool = True, **config: Any):
        """`telltale serve` on this database; with wait_leader, until it holds the lock."""
        if config or self.config_path is None:
            self.write_config(**config)
        tt = self._start(self.config_path, env=self.env)
        self.started.append(tt)
        if wait_leader:
            try:
                wait_until(lambda: scrape(tt).get("telltale_alerting_leader") == 1, 10, "telltale_alerting_leader 1")
            except AssertionError as e:
                alerting = "\n".join(line for line in tt.metrics().splitlines() if "alert" in line)
                raise AssertionError(f"{e}\n{alerting}\n{tt.describe()}") from None
        return tt

    def close(self) -> None:
        for tt in self.started:
            tt.kill()
        if self.created:
            try:
                self._psql(self.admin_dsn, f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
            except AssertionError:
                pass

    # -- receiver conveniences
    def wait_accepted(self, path: str, n: int, timeout: float = FIRING_AFTER) -> list[Recorded]:
        return self.rx.wait_for(lambda rx: (lambda a: a if len(a) >= n else None)(rx.accepted(path)),
                                timeout, f"{n} accepted request(s) on {path}")

    # -- waiting on telltale instead of sleeping
    def runs(self, tt, n: int = 3, collector: str = LEVEL_COLLECTOR):
        """Waits for ``n`` more runs of ``collector`` (the query of tt_level) on ``tt`` and
        returns that scrape (helpers.wait_runs).  Every run wakes the evaluator, so
        afterwards the levels set so far have been evaluated: a transition they call for is
        in tt's alert metrics and, on the leader, in the outbox.  The positive sign to wait
        for before checking that something did *not* happen."""
        return helpers.wait_runs(tt, collector, n)

    def level_seen(self, tt, v: float, svc: str = "api") -> None:
        """Waits until ``tt`` has collected tt_level{svc} == v and evaluated it (one more run)."""
        helpers.wait_for(tt, lambda s: s.get("tt_level", svc=svc) == v, 10, f"tt_level{{svc={svc!r}}} {v} collected")
        self.runs(tt, 1)

    def quiet(self, tt, collector: str = LEVEL_COLLECTOR) -> None:
        """Waits until nothing more can be sent: ``tt`` (the leader) has evaluated the current
        levels, so every transition they call for is in the outbox, and every outbox row is
        delivered or failed for good.  Only outbox rows are ever sent, so the receiver now
        has all it will get until a level changes."""
        self.runs(tt, 3, collector)
        wait_until(lambda: self.sql("SELECT count(*) FROM telltale_alert_transitions WHERE flush_id IS NULL") == "0"
                   and all(x["delivered"] or x["failed"] for x in self.notifications()), FIRING_AFTER + 10,
                   "every transition in a message, every outbox row delivered or failed")


@pytest.fixture
def rx() -> Iterator[ChatReceiver]:
    receiver = ChatReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def h(pg_env, rx, run_cli, start_telltale, tmp_path) -> Iterator[Harness]:
    harness = Harness(pg_env, rx, run_cli, start_telltale, tmp_path)
    try:
        harness.first_migrate = harness.migrate()
        yield harness
    finally:
        harness.close()


# --------------------------------------------------------------------- CLI


def test_migrate_is_idempotent(h: Harness) -> None:
    first = h.first_migrate
    assert "applied migrations: 1" in first.stdout, first.stdout + first.stderr
    tables = h.sql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE tablename LIKE 'telltale_%'")
    assert set(tables.split(",")) >= {"telltale_channels", "telltale_alert_rules", "telltale_alert_state",
                                      "telltale_notifications"}, tables
    h.add_rule("kept", 5)
    second = h.migrate()
    assert "up to date" in second.stdout, second.stdout + second.stderr
    third = h.migrate()
    assert "up to date" in third.stdout, third.stdout + third.stderr
    assert h.sql("SELECT count(*) FROM telltale_alert_rules") == "1", "migrate must not touch existing rows"
    # Every migration was applied by the first run (1, then the later versions), none again.
    applied = re.search(r"applied migrations: ([\d, ]+)", first.stdout).group(1).strip()
    assert h.sql("SELECT string_agg(version::text, ', ' ORDER BY version) FROM telltale_schema_migrations") == applied


def test_test_notify_cli(h: Harness) -> None:
    ok_path = h.add_channel("works", "webhook")
    gone_path = h.add_channel("gone", "slack")
    h.rx.set_mode(gone_path, "not_found")
    refused_url = f"http://127.0.0.1:{find_free_port()}/hooks/{SECRET}"
    h.add_channel("refused", "discord", url=refused_url)

    r = h.cli("test-notify", "works")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "works" in r.stdout and "delivered" in r.stdout.lower(), r.stdout
    got = h.rx.accepted(ok_path)
    assert len(got) == 1, h.rx.requests()
    assert got[0].json["version"] == "4" and got[0].json["alerts"], got[0].json

    r = h.cli("test-notify", "gone")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "404" in r.stdout + r.stderr, r.stdout + r.stderr
    assert len(h.rx.requests(gone_path)) == 1

    r2 = h.cli("test-notify", "refused")
    assert r2.returncode == 1, r2.stdout + r2.stderr
    r3 = h.cli("test-notify", "no-such-channel")
    assert r3.returncode == 1, r3.stdout + r3.stderr
    assert "no-such-channel" in r3.stdout + r3.stderr
    for out in (r, r2, r3):
        assert SECRET not in out.stdout + out.stderr, out.stdout + out.stderr
        assert h.rx.url not in out.stdout + out.stderr


# ----------------------------------------------------------- payload shapes


def check_slack(body: dict[str, Any], status: str) -> None:
    assert isinstance(body.get("text"), str) and body["text"], body
    assert len(body["text"]) <= 40000
    att = body["attachments"][0]
    assert re.fullmatch(r"#[0-9A-Fa-f]{6}", att["color"]), att["color"]
    assert isinstance(att["title"], str) and att["title"]
    assert isinstance(att["fields"], list) and att["fields"]
    for f in att["fields"]:
        assert isinstance(f["title"], str) and f["title"], f
        assert isinstance(f["value"], str) and f["value"], f
        assert isinstance(f.get("short", False), bool)
    assert status.upper() in body["text"] + att["title"]


def check_discord(r: Recorded, status: str) -> dict[str, Any]:
    assert r.query.get("wait") == ["true"], r.query
    body = r.json
    embeds = body["embeds"]
    assert 1 <= len(embeds) <= 10
    e = embeds[0]
    assert isinstance(e["title"], str) and 0 < len(e["title"]) <= 256, e.get("title")
    assert isinstance(e.get("description", ""), str) and len(e.get("description", "")) <= 4096
    assert isinstance(e["color"], int) and 0 <= e["color"] <= 0xFFFFFF, e["color"]
    fields = e.get("fields", [])
    assert len(fields) <= 25
    total = len(e["title"]) + len(e.get("description", "")) + len(e.get("footer", {}).get("text", ""))
    for f in fields:
        assert isinstance(f["name"], str) and 0 < len(f["name"]) <= 256, f
        assert isinstance(f["value"], str) and 0 < len(f["value"]) <= 1024, f
        total += len(f["name"]) + len(f["value"])
    assert total <= 6000, f"embed text totals {total} characters (Discord allows 6000)"
    if "content" in body:
        assert len(body["content"]) <= 2000
    assert status.upper() in e["title"]
    return e


def check_teams(body: dict[str, Any], status: str) -> dict[str, Any]:
    assert body["type"] == "message"
    att = body["attachments"][0]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    assert card["type"] == "AdaptiveCard"
    assert re.fullmatch(r"1\.\d+", str(card["version"])), card.get("version")
    assert isinstance(card["body"], list) and card["body"]
    for element in card["body"]:
        assert isinstance(element.get("type"), str), element
    assert status.upper() in all_strings(card["body"])
    assert len(json.dumps(body).encode()) <= 28 * 1024, "Teams messages are limited to 28 KB"
    return card


def check_webhook(body: dict[str, Any], status: str, receiver: str, rule: str, severity: str) -> dict[str, Any]:
    assert body["version"] == "4"
    assert body["status"] == status
    assert body["receiver"] == receiver
    assert isinstance(body["alerts"], list) and len(body["alerts"]) == 1
    alert = body["alerts"][0]
    assert alert["status"] == status
    assert alert["labels"]["alertname"] == rule
    assert alert["labels"]["severity"] == severity
    assert isinstance(alert["annotations"], dict)
    starts = rfc3339(alert["startsAt"])
    ends = rfc3339(alert["endsAt"])
    if status == "resolved":
        assert ends >= starts, (alert["startsAt"], alert["endsAt"])
    else:
        assert ends.year < 1000 or ends >= starts, alert["endsAt"]  # Alertmanager sends 0001-01-01 or a future time
    assert alert["generatorURL"] == EXTERNAL_URL
    return alert


def test_payload_shapes_per_platform(h: Harness) -> None:
    paths = {kind: h.add_channel(f"c-{kind}", kind) for kind in ("slack", "discord", "teams", "webhook")}
    for kind in paths:
        h.add_rule(f"level_high_{kind}", 10, channel=f"c-{kind}", severity="critical",
                   description=f"The API level is too high ({kind})")
    h.set_level(42.5)
    tt = h.start()
    for path in paths.values():
        h.wait_accepted(path, 1)
    h.set_level(1.25)
    for path in paths.values():
        h.wait_accepted(path, 2)
    h.quiet(tt)  # nothing more may come

    for kind, path in paths.items():
        got = h.rx.accepted(path)
        assert len(got) == 2, (kind, [r.text[:200] for r in got])
        assert len(h.rx.requests(path)) == 2
        firing, resolved = got
        rule = f"level_high_{kind}"
        for r, status, value in ((firing, "firing", "42.5"), (resolved, "resolved", "1.25")):
            assert r.method == "POST"
            assert r.headers.get("content-type", "").startswith("application/json"), r.headers
            assert r.idempotency_key, r.headers
            body = r.json
            assert isinstance(body, dict), r.text[:300]
            text = all_strings(body)
            # rule, environment, severity, value, threshold, labels, description and the link
            for needle in (rule, "production", "critical", value, "10", "svc", "api", EXTERNAL_URL,
                           f"The API level is too high ({kind})"):
                assert needle in text, f"{kind} {status} message lacks {needle!r}:\n{json.dumps(body, indent=1)}"
            if kind == "slack":
                check_slack(body, status)
                assert body["attachments"][0].get("title_link") == EXTERNAL_URL
            elif kind == "discord":
                e = check_discord(r, status)
                assert e.get("url") == EXTERNAL_URL
            elif kind == "teams":
                check_teams(body, status)
            else:
                alert = check_webhook(body, status, f"c-{kind}", rule, "critical")
                assert alert["labels"].get("svc") == "api"
                assert alert["labels"].get("environment") == "production"
        assert firing.idempotency_key != resolved.idempotency_key
        assert status_of(firing) == "firing" and status_of(resolved) == "resolved"
    # firing and resolved are told apart by colour where the platform has one
    s = [r.json["attachments"][0]["color"] for r in h.rx.accepted(paths["slack"])]
    d = [r.json["embeds"][0]["color"] for r in h.rx.accepted(paths["discord"])]
    assert s[0] != s[1] and d[0] != d[1]
    # the webhook's resolved alert belongs to the same episode
    w = [r.json["alerts"][0] for r in h.rx.accepted(paths["webhook"])]
    assert w[0]["startsAt"] == w[1]["startsAt"]
    assert rfc3339(w[1]["endsAt"]) >= rfc3339(w[1]["startsAt"])
    # (the counters reach /metrics with the next publish after the rows were marked delivered)
    m, _ = helpers.wait_for(tt, lambda s: all(s.get("telltale_notifications_total", channel=f"c-{kind}",
                                                    outcome="delivered") == 2 for kind in paths),
                            10, "telltale_notifications_total{outcome=delivered} 2 for every channel")
    for kind in paths:
        assert m.get("telltale_notifications_total", channel=f"c-{kind}", outcome="delivered") == 2
        assert m.get("telltale_notification_channel_failing", channel=f"c-{kind}") == 0
        # `/` lists the channel with its last notification, and the rule with its state
        row = status_row(tt, f"c-{kind}")
        assert row is not None and kind in row and f"level_high_{kind}" in " ".join(row), status_rows(tt)
        assert "resolved" in " ".join(row) and "delivered" in " ".join(row), row
        assert status_row(tt, f"level_high_{kind}") is not None


def test_payload_size_limits(h: Harness) -> None:
    """A 20 000-character description and 40 long labels stay within each platform's limits."""
    nlabels = 40
    cols = ", ".join(f"'{chr(97 + i % 26)}' || repeat('x', 150) AS l{i:02d}" for i in range(nlabels))
    wide = {"metric": "tt_wide", "sql": f"SELECT {cols}, v FROM tt_level_src",
            "labels": [f"l{i:02d}" for i in range(nlabels)], "values": ["v"], "interval": "500ms", "timeout": "500ms"}
    paths = {kind: h.add_channel(f"big-{kind}", kind) for kind in ("slack", "discord", "teams", "webhook")}
    description = "Huge description. " + "D" * 20000
    for kind in paths:
        h.add_rule(f"wide_{kind}", 10, channel=f"big-{kind}", metric="tt_wide", description=description)
    h.set_level(99)
    h.start(queries=[wide])
    got = {kind: h.wait_accepted(path, 1)[0] for kind, path in paths.items()}

    slack = got["slack"].json
    check_slack(slack, "firing")
    assert len(got["slack"].body) < 40000 * 2

    e = check_discord(got["discord"], "firing")
    assert e["description"].startswith("Huge description.")

    check_teams(got["teams"].json, "firing")

    alert = check_webhook(got["webhook"].json, "firing", "big-webhook", "wide_webhook", "critical")
    for i in range(nlabels):
        assert alert["labels"][f"l{i:02d}"] == chr(97 + i % 26) + "x" * 150
    assert alert["annotations"]["description"].startswith("Huge description.")


# ------------------------------------------------------------ state machine


def transitions(h: Harness, path: str) -> list[str]:
    return [status_of(r) for r in h.rx.accepted(path)]


def test_for_duration_flapping_hysteresis_and_recovery(h: Harness) -> None:
    path = h.add_channel("flow", "webhook")
    h.add_rule("flow_rule", 10, channel="flow", for_seconds=2, clear=5, matchers='svc="api"')
    # The same rule with a `for` no test run comes near, on a series of its own: seeing its
    # pending state and lowering the level again cannot outlast `for` on a busy machine.
    h.sql("INSERT INTO tt_level_src VALUES ('brief', 1)")
    h.add_rule("brief_rule", 10, channel="flow", for_seconds=3600, clear=5, matchers='svc="brief"')
    tt = h.start()
    assert scrape(tt).get("telltale_alert_threshold", rule="flow_rule") == 10

    # Above the threshold for less than `for`: pending, then nothing.
    h.set_level(20, svc="brief")
    wait_until(lambda: scrape(tt).get("telltale_alert_state", rule="brief_rule", alertstate="pending") == 1, 10,
               "pending state")
    h.set_level(1, svc="brief")
    wait_until(lambda: not scrape(tt).find("telltale_alert_state", rule="brief_rule"), 10, "pending cleared")

    # Above for longer than `for`: one firing message, no sooner than `for`.
    t_up = time.time()
    h.set_level(20)
    firing = h.wait_accepted(path, 1, timeout=2 + FIRING_AFTER)[0]
    assert firing.time - t_up >= 2.0, f"fired {firing.time - t_up:.2f}s after the rise, before for=2s"
    m = scrape(tt)
    assert m.get("telltale_alert_state", rule="flow_rule", alertstate="firing", svc="api", severity="critical",
                 environment="production") == 1
    assert m.get("telltale_alerts_firing") == 1

    # Flapping between the clear threshold (5) and the threshold (10): no new transitions
    # (each level evaluated before the next; a transition would be in the outbox by then).
    for v in (7, 12, 6, 15, 8):
        h.set_level(v)
        h.level_seen(tt, v)
    assert [x["status"] for x in h.notifications()] == ["firing"], h.notifications()
    assert transitions(h, path) == ["firing"], transitions(h, path)
    assert scrape(tt).get("telltale_alert_state", rule="flow_rule", alertstate="firing") == 1

    # Past the clear threshold: resolved, once.
    h.set_level(2)
    h.wait_accepted(path, 2)
    h.quiet(tt)
    assert transitions(h, path) == ["firing", "resolved"]
    assert len(h.rx.requests(path)) == 2
    f, r = (x.json["alerts"][0] for x in h.rx.accepted(path))
    assert f["startsAt"] == r["startsAt"]
    assert not scrape(tt).find("telltale_alert_state", rule="flow_rule")
    assert h.sql("SELECT count(*) FROM telltale_alert_state") == "0"
    rows = h.notifications()
    assert [(x["status"], x["delivered"]) for x in rows] == [("firing", True), ("resolved", True)]


def test_keep_firing(h: Harness) -> None:
    # Long enough for the dip below (two psqls, two collections and evaluations: ~1.5 s on a
    # quiet machine) to stay shorter than it on a busy one.
    keep = 8.0
    path = h.add_channel("keep", "webhook")
    h.add_rule("keep_rule", 10, channel="keep", keep=keep)
    h.set_level(20)
    tt = h.start()
    h.wait_accepted(path, 1)

    # A dip shorter than keep_firing (seen and evaluated, then over): no resolved.
    dip = time.monotonic()
    h.set_level(1)
    h.level_seen(tt, 1)
    h.set_level(20)
    h.level_seen(tt, 20)
    assert time.monotonic() - dip < keep, "the dip lasted longer than keep_firing: this machine is too slow for the test"
    # Time must pass here: a keep_firing timer left running by the dip would resolve the
    # alert keep seconds after the dip began. Until then (and a margin), no resolved is
    # recorded; then the evaluator has run past that moment.
    helpers.holds_for(lambda: [x["status"] for x in h.notifications()] == ["firing"], dip + keep + 1 - time.monotonic(),
                      "only the firing in the outbox during and after the dip", interval=0.2)
    h.runs(tt)
    assert [x["status"] for x in h.notifications()] == ["firing"], h.notifications()
    assert transitions(h, path) == ["firing"]

    # A lasting recovery: resolved, once, no sooner than keep_firing after the drop.
    t_down = time.time()
    h.set_level(1)
    resolved = h.wait_accepted(path, 2, timeout=keep + FIRING_AFTER)[1]
    assert resolved.time - t_down >= keep, f"resolved {resolved.time - t_down:.2f}s after the drop"
    h.quiet(tt)
    assert transitions(h, path) == ["firing", "resolved"]


def test_nodata_while_firing_sends_no_resolved(h: Harness) -> None:
    path = h.add_channel("nd", "webhook")
    h.add_rule("nd_rule", 10, channel="nd")
    h.set_level(20)
    tt = h.start()
    h.wait_accepted(path, 1)

    # The source query now fails: the series disappears.
    h.sql("ALTER TABLE tt_level_src RENAME TO tt_level_src_off")
    wait_until(lambda: scrape(tt).get("telltale_alert_state", rule="nd_rule", alertstate="nodata") == 1, 10,
               "telltale_alert_state{alertstate=nodata}")
    row = status_row(tt, "nd_rule")
    assert row is not None and "no data" in " ".join(row).lower(), row
    m = h.runs(tt, 5)  # evaluation after evaluation without data
    assert [x["status"] for x in h.notifications()] == ["firing"], "a source that is down must not resolve an alert"
    assert transitions(h, path) == ["firing"], "a source that is down must not resolve an alert"
    assert m.get("telltale_alert_state", rule="nd_rule", alertstate="nodata") == 1
    assert not m.find("telltale_alert_state", rule="nd_rule", alertstate="firing")
    assert h.sql("SELECT count(*) FROM telltale_alert_state WHERE state = 'firing'") == "1"

    # Data back, below the threshold: now it resolves, once.
    h.sql("UPDATE tt_level_src_off SET v = 1; ALTER TABLE tt_level_src_off RENAME TO tt_level_src")
    h.wait_accepted(path, 2)
    h.quiet(tt)
    assert transitions(h, path) == ["firing", "resolved"]


# --------------------------------------------------------------- delivery


def test_rate_limited_retry_after(h: Harness) -> None:
    # Longer than the 5 s Telltale waits when it cannot read a Retry-After: retrying no
    # sooner than this shows that the receiver's value was read (a lower bound, which a
    # busy machine cannot break).
    retry_after = 8
    slack = h.add_channel("rl-slack", "slack")
    discord = h.add_channel("rl-discord", "discord")
    h.rx.set_mode(slack, "rate_limited", retry_after=retry_after, times=1)
    h.rx.set_mode(discord, "rate_limited", retry_after=retry_after, times=1)
    h.add_rule("rl_slack", 10, channel="rl-slack")
    h.add_rule("rl_discord", 10, channel="rl-discord")
    h.set_level(20)
    tt = h.start()
    for path in (slack, discord):
        h.wait_accepted(path, 1, timeout=FIRING_AFTER + retry_after + 10)
    h.quiet(tt)
    for name, path in (("rl-slack", slack), ("rl-discord", discord)):
        reqs = h.rx.requests(path)
        assert [r.status for r in reqs] == [429, 200], [(r.status, r.time) for r in reqs]
        gap = reqs[1].mono - reqs[0].mono
        assert gap >= retry_after, f"{name}: retried {gap:.2f}s after a 429 with Retry-After: {retry_after}"
        # Not held back by something else either (the transient backoff grows to 5 minutes).
        assert gap < retry_after + 10, f"{name}: retried only {gap:.2f}s after a 429 with Retry-After: {retry_after}"
        assert reqs[0].idempotency_key == reqs[1].idempotency_key
        m, _ = helpers.wait_for(tt, lambda s: s.get("telltale_notifications_total", channel=name, outcome="delivered"),
                                10, f"{name}'s delivery counted")
        assert m.get("telltale_notifications_total", channel=name, outcome="rate_limited") == 1
        assert m.get("telltale_notifications_total", channel=name, outcome="delivered") == 1
        wait_until(lambda: scrape(tt).get("telltale_notification_queue_depth", channel=name) == 0, 10,
                   "telltale_notification_queue_depth 0")
    rows = h.notifications()
    assert all(x["delivered"] and x["attempts"] == 2 for x in rows), rows


def test_queue_depth_reads_zero_once_delivered_without_waiting_for_a_reload(h: Harness) -> None:
    """Regression: the delivery pass read the depths before sending, and with the outbox no
    longer polled every second the gauge kept the old count until the next reload (here a
    minute away)."""
    path = h.add_channel("depth-webhook", "webhook")
    h.add_rule("depth_rule", 10, channel="depth-webhook")
    h.set_level(20)
    tt = h.start(alerting={"interval": "60s"})
    h.wait_accepted(path, 1, timeout=FIRING_AFTER + 10)
    wait_until(lambda: scrape(tt).get("telltale_notification_queue_depth", channel="depth-webhook") == 0, 10,
               "telltale_notification_queue_depth 0 after the delivery")


def test_receiver_down_then_up_nothing_lost_in_order(h: Harness) -> None:
    down500 = h.add_channel("down-500", "webhook")
    downhang = h.add_channel("down-hang", "slack")
    h.rx.set_mode(down500, "error")
    h.rx.set_mode(downhang, "hang", hang_seconds=4)
    h.add_rule("d500", 10, channel="down-500")
    h.add_rule("dhang", 10, channel="down-hang")
    tt = h.start(alerting={"delivery_timeout": "1s"})

    # Two episodes (four transitions) while the receivers are down: each level until its
    # transition is in the outbox (a row per channel).
    for i, v in enumerate((20, 1, 20, 1)):
        h.set_level(v)
        wait_until(lambda: len(h.notifications()) == 2 * (i + 1), FIRING_AFTER, f"{2 * (i + 1)} outbox rows")
    wait_until(lambda: len(h.notifications()) == 8, 10, "8 outbox rows")
    wait_until(lambda: len(h.rx.requests(down500)) >= 2 and len(h.rx.requests(downhang)) >= 2, 8,
               "two failed attempts per channel")
    assert not h.rx.accepted()
    # (the depth is read once per delivery round, so it may lag by a round)
    wait_until(lambda: scrape(tt).get("telltale_notification_queue_depth", channel="down-500") == 4, 10,
               "telltale_notification_queue_depth 4")
    # (the outcomes are published after the delivery round, which waits for the hanging receiver)
    m, _ = helpers.wait_for(tt, lambda s: (s.get("telltale_notifications_total", channel="down-500", outcome="retried")
                                           or 0) >= 2, 10, "two retried deliveries counted for down-500")
    assert m.get("telltale_notifications_total", channel="down-500", outcome="retried") >= 2
    assert m.get("telltale_notifications_total", channel="down-hang", outcome="retried") >= 1

    h.rx.reset()
    for path in (down500, downhang):
        h.wait_accepted(path, 4, timeout=15)
    h.quiet(tt)
    for path in (down500, downhang):
        got = h.rx.accepted(path)
        assert [status_of(r) for r in got] == ["firing", "resolved", "firing", "resolved"], \
            [(status_of(r), r.idempotency_key) for r in got]
        keys = [r.idempotency_key for r in got]
        assert len(set(keys)) == 4, keys
        # each resolved follows its own firing (same episode start)
        assert keys[0].split("|")[:3] == keys[1].split("|")[:3] and keys[2].split("|")[:3] == keys[3].split("|")[:3]
    rows = h.notifications()
    assert all(x["delivered"] for x in rows), rows
    wait_until(lambda: scrape(tt).get("telltale_notification_queue_depth", channel="down-500") == 0, 10,
               "telltale_notification_queue_depth 0")


def test_not_found_is_a_permanent_failure(h: Harness) -> None:
    path = h.add_channel("gone", "webhook")
    h.rx.set_mode(path, "not_found")
    h.add_rule("gone_rule", 10, channel="gone")
    h.set_level(20)
    tt = h.start()
    wait_until(lambda: any(x["failed"] for x in h.notifications()), FIRING_AFTER, "failed_at set")
    row = h.notifications()[0]
    assert row["failed"] and not row["delivered"] and "404" in (row["last_error"] or ""), row
    wait_until(lambda: scrape(tt).get("telltale_notification_channel_failing", channel="gone") == 1, 10,
               "telltale_notification_channel_failing 1")
    m = scrape(tt)
    assert m.get("telltale_notifications_total", channel="gone", outcome="failed") == 1
    assert not m.find("telltale_notifications_total", channel="gone", outcome="retried")
    wait_until(lambda: scrape(tt).get("telltale_notification_queue_depth", channel="gone") == 0, 10,
               "telltale_notification_queue_depth 0 (a failed row is out of the queue)")
    assert status_row(tt, "gone") is not None and "failing" in status_row(tt, "gone"), status_rows(tt)
    # The row is out of the queue (failed_at set; a later delivery round read the depth 0),
    # and only queued rows are ever sent: nothing can send it again.
    assert len(h.rx.requests(path)) == 1, "a 404 must not be retried"

    # The receiver comes back: new transitions are delivered and the channel recovers.
    h.rx.reset(path)
    h.set_level(1)
    h.wait_accepted(path, 1)
    wait_until(lambda: scrape(tt).get("telltale_notification_channel_failing", channel="gone") == 0, 10,
               "telltale_notification_channel_failing 0")
    assert [status_of(r) for r in h.rx.requests(path)] == ["firing", "resolved"]


# ------------------------------------------------------------ durability


def test_kill_between_outbox_write_and_send(h: Harness) -> None:
    path = h.add_channel("later", "webhook", enabled=False)
    h.add_rule("crash_rule", 10, channel="later")
    tt = h.start()
    h.set_level(20)
    wait_until(lambda: len(h.notifications()) == 1, FIRING_AFTER, "the outbox row")
    row = h.notifications()[0]
    assert row["status"] == "firing" and not row["delivered"] and not row["failed"], row
    assert h.sql("SELECT count(*) FROM telltale_alert_state WHERE rule = 'crash_rule' AND state = 'firing'") == "1"
    # A delivery round has counted the row in the queue (the depth is published after the
    # round's sends) and sent nothing.
    wait_until(lambda: scrape(tt).get("telltale_notification_queue_depth", channel="later") == 1, 10,
               "telltale_notification_queue_depth{channel=later} 1")
    assert not h.rx.requests(), "a disabled channel keeps its queue"
    tt.stop(signal.SIGKILL)

    h.sql("UPDATE telltale_channels SET enabled = true WHERE name = 'later'")
    tt2 = h.start()
    h.wait_accepted(path, 1)
    h.quiet(tt2)
    got = h.rx.accepted(path)
    assert len(got) == 1 and status_of(got[0]) == "firing", [status_of(r) for r in got]
    assert got[0].idempotency_key == row["idempotency_key"]
    assert len(h.notifications()) == 1, "the restarted replica must adopt the episode, not fire it again"
    assert scrape(tt2).get("telltale_alert_state", rule="crash_rule", alertstate="firing") == 1

    h.set_level(1)
    h.wait_accepted(path, 2)
    f, r = (x.json["alerts"][0] for x in h.rx.accepted(path))
    assert f["startsAt"] == r["startsAt"] and r["status"] == "resolved"

    # Killed while the receiver holds the request (no answer yet): re-sent after restart, once.
    h.rx.set_mode(path, "hang", hang_seconds=8)
    h.set_level(20)
    h.rx.wait_for(lambda rx: len(rx.requests(path)) == 3, FIRING_AFTER, "the hanging firing request")
    hung = h.rx.requests(path)[2]
    tt2.stop(signal.SIGKILL)
    h.rx.reset(path)
    tt3 = h.start()
    h.wait_accepted(path, 3, timeout=FIRING_AFTER + 2)
    h.quiet(tt3)
    got = h.rx.accepted(path)
    assert [status_of(x) for x in got] == ["firing", "resolved", "firing"]
    assert got[2].idempotency_key == hung.idempotency_key
    assert len(h.notifications()) == 3


def test_two_replicas_failover(h: Harness) -> None:
    path = h.add_channel("ha", "webhook")
    h.add_rule("ha_rule", 10, channel="ha")
    a = h.start()
    b = h.start(wait_leader=False)
    wait_until(lambda: scrape(b).get("telltale_alerting_leader") == 0, 15, "replica B up as a follower")
    assert "follower" in b.get("/").text and "leader" in a.get("/").text

    h.set_level(20)
    h.wait_accepted(path, 1)
    wait_until(lambda: scrape(b).get("telltale_alert_state", rule="ha_rule", alertstate="firing") == 1, 10,
               "the follower evaluates too")
    assert scrape(b).get("telltale_alerting_leader") == 0
    # More evaluations on both: the follower records nothing and never tries to send.
    h.runs(b)
    h.quiet(a)
    assert not scrape(b).find("telltale_notifications_total"), "the follower attempted a delivery"
    assert len(h.notifications()) == 1, h.notifications()
    assert len(h.rx.requests(path)) == 1, "only the leader sends"

    a.stop(signal.SIGKILL)
    t_kill = time.monotonic()
    h.set_level(1)
    # A's session, and with it the advisory lock, ends as soon as the kernel closes its
    # socket; B tries for the lock every interval (1 s). 20 s is generous for a busy
    # machine, and well under a lock kept until TCP keepalive notices (minutes).
    wait_until(lambda: scrape(b).get("telltale_alerting_leader") == 1, 20, "replica B leading")
    print(f"[failover] B leading {time.monotonic() - t_kill:.2f}s after A was killed")
    h.wait_accepted(path, 2)
    h.quiet(b)
    got = h.rx.accepted(path)
    assert [status_of(r) for r in got] == ["firing", "resolved"], [status_of(r) for r in got]
    keys = [r.idempotency_key for r in h.rx.requests(path)]
    assert len(keys) == len(set(keys)) == 2, keys
    f, r = (x.json["alerts"][0] for x in got)
    assert f["startsAt"] == r["startsAt"], "the resolved belongs to the episode the old leader fired"
    assert len(h.notifications()) == 2 and all(x["delivered"] for x in h.notifications())
    assert scrape(b).get("telltale_alerting_leader") == 1
    assert "leader (sends" in b.get("/").text


def test_parked_channel_does_not_starve_other_channels(h: Harness) -> None:
    """Each channel is its own queue: hundreds of notifications held for one channel
    (disabled for maintenance, or its receiver down through a long incident) must not
    hold back another channel's."""
    live = h.add_channel("live", "webhook")
    h.add_channel("parked", "slack", enabled=False)
    h.add_rule("live_rule", 10, channel="live")
    event = json.dumps({"rule": "bulk", "environment": "production", "severity": "warning", "status": "firing",
                        "metric": "tt_level", "comparison": ">", "threshold": 1, "value": 2, "labels": {},
                        "startsAt": time.time() - 3600})
    h.sql(f"""
        INSERT INTO telltale_notifications (idempotency_key, channel, rule, series, status, event)
        SELECT 'bulk|' || i, 'parked', 'bulk', '{{n="' || i || '"}}', 'firing', {sql_literal(event)}
        FROM generate_series(1, 600) AS i
    """)
    h.set_level(20)
    tt = h.start()
    wait_until(lambda: scrape(tt).get("telltale_notification_queue_depth", channel="parked") == 600, 10,
               "600 notifications queued for the parked channel")
    try:
        got = h.rx.wait_for(lambda rx: rx.accepted(live), FIRING_AFTER + 2, "live_rule's firing on the live channel")
    except AssertionError as e:
        rows = [(x["id"], x["status"], x["attempts"], x["delivered"]) for x in h.notifications("channel = 'live'")]
        raise AssertionError(f"the live channel's notification (id, status, attempts, delivered) {rows} waits "
                             f"behind the parked channel's 600 rows\n{e}") from None
    assert got[0].json["alerts"][0]["labels"]["alertname"] == "live_rule"
    assert not h.rx.requests(h.rx.url) and len(h.rx.requests()) == 1


def test_outbox_write_failure_then_failover(h: Harness) -> None:
    """The leader cannot write a transition (its transaction fails): it keeps it and writes
    it once it can. If it dies before it could, the replica that takes over must still
    announce that transition: nothing may be lost."""
    path = h.add_channel("wf", "webhook")
    h.add_rule("wf_rule", 10, channel="wf")
    a = h.start()
    b = h.start(wait_leader=False)
    wait_until(lambda: scrape(b).get("telltale_alerting_leader") == 0, 15, "replica B up as a follower")
    block = """
        CREATE FUNCTION tt_block() RETURNS trigger LANGUAGE plpgsql AS
            $$BEGIN RAISE EXCEPTION 'tt test: outbox writes blocked'; END$$;
        CREATE TRIGGER tt_block BEFORE INSERT ON telltale_alert_transitions FOR EACH ROW EXECUTE FUNCTION tt_block();
    """
    unblock = "DROP TRIGGER tt_block ON telltale_alert_transitions; DROP FUNCTION tt_block();"

    # 1. The leader alone cannot write for a while, then can: delivered once.
    h.sql(block)
    h.set_level(20)
    wait_until(lambda: "could not record" in a.logs(), 10, "the leader's failed write")
    # The leader holds the transition it could not write (and nothing is in the outbox to send).
    wait_until(lambda: scrape(a).get("telltale_alert_transitions_unrecorded") == 1, 10, "the leader's unrecorded backlog")
    assert not h.rx.requests() and not h.notifications()
    h.sql(unblock)
    h.wait_accepted(path, 1)
    h.set_level(1)
    h.wait_accepted(path, 2)
    assert transitions(h, path) == ["firing", "resolved"]

    # 2. The leader dies while it cannot write; the follower takes over.
    h.sql(block)
    h.set_level(20)
    wait_until(lambda: scrape(b).get("telltale_alert_state", rule="wf_rule", alertstate="firing") == 1, 10,
               "the follower sees the alert firing")
    # (A repeated identical warning is logged once a minute: the backlog gauge tells instead.)
    wait_until(lambda: scrape(a).get("telltale_alert_transitions_unrecorded") == 1, 10, "the leader's failed writes")
    a.stop(signal.SIGKILL)
    h.sql(unblock)
    wait_until(lambda: scrape(b).get("telltale_alerting_leader") == 1, 20, "replica B leading")
    try:
        h.wait_accepted(path, 3, timeout=FIRING_AFTER)
    except AssertionError as e:
        state_rows = h.sql("SELECT count(*) FROM telltale_alert_state")
        firing_metric = scrape(b).get("telltale_alert_state", rule="wf_rule", alertstate="firing")
        h.set_level(1)  # and what follows: a resolved for an episode that was never announced
        try:
            h.wait_accepted(path, 3, timeout=4)
        except AssertionError:
            pass
        raise AssertionError(
            f"after recovery the receiver got {transitions(h, path)} (a resolved without its firing?); "
            f"before: the firing transition the dead leader could not write was never announced by the new leader "
            f"(it shows the alert firing: telltale_alert_state{{state=\"firing\"}} = "
            f"{firing_metric}, "
            f"telltale_alert_state rows in the database: {state_rows})\n{e}") from None
    h.set_level(1)
    h.wait_accepted(path, 4)
    h.quiet(b)
    assert transitions(h, path) == ["firing", "resolved", "firing", "resolved"]


# -------------------------------------------------------- rules at run time


def test_invalid_rules_and_runtime_edits(h: Harness) -> None:
    path = h.add_channel("edits", "webhook")
    h.add_rule("bad_comparison", 10, comparison="=>", channel="edits")
    h.add_rule("nan_threshold", float("nan"), channel="edits")
    h.add_rule("bad_regex", 10, channel="edits", matchers='svc=~"(unclosed"')
    h.add_rule("unknown_channel", 10, channel="nope")
    h.add_rule("good", 100, channel="edits")
    invalid = {"bad_comparison": "comparison", "nan_threshold": "threshold", "bad_regex": "reg",
               "unknown_channel": "channel"}
    h.set_level(50)
    tt = h.start()
    wait_until(lambda: all(scrape(tt).get("telltale_alert_rule_errors", rule=n) == 1 for n in invalid), 10,
               "telltale_alert_rule_errors for the four invalid rules")
    m = scrape(tt)
    assert not m.find("telltale_alert_rule_errors", rule="good") or m.get("telltale_alert_rule_errors", rule="good") == 0
    assert m.get("telltale_alert_threshold", rule="good") == 100
    for name in invalid:
        assert not m.find("telltale_alert_threshold", rule=name), name
        assert not m.find("telltale_alert_state", rule=name), name
    for name, word in invalid.items():
        row = status_row(tt, name)
        assert row is not None, (name, status_rows(tt))
        assert word in " ".join(row[1:]).lower(), (name, row)
    h.runs(tt)  # evaluations with the level (50) above every invalid rule's threshold (10)
    assert not h.notifications() and not h.rx.requests(), "invalid rules are skipped"

    # Edit the good rule's threshold: in force at the next reload (at once on the NOTIFY, else
    # within an interval; 10 s is for a busy machine), and it fires.
    h.sql("UPDATE telltale_alert_rules SET threshold = 10, updated_at = now() WHERE name = 'good'")
    wait_until(lambda: scrape(tt).get("telltale_alert_threshold", rule="good") == 10, 10, "threshold 10")
    firing = h.wait_accepted(path, 1)[0]
    assert firing.json["alerts"][0]["labels"]["alertname"] == "good"
    assert "10" in firing.json["alerts"][0]["annotations"]["threshold"]

    # Edit it into an invalid row: the last good version stays in force.
    h.sql("UPDATE telltale_alert_rules SET comparison = '>>', threshold = 1000 WHERE name = 'good'")
    wait_until(lambda: scrape(tt).get("telltale_alert_rule_errors", rule="good") == 1, 10, "error reported for good")
    m = h.runs(tt)  # evaluations under the invalid row
    assert m.get("telltale_alert_threshold", rule="good") == 10
    assert m.get("telltale_alert_state", rule="good", alertstate="firing") == 1
    row = status_row(tt, "good")
    assert row is not None and "comparison" in " ".join(row[1:]).lower(), row
    assert [x["status"] for x in h.notifications()] == ["firing"], h.notifications()
    assert transitions(h, path) == ["firing"]

    # Fixed, with a threshold above the value: the error clears and the alert resolves.
    h.sql("UPDATE telltale_alert_rules SET comparison = '>', threshold = 100 WHERE name = 'good'")
    wait_until(lambda: scrape(tt).get("telltale_alert_threshold", rule="good") == 100, 10, "threshold 100")
    m = scrape(tt)
    assert not m.find("telltale_alert_rule_errors", rule="good") or m.get("telltale_alert_rule_errors", rule="good") == 0
    h.wait_accepted(path, 2)
    assert transitions(h, path) == ["firing", "resolved"]


def test_admin_alert_thresholds(h: Harness) -> None:
    path = h.add_channel("ops-admin", "webhook")
    h.sql("""
        CREATE TABLE admin_alert_thresholds (
            id serial PRIMARY KEY, environment text NOT NULL, "cpuThreshold" integer, "memoryThreshold" integer,
            channel text);
        INSERT INTO admin_alert_thresholds (environment, "cpuThreshold", "memoryThreshold", channel)
            VALUES ('staging', 0, 100, 'ops-admin');
        GRANT SELECT ON admin_alert_thresholds TO telltale;
    """)
    burner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 30\nwhile time.time() < end: pass"])
    try:
        # `for: 0s`: the admin portal means "alert at once".
        tt = h.start(host=True, alerting={"admin_thresholds": {"enabled": True, "for": "0s", "severity": "critical"}})
        firing = h.wait_accepted(path, 1, timeout=FIRING_AFTER + 2)[0]
        alert = check_webhook(firing.json, "firing", "ops-admin", "admin:staging:cpu", "critical")
        assert alert["labels"]["environment"] == "staging"
        m = scrape(tt)
        assert m.get("telltale_alert_threshold", rule="admin:staging:cpu") == 0
        assert m.get("telltale_alert_threshold", rule="admin:staging:memory") == 1.0
        assert m.get("telltale_alert_state", rule="admin:staging:cpu", alertstate="firing", environment="staging") == 1
        assert not m.find("telltale_alert_state", rule="admin:staging:memory")
        assert m.get("telltale_host_memory_usage_ratio") is not None
        h.quiet(tt, "host")  # more host samples evaluated: the memory rule (100 %) stays quiet
        got = h.rx.accepted(path)
        assert [r.json["alerts"][0]["labels"]["alertname"] for r in got] == ["admin:staging:cpu"]
    finally:
        burner.kill()
        burner.wait()


def test_admin_thresholds_for_zero_is_accepted(h: Harness) -> None:
    """`admin_thresholds.for: 0s` — alert as soon as the admin threshold is exceeded, as a
    rule row's for_seconds = 0 does — must be a valid configuration."""
    h.write_config(alerting={"admin_thresholds": {"enabled": True, "for": "0s", "severity": "warning"}})
    r = h.cli("check-config")
    assert r.returncode == 0, f"admin_thresholds.for: 0s refused:\n{r.stdout}{r.stderr}"


def test_unreadable_admin_table_does_not_stop_alerting(h: Harness) -> None:
    """The admin portal's table belongs to another application: when Telltale's role may
    not read it, its admin rules are lost, but Telltale's own rules must keep working (as
    they do when the table does not exist)."""
    path = h.add_channel("own", "webhook")
    h.add_rule("own_rule", 10, channel="own")
    h.sql("""
        CREATE TABLE admin_alert_thresholds (environment text, "cpuThreshold" integer, "memoryThreshold" integer,
                                             channel text);
        INSERT INTO admin_alert_thresholds VALUES ('staging', 0, 100, 'own');
        REVOKE ALL ON admin_alert_thresholds FROM telltale;
    """)
    h.set_level(20)
    tt = h.start(wait_leader=False)
    firing = h.rx.wait_for(lambda rx: rx.accepted(path), FIRING_AFTER + 2, "own_rule's firing message")
    assert firing[0].json["alerts"][0]["labels"]["alertname"] == "own_rule"
    m = scrape(tt)
    assert m.get("telltale_alerting_leader") == 1
    assert m.get("telltale_alert_threshold", rule="own_rule") == 10


# --------------------------------------------------------------- secrecy


def test_channel_url_never_exposed(h: Harness) -> None:
    ok = h.add_channel("sec-ok", "slack")
    nf = h.add_channel("sec-404", "discord")
    hang = h.add_channel("sec-hang", "teams")
    h.add_channel("sec-refused", "webhook", url=f"http://127.0.0.1:{find_free_port()}/hooks/webhook/{SECRET}")
    h.rx.set_mode(nf, "not_found")
    h.rx.set_mode(hang, "hang", hang_seconds=3)
    for name in ("sec-ok", "sec-404", "sec-hang", "sec-refused"):
        h.add_rule(f"r-{name}", 10, channel=name)
    # a channel whose URL variable is unset: reported, but without a URL to leak
    h.sql("INSERT INTO telltale_channels (name, kind, url_env) VALUES ('sec-unset', 'slack', 'TELLTALE_CHANNEL_NOT_SET')")
    h.set_level(20)
    tt = h.start(log_level="debug", alerting={"delivery_timeout": "1s"})
    h.wait_accepted(ok, 1)
    wait_until(lambda: len(h.rx.requests(nf)) >= 1 and len(h.rx.requests(hang)) >= 1, FIRING_AFTER,
               "the 404 and hanging receivers to be tried")
    wait_until(lambda: all(x["attempts"] >= 1 for x in h.notifications()), FIRING_AFTER, "every row tried")
    # ... and every outcome counted (and logged) by telltale: the logs to search are complete.
    outcomes = {"sec-ok": "delivered", "sec-404": "failed", "sec-hang": "retried", "sec-refused": "retried"}
    helpers.wait_for(tt, lambda s: all(s.get("telltale_notifications_total", channel=c, outcome=o)
                                       for c, o in outcomes.items()), FIRING_AFTER, "every delivery outcome counted")
    r = h.cli("test-notify", "sec-refused")
    assert r.returncode == 1
    exposed = {
        "/metrics": tt.metrics(),
        "/": tt.get("/").text,
        "logs": tt.logs(),
        "test-notify": r.stdout + r.stderr,
    }
    assert "debug" in exposed["logs"].lower() or exposed["logs"], "expected some log output at debug level"
    for where, text in exposed.items():
        assert SECRET not in text, f"the channel URL's token appears in {where}"
        assert "/hooks/" not in text, f"a channel URL path appears in {where}"
    assert "sec-unset" in exposed["/"]
