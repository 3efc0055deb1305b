"""End-to-end tests of Telltale's PostgreSQL support, against a real server.

Covers the health collector, outages and reconnects, queries blocked on locks,
incremental counters and histograms, bad queries and bad data, the series cap,
DSN secrecy and ``telltale once``.

Needs the throw-away PostgreSQL of scripts/services.sh (the ``pg_env`` fixture
finds it through $TELLTALE_RUN_DIR/env).  Some tests stop and start that server
(``services`` fixture), so do not point them at a PostgreSQL other people use:

    TELLTALE_RUN_DIR=/tmp/tt-pg TELLTALE_PG_PORT=55532 TELLTALE_REDIS_PORT=56479 \
        bash scripts/services.sh start
    TELLTALE_RUN_DIR=/tmp/tt-pg .venv/bin/python -m pytest tests/test_postgres.py -q

Setup SQL runs through psql as the superuser (TELLTALE_PG_ADMIN_DSN, unix
socket); every table a test creates is named ``tt_pgtest_*`` and dropped
afterwards, with SELECT granted to the role ``telltale`` that Telltale uses.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from helpers import (
    OPENMETRICS, Samples, assert_not_hung, collector_runs, promtool_check, psql_argv, psql_binary, run_psql, scrape, timed_scrapes,
    wait_for, wait_runs, wait_until,
)

PASSWORD = "telltale-demo-secret"  # the services' password for role telltale
WRONG_PASSWORD = "wrong-pass-xyz"

# A label value that needs every escape of the exposition formats: double quotes,
# a single backslash, a double backslash, a literal backslash-n and a real newline.
NASTY_LABEL = 'he said "hi"\\path\\\\share\\n' + "\n" + "second line"


# ---------------------------------------------------------------------- helpers


def config_yaml(targets: list[dict], **top: Any) -> str:
    """A Telltale config with the host/process collectors off and these postgres targets."""
    config = {"collectors": {"host": {"enabled": False}, "process": {"enabled": False}}, **top}
    config["postgres"] = targets
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def target(name: str = "main", dsn: str = "${TELLTALE_PG_DSN}", queries: list[dict] | None = None,
           **extra: Any) -> dict:
    t = {
        "name": name,
        "dsn": dsn,
        "interval": "1s",
        "timeout": "1s",
        "statement_timeout": "500ms",
        "lock_timeout": "300ms",
        "health": {"enabled": True, "database_size": {"enabled": True, "interval": "5s"}},
    }
    t.update(extra)
    if queries is not None:
        t["queries"] = queries
    return t


class PG:
    """psql as the superuser over the unix socket."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.psql = psql_binary(env)
        self.admin_dsn = env["TELLTALE_PG_ADMIN_DSN"]
        self.port = int(env["TELLTALE_PG_PORT"])
        self.database = env["TELLTALE_PG_DATABASE"]

    def cmd(self) -> list[str]:
        return psql_argv(self.psql, self.admin_dsn)

    def run(self, sql: str, timeout: float = 30) -> str:
        return run_psql(self.psql, self.admin_dsn, sql, timeout, appname="tt_pgtest_admin")

    def scalar(self, sql: str) -> int:
        return int(self.run(sql))

    def dsn(self, user: str = "telltale", password: str = PASSWORD) -> str:
        return f"postgres://{user}:{password}@127.0.0.1:{self.port}/{self.database}"


@pytest.fixture
def pg(pg_env: dict[str, str]) -> PG:
    return PG(pg_env)


@pytest.fixture
def make_table(pg: PG) -> Iterator[Callable[[str, str], str]]:
    """make_table(suffix, columns_sql) -> a fresh table name readable by telltale."""
    made: list[str] = []

    def make(suffix: str, columns: str) -> str:
        name = f"tt_pgtest_{suffix}_{uuid.uuid4().hex[:8]}"
        pg.run(f"CREATE TABLE {name} ({columns}); GRANT SELECT ON {name} TO telltale;")
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            pg.run(f"DROP TABLE IF EXISTS {name}")
        except Exception:  # the server may be down after a failed outage test
            pass


def ensure_role(pg: PG, role: str, password: str) -> None:
    """A login role (kept between runs; the cluster is disposable) that can read stats."""
    pg.run(f"""
        DO $$BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
            CREATE ROLE {role} LOGIN PASSWORD '{password}';
          END IF;
        END$$;
        GRANT pg_monitor TO {role};
    """)


def dollar(text: str) -> str:
    """A PostgreSQL dollar-quoted literal: no escaping, newlines and backslashes kept."""
    tag = "$q" + uuid.uuid4().hex[:6] + "$"
    assert tag not in text
    return f"{tag}{text}{tag}"


