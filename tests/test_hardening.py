"""Regression tests of the hardening issue: nothing a source, a table row, a configuration
file or a hung backend does may crash, freeze or fool Telltale.

Each test reproduces one finding against the real binary: hostile third-party answers
(from a local server of this module, ``Hostile``), odd rows in the alerting tables (with the
alerting harness of test_alerting.py), hostile files named by the configuration, and
PostgreSQL and Redis stopped with SIGSTOP (a hung server and a dead network path look the
same to a client).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))

from helpers import (  # noqa: E402
    assert_not_hung, descendants, samples, series, timed_scrape, value, wait_runs, wait_until,
)
from test_alerting import Harness, h, rx, sql_literal, status_row  # noqa: E402,F401  (fixtures)

NO_DEFAULT_COLLECTORS = "collectors: {host: {enabled: false}, process: {enabled: false}}"


# ------------------------------------------------------------------ a hostile HTTP server


class Hostile:
    """A local HTTP server whose every path answers what a test sets: ``answer(path,
    status, headers, body)``. Records each request's path and headers."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?")[0]
                with owner.lock:
                    owner.requests.append((self.command, path, {k.lower(): v for k, v in self.headers.items()}))
                    status, headers, body = owner.answers.get(path, (404, {}, b"no such path"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str, status: int = 200, headers: dict[str, str] | None = None,
               body: bytes | str | Any = b"") -> None:
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        with self.lock:
            self.answers[path] = (status, dict(headers or {}), body)

    def seen(self, path: str) -> list[dict[str, str]]:
        with self.lock:
            return [headers for _, p, headers in self.requests if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    server = Hostile()
    yield server
    server.close()


def start_with(h: Harness, change: Callable[[dict], Any]):
    """Starts the harness' telltale with its configuration changed by `change`."""
    h.write_config()
    config = yaml.safe_load(h.config_path.read_text())
    change(config)
    h.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    tt = h._start(h.config_path, env=h.env)
    h.started.append(tt)
    return tt


def alive(tt) -> None:
    assert tt.running, f"telltale died\n{tt.describe()}"
    r = requests.get(tt.url + "/healthz", timeout=5)
    assert r.status_code == 200


# ------------------------------------------------------------------ providers


def test_retry_after_from_outside_never_crashes(start_telltale, hostile) -> None:
    """`Retry-After: inf` (and nan, 1e20, -1e20, 9.3e15) killed the process with SIGILL."""
    hostile_values = ["inf", "nan", "1e20", "-1e20", "9.3e15", "-inf", "1e400"]
    providers = []
    for index, retry_after in enumerate(hostile_values):
        hostile.answer(f"/p{index}", 429, {"Retry-After": retry_after}, {"message": "slow down"})
        providers.append(f"  - {{name: p{index}, type: json, url: \"{hostile.url}/p{index}\", interval: 200ms, "
                         f"timeout: 200ms, balances: [{{path: balance}}]}}")
    tt = start_telltale(f"{NO_DEFAULT_COLLECTORS}\nproviders:\n" + "\n".join(providers))

    def all_rate_limited():
        table = samples(tt.metrics())
        return all((value(table, "telltale_provider_errors_total", provider=f"p{i}", reason="rate_limited") or 0) >= 1
                   for i in range(len(hostile_values)))

    wait_until(all_rate_limited, 15, "every provider rate limited")
    alive(tt)
    for index in range(len(hostile_values)):
        assert value(samples(tt.metrics()), "telltale_provider_up", provider=f"p{index}") == 0


def test_credentials_never_follow_a_redirect_to_another_origin(start_telltale, hostile) -> None:
    other = Hostile()
    try:
        other.answer("/stolen", 200, body={"balance": 1})
        # Same host and port, another name: another origin for a browser and for Telltale.
        hostile.answer("/away", 302, {"Location": f"http://localhost:{other.server.server_address[1]}/stolen"})
        hostile.answer("/moved", 301, {"Location": "/here"})
        hostile.answer("/here", 200, body={"balance": 7})
        config = f"""\
{NO_DEFAULT_COLLECTORS}
providers:
  - {{name: away, type: json, url: "{hostile.url}/away", interval: 300ms, timeout: 300ms,
      headers: {{x-api-key: "KEY-redirect-secret-1"}}, balances: [{{path: balance}}]}}
  - {{name: moved, type: json, url: "{hostile.url}/moved", interval: 300ms, timeout: 300ms,
      headers: {{x-api-key: "KEY-redirect-secret-2"}}, balances: [{{path: balance}}]}}
"""
        tt = start_telltale(config)
        wait_until(lambda: value(samples(tt.metrics()), "telltale_provider_errors_total",
                                 provider="away", reason="redirect"), 10, "the cross-origin redirect reported")
        wait_until(lambda: value(samples(tt.metrics()), "telltale_provider_balance", provider="moved", currency="") == 7,
                   10, "the same-origin redirect followed")
        assert other.seen("/stolen") == [], "a request (with its credentials) reached another origin"
        assert hostile.seen("/here")[0].get("x-api-key") == "KEY-redirect-secret-2"
    finally:
        other.close()


def test_echoed_keys_are_redacted_in_any_case_encoding_and_position(start_telltale, hostile) -> None:
    key = "Key+Secret/Value=0123456789abcdef"
    echoes = {
        "/near-cut": "x" * 110 + key,
        "/upper": "invalid key " + key.upper(),
        "/encoded": "invalid key " + requests.utils.quote(key, safe=""),
    }
    providers = []
    for index, (path, message) in enumerate(echoes.items()):
        hostile.answer(path, 401, body={"message": message})
        providers.append(f"  - {{name: e{index}, type: json, url: \"{hostile.url}{path}\", interval: 300ms, timeout: 300ms, "
                         f"headers: {{x-api-key: \"{key}\"}}, balances: [{{path: balance}}]}}")
    tt = start_telltale(f"log: {{level: debug}}\n{NO_DEFAULT_COLLECTORS}\nproviders:\n" + "\n".join(providers))
    wait_until(lambda: all(value(samples(tt.metrics()), "telltale_provider_errors_total", provider=f"e{i}",
                                 reason="http_4xx") for i in range(len(echoes))), 10, "every provider refused")
    exposed = {"/": tt.get("/").text, "/metrics": tt.metrics(), "logs": tt.logs()}
    fragments = ["0123456789abcdef", "secret/value", "secret%2fvalue"]
    for where, text in exposed.items():
        for fragment in fragments:
            assert fragment not in text.lower(), f"{fragment!r} of the key appears in {where}"


def test_provider_series_are_capped(start_telltale, hostile) -> None:
    hostile.answer("/many", 200, body={f"c{i}": {"amount": i} for i in range(100_000)})
    tt = start_telltale(f"""\
{NO_DEFAULT_COLLECTORS}
providers:
  - {{name: many, type: json, url: "{hostile.url}/many", interval: 1h, timeout: 20s,
      balances: [{{path: "{{currency}}", value: amount}}]}}
""")
    # One collection only (interval 1h): the dropped count is that run's, not a multiple of it.
    table = wait_until(lambda: (lambda t: t if series(t, "telltale_provider_balance", provider="many") else None)(
        samples(tt.metrics())), 15, "balances exported")
    assert len(series(table, "telltale_provider_balance", provider="many")) == 1000
    assert value(table, "telltale_series_dropped_total", collector="provider:many", metric="telltale_provider_balance") == 99_000


# ------------------------------------------------------------------ configuration files


def check_config(run_cli, tmp_path: Path, text: str, timeout: float = 20) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return run_cli(["check-config", "--config", path], timeout=timeout)


def test_secret_files_must_be_small_regular_files(run_cli, tmp_path: Path) -> None:
    """`api_key_file: /dev/zero` crashed (exit 134); a FIFO hung check-config for ever."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for name in ("/dev/zero", str(fifo)):
        r = check_config(run_cli, tmp_path, f"""\
providers:
  - {{name: np, type: nowpayments, api_key_file: "{name}"}}
""")
        assert r.returncode == 2, r.stdout + r.stderr
        assert "providers[0].api_key_file" in r.stderr and "not a regular file" in r.stderr, r.stderr


def test_config_file_itself_must_be_a_regular_file(run_cli, tmp_path: Path) -> None:
    fifo = tmp_path / "config-fifo"
    os.mkfifo(fifo)
    r = run_cli(["check-config", "--config", fifo], timeout=20)
    assert r.returncode == 2 and "not a regular file" in r.stderr, r.stderr


def test_yaml_alias_bomb_is_refused_quickly(run_cli, tmp_path: Path) -> None:
    """A "billion laughs" document used as a mapping key spun at 100 % CPU."""
    lines = ["a0: &a0 [x, x]"] + [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 40)] + ["? *a39", ": boom"]
    r = check_config(run_cli, tmp_path, "\n".join(lines) + "\n", timeout=20)
    assert r.returncode == 2 and "aliases" in r.stderr, r.stderr


def test_process_patterns_are_checked(run_cli, tmp_path: Path) -> None:
    r = check_config(run_cli, tmp_path, """\
collectors:
  process:
    watch: [{name: bad, pattern: "(unclosed"}]
""")
    assert r.returncode == 2 and "collectors.process.watch[0].pattern" in r.stderr, r.stderr


# ------------------------------------------------------------------ alerting rows


def test_absurd_rule_durations_are_that_rows_error(h: Harness) -> None:
    """`for_seconds = 1e300` killed the server, and every restart after it."""
    path = h.add_channel("ok", "webhook")
    h.add_rule("huge-for", 10, channel="ok", for_seconds=1e300)
    h.add_rule("huge-keep", 10, channel="ok", keep=1e16)
    h.add_rule("fine", 10, channel="ok")
    tt = h.start()
    h.set_level(20)
    h.wait_accepted(path, 1)
    table = samples(tt.metrics())
    for rule in ("huge-for", "huge-keep"):
        assert value(table, "telltale_alert_rule_errors", rule=rule) == 1
        assert "a year" in " ".join(status_row(tt, rule) or []), status_row(tt, rule)
    alive(tt)


def test_catastrophic_regex_is_that_rules_error_and_nothing_freezes(h: Harness) -> None:
    """`svc=~"(a+)+$"` against 100 `a`s and a `b` froze the whole process."""
    path = h.add_channel("ok", "webhook")
    h.sql(f"INSERT INTO tt_level_src VALUES ({sql_literal('a' * 100 + 'b')}, 50)")
    h.add_rule("evil", 10, channel="ok", matchers='svc=~"(a+)+$"')
    h.add_rule("fine", 10, channel="ok", matchers='svc="api"')
    tt = h.start()
    wait_until(lambda: value(samples(tt.metrics()), "telltale_alert_rule_errors", rule="evil") == 1, 10,
               "the regex reported as the rule's error")
    h.set_level(20)
    h.wait_accepted(path, 1)
    times = [timed_scrape(tt, "/healthz")[1] for _ in range(20)]
    assert_not_hung(times, "/healthz")
    assert "match budget" in " ".join(status_row(tt, "evil") or [])


def test_channel_rows_cannot_read_the_environment_or_arbitrary_files(h: Harness, tmp_path: Path) -> None:
    """A channel row named TELLTALE_PG_PASSWORD: it reached last_error and a DNS query.
    `url_file = /dev/zero` exhausted memory; a FIFO stalled rule reloading and SIGTERM."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    password = h.dsn.split(":")[2].split("@")[0]
    rows = [("pg-password", "url_env", "TELLTALE_PG_DSN"), ("path", "url_env", "PATH"),
            ("zero", "url_file", "/dev/zero"), ("fifo", "url_file", str(fifo)), ("passwd", "url_file", "/etc/passwd")]
    for name, column, source in rows:
        h.sql(f"INSERT INTO telltale_channels (name, kind, {column}) VALUES ({sql_literal(name)}, 'webhook', "
              f"{sql_literal(source)})")
        h.add_rule(f"r-{name}", 10, channel=name)
    ok = h.add_channel("ok", "webhook")
    h.add_rule("r-ok", 10, channel="ok")
    tt = h.start()
    h.set_level(20)
    h.wait_accepted(ok, 1)
    page = tt.get("/").text
    for name, _, _ in rows:
        row = status_row(tt, name)
        assert row is not None and ("TELLTALE_CHANNEL_" in " ".join(row) or "below" in " ".join(row)), row
    exposed = {"/": page, "/metrics": tt.metrics(), "logs": tt.logs(),
               "outbox": json.dumps(h.notifications(), default=str)}
    for where, text in exposed.items():
        assert password not in text, f"the database password appears in {where}"
        assert "root:x:0:0" not in text, f"/etc/passwd appears in {where}"
    started = time.monotonic()
    assert tt.stop(signal.SIGTERM, timeout=10) == 0
    assert time.monotonic() - started < 10


def test_a_redirect_is_not_a_delivery(h: Harness, hostile) -> None:
    """A webhook answering 302 got the POST re-sent without its body, and the row was
    marked delivered."""
    hostile.answer("/hook", 302, {"Location": "/elsewhere"})
    hostile.answer("/elsewhere", 200, body="ok")
    h.add_channel("moved", "webhook", url=hostile.url + "/hook")
    h.add_rule("r", 10, channel="moved")
    h.start()
    h.set_level(20)
    rows = wait_until(lambda: [r for r in h.notifications() if r["failed"]], 15, "the notification marked failed")
    assert not rows[0]["delivered"] and "redirect" in (rows[0]["last_error"] or ""), rows
    assert hostile.seen("/elsewhere") == [], "the redirect was followed"


def test_long_descriptions_and_labels_are_clipped(h: Harness, hostile) -> None:
    """A 10 MB rule description became a 20 MB webhook body and 10 MB outbox rows."""
    hostile.answer("/hook", 200, body="ok")
    h.add_channel("big", "webhook", url=hostile.url + "/hook")
    h.add_rule("r", 10, channel="big", description="d" * (10 << 20))
    tt = h.start()
    h.set_level(20)
    rows = wait_until(lambda: [r for r in h.notifications() if r["delivered"]], 20, "the notification delivered")
    assert len(json.dumps(rows[0]["event"])) < 20_000
    alive(tt)


def test_one_log_line_per_transition_while_the_database_is_down(h: Harness, services, tmp_path: Path) -> None:
    """With the alerting database down for 60 s, one transition was logged 845 times."""
    victim = subprocess.Popen(["sleep", "600"])
    pid_file = tmp_path / "victim.pid"
    pid_file.write_text(f"{victim.pid}\n")
    try:
        h.add_rule("victim-gone", 1, comparison="<", metric="telltale_process_up", matchers='name="victim"')
        tt = start_with(h, lambda cfg: cfg["collectors"].update(process={
            "enabled": True, "interval": "300ms", "timeout": "300ms",
            "watch": [{"name": "victim", "pid_file": str(pid_file)}]}))
        wait_until(lambda: value(samples(tt.metrics()), "telltale_process_up", name="victim") == 1, 10, "victim watched")
        wait_until(lambda: value(samples(tt.metrics()), "telltale_alert_threshold", rule="victim-gone") == 1, 10,
                   "the rule loaded")
        services.stop_pg()
        wait_until(lambda: value(samples(tt.metrics()), "telltale_alerting_database_up") == 0, 20, "database down")
        victim.kill()
        victim.wait()
        wait_until(lambda: "alert firing" in tt.logs(), 10, "the transition logged")
        # Many more evaluations (one after every run of the process collector) with the database still down.
        wait_runs(tt, "process", 10)
        assert value(samples(tt.metrics()), "telltale_alerting_database_up") == 0
        assert tt.logs().count("alert firing") == 1, tt.logs()[-3000:]
    finally:
        victim.kill()
        services.start_pg()


def test_non_finite_values_never_enter_running_totals(h: Harness) -> None:
    """An Infinity row stuck an incremental counter at +Inf, or a histogram's _sum at NaN."""
    h.sql("""
        CREATE TABLE tt_events (id bigint, v double precision); ALTER TABLE tt_events OWNER TO telltale;
        INSERT INTO tt_events VALUES (1, 2), (2, 'Infinity'), (3, 'NaN'), (4, '-Infinity'), (5, 3);
    """)
    incremental = {"sql": "SELECT id, 'x' AS k, v FROM tt_events WHERE id > $1::bigint ORDER BY id",
                   "labels": ["k"], "values": ["v"], "mode": "incremental", "watermark": "id",
                   "interval": "500ms", "timeout": "500ms"}
    h.write_config(queries=[{"metric": "tt_amount", "type": "counter", **incremental},
                            {"metric": "tt_size", "type": "histogram", "buckets": [1, 10], **incremental}])
    tt = h._start(h.config_path, env=h.env)
    h.started.append(tt)
    table = wait_until(lambda: (lambda t: t if value(t, "tt_amount_total", k="x", target="main") == 5
                                               and value(t, "tt_size_count", k="x", target="main") == 2 else None)(samples(tt.metrics())),
                       30, "the finite values counted", details=lambda: "\n" + "\n".join(
                           l for l in tt.metrics().splitlines() if "tt_" in l or "error" in l) + tt.logs()[-2000:])
    assert value(table, "tt_size_sum", k="x", target="main") == 5
    assert value(table, "tt_size_count", k="x", target="main") == 2
    for metric in ("tt_amount", "tt_size"):
        assert value(table, "telltale_collector_errors_total", collector=f"sql:main:{metric}", reason="bad_value") >= 1


# ------------------------------------------------------------------ hung backends


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """SIGSTOP pid and its descendants (PostgreSQL's backends too); SIGCONT at the end."""
    pids = descendants(pid)
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in pids:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass


def assert_answers_quickly(tt, seconds: float) -> list[float]:
    """/metrics and /healthz keep answering throughout `seconds` (the backend stays hung
    all that time: what is checked is that no request waits for it), none of them hung
    (helpers.HUNG). How fast they answer is scripts/bench/hung.sh's business
    (BENCHMARKS.md has the percentiles), not a test's."""
    times: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in ("/metrics", "/healthz"):
            times.append(timed_scrape(tt, path, timeout=5)[1])
        time.sleep(0.05)  # pacing the sampling
    assert_not_hung(times, "/metrics or /healthz")
    return times


def test_a_hung_postgres_holds_only_its_own_thread(h: Harness, pg_env) -> None:
    """A SIGSTOPped Postgres blocked the HTTP server (libpq waited on Swift's cooperative
    threads), and telltale_pg_up disappeared instead of reading 0."""
    tt = start_with(h, lambda cfg: cfg["postgres"][0].update(
        interval="1s", timeout="1s", health={"enabled": True, "database_size": {"enabled": False}}))
    wait_until(lambda: value(samples(tt.metrics()), "telltale_pg_up", target="main") == 1, 15, "pg_up 1")
    postmaster = int(Path(pg_env["TELLTALE_PG_DATA"], "postmaster.pid").read_text().split()[0])
    with stopped(postmaster):
        assert_answers_quickly(tt, 4)
        wait_until(lambda: value(samples(tt.metrics()), "telltale_pg_up", target="main") == 0, 10,
                   "pg_up 0 while Postgres is stopped")
        wait_until(lambda: value(samples(tt.metrics()), "telltale_alerting_database_up") == 0, 20,
                   "alerting_database_up 0 while Postgres is stopped")
        assert_answers_quickly(tt, 2)
    wait_until(lambda: value(samples(tt.metrics()), "telltale_pg_up", target="main") == 1, 30, "pg_up back to 1")
    wait_until(lambda: value(samples(tt.metrics()), "telltale_alerting_database_up") == 1, 30, "alerting database back")


def test_a_hung_redis_holds_only_its_own_thread(start_telltale, redis_env) -> None:
    tt = start_telltale(f"""\
{NO_DEFAULT_COLLECTORS}
queues:
  redis: {{url: "{redis_env['TELLTALE_REDIS_URL']}", command_timeout: 1s}}
  interval: 1s
  timeout: 1s
""")
    wait_until(lambda: value(samples(tt.metrics()), "telltale_collector_up", collector="queues:default") == 1, 15, "queues up")
    redis_pid = int(Path(redis_env["TELLTALE_RUN_DIR"], "redis.pid").read_text().split()[0])
    with stopped(redis_pid):
        assert_answers_quickly(tt, 4)
        wait_until(lambda: value(samples(tt.metrics()), "telltale_collector_up", collector="queues:default") == 0, 10,
                   "queues down while Redis is stopped")
    wait_until(lambda: value(samples(tt.metrics()), "telltale_collector_up", collector="queues:default") == 1, 30, "queues back")