# ------------------------------------------------------------------- health


def test_health_metrics_present_and_plausible(start_telltale, pg: PG) -> None:
    tt = start_telltale(config_yaml([target(queries=[
        {"metric": "tt_one", "sql": "SELECT 1 AS v", "values": ["v"]},
    ])]))
    m, _ = wait_for(
        tt,
        lambda s: s.get("telltale_pg_up", target="main") == 1
        and s.get("telltale_pg_database_size_bytes", target="main", database="telltale_demo") is not None
        and s.get("telltale_collector_up", collector="sql:main:tt_one") == 1,
        10, "health and size metrics",
    )
    server_version = pg.run("SHOW server_version")
    info = m.find("telltale_pg_server_info", target="main")
    assert [lab["version"] for lab, _ in info] == [server_version], info
    assert info[0][1] == 1
    assert m.get("telltale_pg_max_connections", target="main") == 100
    assert m.get("telltale_pg_in_recovery", target="main") == 0
    # Telltale's own session is in telltale_demo and active while it runs the health query.
    conns = m.find("telltale_pg_connections", target="main", database="telltale_demo")
    assert conns, "no telltale_pg_connections series for telltale_demo"
    assert {lab["state"] for lab, _ in conns} >= {"active"}
    assert sum(v for _, v in conns) >= 1
    assert m.get("telltale_pg_xact_commits_total", target="main", database="telltale_demo") > 0
    assert m.get("telltale_pg_database_size_bytes", target="main", database="telltale_demo") > 1_000_000
    assert m.get("telltale_pg_oldest_transaction_seconds", target="main") >= 0
    assert m.find("telltale_pg_locks", target="main"), "no telltale_pg_locks series"
    for collector in ("postgres:main", "postgres_size:main", "sql:main:tt_one"):
        assert m.get("telltale_collector_up", collector=collector) == 1, collector
    assert m.get("tt_one") == 1
    # Counters keep counting.
    first = m.get("telltale_pg_xact_commits_total", target="main", database="telltale_demo")
    wait_for(tt, lambda s: s.get("telltale_pg_xact_commits_total", target="main", database="telltale_demo") > first,
             10, "xact commits to increase")
    promtool_check(tt.metrics())
    om = scrape(tt, openmetrics=True)
    assert om.get("telltale_pg_up", target="main") == 1
    assert om.types.get("telltale_pg_server") == "info"


# ------------------------------------------------------------------- outage


def test_server_stop_and_restart(start_telltale, services, pg: PG) -> None:
    """pg_up drops to 0 within a few intervals of the server stopping; /metrics keeps
    answering; Telltale reconnects (capped exponential backoff) once the server is back."""
    tt = start_telltale(config_yaml([target(queries=[
        {"metric": "tt_outage_one", "sql": "SELECT 1 AS v", "values": ["v"]},
    ])]))
    wait_for(tt, lambda s: s.get("telltale_pg_up", target="main") == 1
             and s.get("telltale_collector_up", collector="sql:main:tt_outage_one") == 1, 10, "pg_up 1")

    t_stop = time.monotonic()
    services.stop_pg()
    stop_took = time.monotonic() - t_stop
    # The next run (interval 1 s) fails at once: the port is closed. 10 s is generous for a
    # busy machine, and still catches a collector that hangs on the dead server or keeps
    # exporting its last values.
    m, down_after = wait_for(
        tt, lambda s: s.get("telltale_pg_up", target="main") == 0
        and s.get("telltale_collector_up", collector="postgres:main") == 0,
        10, "pg_up 0 after stop-pg",
    )
    print(f"\n[outage] stop-pg took {stop_took:.2f}s; pg_up 0 seen {down_after:.2f}s after it returned")
    # Health metrics that need the server are gone, not frozen at their last values.
    assert m.find("telltale_pg_max_connections", target="main") == []

    # While the server is down: /metrics answers without waiting, the SQL query fails too, no crash.
    times, _ = timed_scrapes(tt, 5, timeout=5)
    print(f"[outage] /metrics while down: {', '.join(f'{t * 1000:.1f}ms' for t in times)}")
    assert_not_hung(times)
    m, _ = wait_for(tt, lambda s: s.get("telltale_collector_up", collector="sql:main:tt_outage_one") == 0,
                    10, "SQL collector down")
    promtool_check(m.text)
    wait_runs(tt, ("postgres:main", "sql:main:tt_outage_one"), 2)  # failing run after failing run
    assert tt.running
    # (The very first failure may be reason=query, see test_terminated_session_is_a_connection_error.)
    m = scrape(tt)
    for collector in ("postgres:main", "sql:main:tt_outage_one"):
        reasons = {lab["reason"] for lab, _ in m.find("telltale_collector_errors_total", collector=collector)}
        assert "connect" in reasons, (collector, reasons)

    t_start = time.monotonic()
    services.start_pg()
    start_took = time.monotonic() - t_start
    m, up_after = wait_for(
        tt, lambda s: s.get("telltale_pg_up", target="main") == 1
        and s.get("telltale_collector_up", collector="sql:main:tt_outage_one") == 1,
        35, "pg_up 1 after start-pg",
    )
    print(f"[outage] start-pg took {start_took:.2f}s; pg_up 1 again {up_after:.2f}s after it returned; "
          f"total outage as seen by Telltale {time.monotonic() - t_stop:.2f}s")
    assert tt.running
    assert m.get("telltale_pg_max_connections", target="main") == 100


def test_terminated_session_is_a_connection_error(start_telltale, pg: PG) -> None:
    """A session killed under Telltale (pg_terminate_backend, or a server shutdown: both
    send SQLSTATE 57P01 "terminating connection due to administrator command") is a
    broken connection, for the health queries as for SQL-defined ones: reason
    "connection" (or "connect"), never "query", which is for bad SQL and timeouts.
    Telltale reconnects at the next run."""
    role, password = "tt_pgtest_term", "term-pw"
    ensure_role(pg, role, password)
    dsn = pg.dsn(role, password)
    tt = start_telltale(config_yaml([
        target("term_health", dsn, health={"enabled": True, "database_size": {"enabled": False}}),
        target("term_sql", dsn, health={"enabled": False, "database_size": {"enabled": False}},
               queries=[{"metric": "tt_term_one", "sql": "SELECT 1 AS v", "values": ["v"]}]),
    ]))
    collectors = ("postgres:term_health", "sql:term_sql:tt_term_one")
    wait_for(tt, lambda s: all(s.get("telltale_collector_up", collector=c) == 1 for c in collectors), 10, "both up")
    def errors(s: Samples, c: str) -> float:
        return sum(v for _, v in s.find("telltale_collector_errors_total", collector=c))

    for _ in range(2):
        before = scrape(tt)
        killed = pg.scalar(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{role}'")
        assert killed == 2, f"expected Telltale's 2 sessions of {role}, terminated {killed}"
        wait_for(tt, lambda s: all(errors(s, c) > errors(before, c) for c in collectors),
                 10, "both collectors to notice")
        wait_for(tt, lambda s: all(s.get("telltale_collector_up", collector=c) == 1 for c in collectors)
                 and s.get("telltale_pg_up", target="term_health") == 1, 10, "both to reconnect")
    m = scrape(tt)
    reasons = {c: {lab["reason"]: v for lab, v in m.find("telltale_collector_errors_total", collector=c)}
               for c in collectors}
    print(f"\n[terminate] error reasons after two terminations: {reasons}")
    for c in collectors:
        assert set(reasons[c]) <= {"connection", "connect"}, f"{c}: {reasons[c]}"


# ------------------------------------------------------------------- locks


LOCK_ROLES = {"a": ("tt_pgtest_lock_a", "lock-pw-a"), "b": ("tt_pgtest_lock_b", "lock-pw-b")}


def test_query_blocked_on_lock(make_table, start_telltale, pg: PG) -> None:
    """A query waiting on a lock is cancelled by lock_timeout (target a) or
    statement_timeout (target b), /metrics stays fast, and Telltale never holds more
    than one connection per target, even while its queries time out."""
    table = make_table("lock", "kind text, amount int")
    pg.run(f"INSERT INTO {table} VALUES ('x', 1), ('x', 2), ('y', 5);")
    # One role per target, so the sessions of each target can be told apart.
    for role, password in LOCK_ROLES.values():
        ensure_role(pg, role, password)
        pg.run(f"GRANT SELECT ON {table} TO {role}")
    def query(t: str) -> dict:
        # Distinct names per target: SQL-defined series carry no target label.
        return {"metric": f"tt_locked_{t}", "labels": ["kind"], "values": ["total"],
                "sql": f"SELECT kind, sum(amount) AS total FROM {table} GROUP BY kind"}

    targets = [
        # a: the lock wait ends at lock_timeout (SQLSTATE 55P03)
        target("a", pg.dsn(*LOCK_ROLES["a"]), [query("a")], statement_timeout="700ms", lock_timeout="300ms"),
        # b: no lock_timeout before the statement_timeout (SQLSTATE 57014)
        target("b", pg.dsn(*LOCK_ROLES["b"]), [query("b")], statement_timeout="400ms", lock_timeout="900ms"),
    ]
    tt = start_telltale(config_yaml(targets))
    m, _ = wait_for(tt, lambda s: all(s.get("telltale_collector_up", collector=f"sql:{t}:tt_locked_{t}") == 1
                                      for t in "ab"), 10, "both lock queries up")
    for t in "ab":
        assert m.get(f"tt_locked_{t}", kind="x") == 3 and m.get(f"tt_locked_{t}", kind="y") == 5
    before = {t: m.get("telltale_collector_errors_total", collector=f"sql:{t}:tt_locked_{t}", reason="timeout") or 0
              for t in "ab"}

    holder = subprocess.Popen(pg.cmd(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PGAPPNAME": "tt_pgtest_lock_holder"})
    try:
        holder.stdin.write(f"BEGIN;\nLOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;\nSELECT pg_sleep(30);\n")
        holder.stdin.flush()
        granted_sql = (f"SELECT count(*) FROM pg_locks WHERE relation = '{table}'::regclass "
                       "AND mode = 'AccessExclusiveLock' AND granted")

        def granted() -> bool:
            assert holder.poll() is None, holder.stderr.read()
            return pg.scalar(granted_sql) == 1

        wait_until(granted, 10, "the lock holder's lock")

        m, waited = wait_for(
            tt,
            lambda s: all(
                (s.get("telltale_collector_errors_total", collector=f"sql:{t}:tt_locked_{t}", reason="timeout") or 0)
                > before[t]
                and s.get("telltale_collector_up", collector=f"sql:{t}:tt_locked_{t}") == 0
                for t in "ab"),
            10, "timeouts on both targets",
        )
        print(f"\n[lock] both queries reported reason=timeout {waited:.2f}s after the lock was taken")
        for t in "ab":
            # The rest of the target is fine: health runs on the same connection.
            assert m.get("telltale_collector_up", collector=f"postgres:{t}") == 1
            assert m.get("telltale_pg_up", target=t) == 1
            # A failed run exports nothing for its family.
            assert m.find(f"tt_locked_{t}") == []

        # Sample Telltale's sessions while its queries keep timing out, until each has timed
        # out three more times: at most one session per target, never a pile.
        # Sessions of the two targets' roles, whatever their application_name (a Telltale
        # elsewhere on this server, with the usual role, does not count), and how many of
        # them are Telltale's (application_name=telltale).
        counts_sql = ("SELECT coalesce(sum((usename = '{a}')::int), 0) || ' ' || coalesce(sum((usename = '{b}')::int), 0)"
                      " || ' ' || coalesce(sum((application_name = 'telltale')::int), 0)"
                      " FROM pg_stat_activity WHERE usename IN ('{a}', '{b}')"
                      ).format(a=LOCK_ROLES["a"][0], b=LOCK_ROLES["b"][0])
        samples = []
        scrape_times = []

        def timeouts(s: Samples, t: str) -> float:
            return s.get("telltale_collector_errors_total", collector=f"sql:{t}:tt_locked_{t}", reason="timeout") or 0

        deadline = time.monotonic() + 20
        while True:
            samples.append(tuple(int(x) for x in pg.run(counts_sql).split()))
            times, m = timed_scrapes(tt, 1, timeout=5, parse=Samples)
            scrape_times += times
            if all(timeouts(m, t) >= before[t] + 3 for t in "ab"):
                break
            assert time.monotonic() < deadline, (f"fewer than 3 more timeouts in 20 s: "
                                                 f"{ {t: (before[t], timeouts(m, t)) for t in 'ab'} }")
            time.sleep(0.2)  # pacing the sampling
        print(f"[lock] {len(samples)} samples of (a, b, application_name=telltale) sessions: "
              f"max {tuple(max(s[i] for s in samples) for i in range(3))}; "
              f"scrapes max {max(scrape_times) * 1000:.1f}ms")
        assert max(s[0] for s in samples) == 1, samples
        assert max(s[1] for s in samples) == 1, samples
        assert all(s[2] == s[0] + s[1] for s in samples), f"sessions without application_name=telltale: {samples}"
        assert min(s[0] + s[1] for s in samples) >= 1, samples  # the sampling did see Telltale
        assert_not_hung(scrape_times)
        m = scrape(tt)
        for t in "ab":
            errors = m.get("telltale_collector_errors_total", collector=f"sql:{t}:tt_locked_{t}", reason="timeout")
            assert errors >= before[t] + 3, f"{t}: only {errors} timeouts while locked"
        promtool_check(m.text)
        still_locked = pg.scalar(granted_sql)
        assert still_locked == 1
    finally:
        pg.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE application_name = 'tt_pgtest_lock_holder'")
        try:
            holder.stdin.close()
        except OSError:
            pass
        holder.wait(timeout=10)

    m, recovered = wait_for(tt, lambda s: all(s.get("telltale_collector_up", collector=f"sql:{t}:tt_locked_{t}") == 1
                                              for t in "ab"), 10, "lock queries to recover")
    print(f"[lock] recovered {recovered:.2f}s after the lock was released")
    for t in "ab":
        assert m.get(f"tt_locked_{t}", kind="x") == 3 and m.get(f"tt_locked_{t}", kind="y") == 5


# --------------------------------------------------------------- incremental


def _inc_config(table: str) -> str:
    return config_yaml([target(
        health={"enabled": False},
        queries=[
            {"metric": "tt_inc_seen", "type": "counter", "mode": "incremental", "watermark": "id",
             "sql": f"SELECT id, kind FROM {table} WHERE id > $1 ORDER BY id", "labels": ["kind"]},
            {"metric": "tt_inc_amount", "type": "counter", "mode": "incremental", "watermark": "id",
             "sql": f"SELECT id, kind, amount FROM {table} WHERE id > $1", "labels": ["kind"],
             "values": ["amount"]},
            {"metric": "tt_inc_duration_seconds", "type": "histogram", "mode": "incremental", "watermark": "id",
             "sql": f"SELECT id, ms / 1000.0 AS seconds FROM {table} WHERE id > $1",
             "values": ["seconds"], "buckets": [0.05, 0.1, 0.2]},
        ])])


def _expected(rows: list[tuple[str, int, float]]) -> dict:
    seen: dict[str, float] = {}
    amount: dict[str, float] = {}
    for kind, _, amt in rows:
        seen[kind] = seen.get(kind, 0) + 1
        amount[kind] = amount.get(kind, 0) + amt
    secs = [ms / 1000 for _, ms, _ in rows]
    buckets = {le: sum(1 for s in secs if s <= float(le)) for le in ("0.05", "0.1", "0.2")}
    buckets["+Inf"] = len(secs)
    return {"seen": seen, "amount": amount, "buckets": buckets, "count": len(secs), "sum": sum(secs)}


def _observed(m: Samples) -> dict:
    return {
        "seen": {lab["kind"]: v for lab, v in m.find("tt_inc_seen_total")},
        "amount": {lab["kind"]: v for lab, v in m.find("tt_inc_amount_total")},
        "buckets": {lab["le"]: v for lab, v in m.find("tt_inc_duration_seconds_bucket")},
        "count": m.get("tt_inc_duration_seconds_count"),
        "sum": m.get("tt_inc_duration_seconds_sum"),
    }


def _matches(m: Samples, want: dict) -> bool:
    got = _observed(m)
    return (got["seen"] == want["seen"] and got["buckets"] == want["buckets"] and got["count"] == want["count"]
            and got["amount"].keys() == want["amount"].keys()
            and all(abs(got["amount"][k] - want["amount"][k]) < 1e-9 for k in want["amount"])
            and got["sum"] is not None and abs(got["sum"] - want["sum"]) < 1e-9)


def test_incremental_counters_and_histogram(make_table, start_telltale, pg: PG) -> None:
    table = make_table("inc", "id bigserial PRIMARY KEY, kind text NOT NULL, ms int NOT NULL, amount numeric NOT NULL")

    def insert(rows: list[tuple[str, int, float]]) -> None:
        values = ", ".join(f"('{k}', {ms}, {amt})" for k, ms, amt in rows)
        pg.run(f"INSERT INTO {table} (kind, ms, amount) VALUES {values}")

    # 0.05 and 0.1 exactly on a bound: `le` is inclusive.
    round1 = [("a", 10, 1.5), ("a", 50, 2), ("a", 100, 0.25), ("b", 150, 10), ("b", 300, 0)]
    insert(round1)
    config = _inc_config(table)
    tt = start_telltale(config)
    want = _expected(round1)
    assert want["buckets"] == {"0.05": 2, "0.1": 3, "0.2": 4, "+Inf": 5}
    m, _ = wait_for(tt, lambda s: _matches(s, want), 10, f"round 1 totals {want}")
    for name in ("tt_inc_seen", "tt_inc_amount", "tt_inc_duration_seconds"):
        assert m.get("telltale_collector_up", collector=f"sql:main:{name}") == 1

    # Several more runs with no new rows change nothing (no row counted twice).
    assert _observed(wait_runs(tt, [f"sql:main:{name}" for name in ("tt_inc_seen", "tt_inc_amount",
                                                                    "tt_inc_duration_seconds")])) == _observed(m)

    round2 = [("a", 20, 0.5), ("c", 500, 4), ("b", 200, 1)]
    insert(round2)
    want = _expected(round1 + round2)
    assert want["buckets"] == {"0.05": 3, "0.1": 4, "0.2": 6, "+Inf": 8}
    m, _ = wait_for(tt, lambda s: _matches(s, want), 10, f"round 2 totals {want}")
    promtool_check(m.text)
    om = scrape(tt, openmetrics=True)
    assert om.types.get("tt_inc_seen") == "counter"
    assert om.types.get("tt_inc_duration_seconds") == "histogram"

    # Deleting rows never makes a counter or histogram go down (runs after the DELETE).
    pg.run(f"DELETE FROM {table} WHERE kind = 'b' OR ms = 10")
    m = wait_runs(tt, [f"sql:main:{name}" for name in ("tt_inc_seen", "tt_inc_amount", "tt_inc_duration_seconds")])
    assert _matches(m, want), _observed(m)

    # Documented behaviour: incremental state (watermark and totals) lives in memory.
    # After a restart the watermark starts again at watermark_start ("0"), so the totals
    # are recomputed from the rows still in the table: deleted rows are no longer
    # counted (Prometheus sees a counter reset, which rate() handles).
    assert tt.stop() == 0
    remaining = [r for r in round1 + round2 if r[0] != "b" and r[1] != 10]
    tt2 = start_telltale(config)
    want = _expected(remaining)
    assert want["seen"] == {"a": 3, "c": 1}
    m, _ = wait_for(tt2, lambda s: _matches(s, want), 10, f"recomputed totals after restart {want}")
    assert m.find("tt_inc_seen_total", kind="b") == []

    # And it keeps counting new rows from there.
    insert([("b", 60, 2)])
    want = _expected(remaining + [("b", 60, 2)])
    wait_for(tt2, lambda s: _matches(s, want), 10, f"totals after restart and a new row {want}")


def test_incremental_watermark_beyond_2_53(make_table, start_telltale, pg: PG) -> None:
    """Snowflake-style ids (~1.8e18, well past 2**53) are unique increasing bigints, the
    kind of watermark the README recommends.  Neighbouring ids must still count once."""
    table = make_table("snowflake", "id bigint PRIMARY KEY, kind text NOT NULL")
    base = 1_800_000_000_000_000_000
    pg.run(f"INSERT INTO {table} VALUES ({base + 1}, 'a'), ({base + 2}, 'a'), ({base + 3}, 'b')")
    tt = start_telltale(config_yaml([target(health={"enabled": False}, queries=[
        {"metric": "tt_snowflake_rows", "type": "counter", "mode": "incremental", "watermark": "id",
         "sql": f"SELECT id, kind FROM {table} WHERE id > $1 ORDER BY id", "labels": ["kind"]},
    ])]))
    m, _ = wait_for(tt, lambda s: s.get("tt_snowflake_rows_total", kind="b") is not None, 10, "first run")
    m = wait_runs(tt, "sql:main:tt_snowflake_rows")  # more runs, with no new rows
    got = {lab["kind"]: v for lab, v in m.find("tt_snowflake_rows_total")}
    assert got == {"a": 2, "b": 1}, f"rows counted more than once: {got}"


# ------------------------------------------------------------- bad queries


def test_bad_queries_and_values_are_isolated(make_table, start_telltale, pg: PG) -> None:
    table = make_table("bad", "kind text, amount numeric")
    pg.run(f"INSERT INTO {table} VALUES ('plain', 1), ('plain', 2.5), ({dollar(NASTY_LABEL)}, 7)")
    assert pg.run(f"SELECT count(DISTINCT kind) FROM {table}") == "2"
    good = f"SELECT kind, count(*) AS n, sum(amount) AS total FROM {table} GROUP BY kind"
    queries = [
        {"metric": "tt_good", "sql": good, "labels": ["kind"], "values": ["n", "total"], "value_label": "column"},
        {"metric": "tt_bad_sql", "sql": "SELEC 1 AS v", "values": ["v"]},
        {"metric": "tt_missing_column", "sql": "SELECT 'x' AS k, 1 AS v", "labels": ["k"], "values": ["nope"]},
        {"metric": "tt_null_value", "sql": "SELECT 'x' AS k, NULL::int AS v", "labels": ["k"], "values": ["v"]},
        {"metric": "tt_text_value", "sql": "SELECT 'x' AS k, 'abc'::text AS v", "labels": ["k"], "values": ["v"]},
        {"metric": "tt_duplicate_labels", "sql": "SELECT 'x' AS k, 1 AS v UNION ALL SELECT 'x', 2",
         "labels": ["k"], "values": ["v"]},
        {"metric": "tt_good_after", "sql": "SELECT 42 AS v", "values": ["v"]},
    ]
    expected_reason = {
        "tt_bad_sql": "query",
        "tt_missing_column": "missing_column",
        "tt_null_value": "bad_value",
        "tt_text_value": "bad_value",
        "tt_duplicate_labels": "duplicate_labels",
    }
    tt = start_telltale(config_yaml([target(queries=queries)]))

    def settled(s: Samples) -> bool:
        return all(
            (s.get("telltale_collector_errors_total", collector=f"sql:main:{metric}", reason=reason) or 0) >= 2
            for metric, reason in expected_reason.items()
        ) and s.get("tt_good_after") == 42

    m, _ = wait_for(tt, settled, 10, "every bad query to fail twice")
    for metric, reason in expected_reason.items():
        collector = f"sql:main:{metric}"
        assert m.get("telltale_collector_up", collector=collector) == 0, collector
        other = {lab["reason"]: v for lab, v in m.find("telltale_collector_errors_total", collector=collector)
                 if lab["reason"] != reason}
        assert not other, f"{collector}: unexpected reasons {other}"
    for collector in ("sql:main:tt_good", "sql:main:tt_good_after", "postgres:main", "postgres_size:main"):
        assert m.get("telltale_collector_up", collector=collector) == 1, collector
        assert m.find("telltale_collector_errors_total", collector=collector) == [], collector
    assert m.get("telltale_pg_up", target="main") == 1
    # No partial series from failed runs; the duplicate's first row is what Telltale keeps.
    assert m.find("tt_bad_sql") == [] and m.find("tt_missing_column") == []
    assert m.find("tt_null_value") == [] and m.find("tt_text_value") == []
    assert m.get("tt_duplicate_labels", k="x") == 1

    # Two value columns, told apart by the value_label; the nasty label value round-trips.
    assert m.get("tt_good", kind="plain", column="n") == 2
    assert m.get("tt_good", kind="plain", column="total") == 3.5
    assert m.get("tt_good", kind=NASTY_LABEL, column="n") == 1
    assert m.get("tt_good", kind=NASTY_LABEL, column="total") == 7
    assert {lab["kind"] for lab, _ in m.find("tt_good")} == {"plain", NASTY_LABEL}

    promtool_check(m.text)
    om = scrape(tt, openmetrics=True)
    assert om.text.rstrip().endswith("# EOF")
    assert om.get("tt_good", kind=NASTY_LABEL, column="total") == 7
    assert om.get("telltale_collector_up", collector="sql:main:tt_bad_sql") == 0
    assert {lab["kind"] for lab, _ in om.find("tt_good")} == {"plain", NASTY_LABEL}

    # The status page names the failing collectors and stays a page.
    page = tt.get("/")
    assert page.status_code == 200
    assert "sql:main:tt_bad_sql" in page.text


# ------------------------------------------------------------------ max_series


def test_max_series_cap(start_telltale) -> None:
    tt = start_telltale(config_yaml([target(health={"enabled": False}, queries=[
        {"metric": "tt_capped", "sql": "SELECT g::text AS k, g AS v FROM generate_series(1, 50) AS g",
         "labels": ["k"], "values": ["v"], "max_series": 10},
    ])]))
    dropped_name = "telltale_series_dropped_total"
    labels = {"collector": "sql:main:tt_capped", "metric": "tt_capped"}
    m, _ = wait_for(tt, lambda s: (s.get(dropped_name, **labels) or 0) >= 40, 15, "first dropped series")
    assert len(m.find("tt_capped")) == 10
    assert all(1 <= v <= 50 for _, v in m.find("tt_capped"))
    first = m.get(dropped_name, **labels)
    assert first % 40 == 0, first
    # Every run drops the same 40, however many runs a slow machine fits between two scrapes:
    # the dropped count follows the collector's run count, both read from one scrape. (A run's
    # count is recorded just before its results are published, so another collector's publish
    # in between can show it one run ahead of the dropped count, never behind.)
    m = wait_runs(tt, "sql:main:tt_capped", 2)
    second = m.get(dropped_name, **labels)
    runs = collector_runs(m, "sql:main:tt_capped")
    assert second > first and runs >= 3, (first, second, runs)
    assert second in (40 * runs, 40 * (runs - 1)), f"{second} dropped after {runs} runs of 40 each"
    assert len(m.find("tt_capped")) == 10
    promtool_check(m.text)


# ----------------------------------------------------------------- secrets


def _assert_secret_absent(tt, secrets: list[str]) -> None:
    places = {
        "logs": tt.logs(),
        "/metrics": tt.metrics(),
        "/metrics (OpenMetrics)": tt.get("/metrics", headers={"Accept": OPENMETRICS}).text,
        "/": tt.get("/").text,
        "/readyz": tt.get("/readyz").text,
    }
    leaks = [
        f"{secret!r} in {where}: " + " | ".join(line.strip() for line in text.splitlines() if secret in line)[:600]
        for secret in secrets for where, text in places.items() if secret in text
    ]
    assert not leaks, "DSN password leaked:\n" + "\n".join(leaks)


def test_password_never_shown(start_telltale, pg: PG) -> None:
    """The DSN password appears nowhere: not in logs (at debug level), /metrics or the
    status page, also when the server rejects it (reason connect, pg_up 0)."""
    wrong_dsn = pg.dsn(password=WRONG_PASSWORD)
    keyword_dsn = (f"host=127.0.0.1 port={pg.port} dbname={pg.database} user=telltale "
                   f"password={WRONG_PASSWORD}x")
    queries = [{"metric": "tt_secret_one", "sql": "SELECT 1 AS v", "values": ["v"]}]
    tt = start_telltale(config_yaml(
        [target("good", queries=queries), target("bad", wrong_dsn, queries=queries),
         target("badkw", keyword_dsn, queries=queries)],
        log={"level": "debug"},
    ))
    m, _ = wait_for(
        tt,
        lambda s: s.get("telltale_pg_up", target="good") == 1
        and all(s.get("telltale_pg_up", target=t) == 0
                and (s.get("telltale_collector_errors_total", collector=f"postgres:{t}", reason="connect") or 0) >= 2
                for t in ("bad", "badkw")),
        15, "good target up, bad targets failing to connect",
    )
    for t in ("bad", "badkw"):
        assert m.get("telltale_collector_up", collector=f"postgres:{t}") == 0
        assert m.get("telltale_collector_up", collector=f"sql:{t}:tt_secret_one") == 0
        reasons = {lab["reason"] for lab, _ in m.find("telltale_collector_errors_total", collector=f"postgres:{t}")}
        assert reasons == {"connect"}, reasons
    assert "password authentication failed" in tt.logs(), tt.logs()[-2000:]
    _assert_secret_absent(tt, [PASSWORD, WRONG_PASSWORD])


def test_malformed_dsn_is_a_config_error_without_the_password(run_cli, tmp_path: Path, pg: PG) -> None:
    """libpq quotes the whole URI in some parse errors (here: an unclosed IPv6 bracket): a DSN
    it cannot parse is rejected when the configuration is read, naming the key, never the password."""
    malformed = f"postgresql://telltale:{WRONG_PASSWORD}@[127.0.0.1:{pg.port}/{pg.database}"
    path = tmp_path / "malformed.yml"
    path.write_text(config_yaml([target("malformed", malformed, queries=[
        {"metric": "tt_secret_two", "sql": "SELECT 1 AS v", "values": ["v"]},
    ])]))
    for command in (["check-config", "--config", path], ["serve", "--config", path, "--listen", "127.0.0.1:1"]):
        result = run_cli(command, timeout=30)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "postgres[0].dsn" in result.stderr
        assert WRONG_PASSWORD not in result.stdout + result.stderr


# -------------------------------------------------------------------- once


def test_once_exit_code(run_cli, tmp_path: Path, pg_env) -> None:
    def once(queries: list[dict]) -> subprocess.CompletedProcess:
        path = tmp_path / f"once-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(config_yaml([target(queries=queries, interval="10s", timeout="5s",
                                            statement_timeout="2s", lock_timeout="1s")]))
        return run_cli(["once", "--config", path], timeout=60)

    good = [{"metric": "tt_once_ok", "sql": "SELECT 7 AS v", "values": ["v"]}]
    r = once(good)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    m = Samples(r.stdout)
    assert m.get("tt_once_ok") == 7
    assert m.get("telltale_pg_up", target="main") == 1
    promtool_check(r.stdout)

    r = once(good + [{"metric": "tt_once_bad", "sql": "SELECT 1/0 AS v", "values": ["v"]}])
    assert r.returncode != 0, f"exit 0 although a query failed\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    m = Samples(r.stdout)
    assert m.get("tt_once_ok") == 7
    assert m.get("telltale_collector_up", collector="sql:main:tt_once_bad") == 0
    assert m.get("telltale_collector_errors_total", collector="sql:main:tt_once_bad", reason="query") == 1
    assert PASSWORD not in r.stdout + r.stderr
