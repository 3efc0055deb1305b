"""End-to-end tests of the admin portal's System Health writer (`alerting.system_health`):
the alerting leader inserts a row into the portal's ``admin_system_health`` every interval
(host CPU and memory, a probe's latency and error rate, the firing alerts as JSON) and
prunes rows past the retention.  The table belongs to the portal: each test creates it as
the portal's Prisma migration would, and grants Telltale's role what it needs.

Reuses tests/test_alerting.py's Harness and fixtures (a fresh database per test, the
chat receiver, which also answers the probe's GETs).  Run against private services:

    TELLTALE_RUN_DIR=/tmp/tt-atests TELLTALE_PG_PORT=55832 TELLTALE_REDIS_PORT=56779 \\
        bash scripts/services.sh start
    TELLTALE_RUN_DIR=/tmp/tt-atests .venv/bin/python -m pytest tests/test_system_health.py -q
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from helpers import scrape
from test_alerting import Harness, h, rfc3339, rx, wait_until  # noqa: F401 - h and rx are fixtures

PROBE_PATH = "/app/health"
APP_DSN_ENV = "TELLTALE_APP_DSN"


def create_portal_table(h: Harness) -> None:
    """``admin_system_health`` as Prisma creates it (Int autoincrement id, Float columns, an
    Int latency, Json, DateTime @default(now())), owned by the portal, not by Telltale."""
    h.sql("""
        CREATE TABLE admin_system_health (
            id serial PRIMARY KEY, "cpuUsage" double precision, "memoryUsage" double precision,
            "apiLatencyMs" integer, "apiErrorRate" double precision, alerts jsonb,
            "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP);
        GRANT SELECT, INSERT, DELETE ON admin_system_health TO telltale;
        GRANT USAGE ON SEQUENCE admin_system_health_id_seq TO telltale;
    """)


def health_rows(h: Harness) -> list[dict[str, Any]]:
    return h.rows('SELECT id, "cpuUsage", "memoryUsage", "apiLatencyMs", "apiErrorRate", alerts, '
                  '"createdAt" FROM admin_system_health ORDER BY id')


def last_row(h: Harness) -> dict[str, Any]:
    rows = health_rows(h)
    assert rows, "no row yet"
    return rows[-1]


def start(h: Harness, *, wait_leader: bool = True, health: dict[str, Any] | None = None):
    """telltale serve with the host collector, a probe of the receiver's PROBE_PATH, and
    ``alerting.system_health`` = ``health`` (its DSN from its own variable)."""
    h.env[APP_DSN_ENV] = h.dsn
    alerting = {"system_health": {"dsn": f"${{{APP_DSN_ENV}}}", **health}} if health is not None else {}
    path = h.write_config(host=True, alerting=alerting)
    config = yaml.safe_load(path.read_text())
    # A 1 s timeout (the request gives up at 80 % of it): the receiver answers from the test
    # process, which a busy machine can hold up for longer than half a second, and a timed-out
    # probe would be an error in apiErrorRate.
    config["probes"] = [{"name": "app", "url": h.rx.url_for(PROBE_PATH), "interval": "1s", "timeout": "1s",
                         "error_window": "2s"}]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return h.start(wait_leader=wait_leader)


ENABLED = {"enabled": True, "interval": "1s", "probe": "app"}


def written(tt) -> float:
    return scrape(tt).get("telltale_system_health_writes_total", outcome="written") or 0


def test_rows_carry_host_usage_probe_latency_error_rate_and_firing_alerts(h: Harness) -> None:
    create_portal_table(h)
    h.add_rule("level_high", 0.5, severity="critical")  # tt_level{svc="api"} is 1: fires at once
    tt = start(h, health=ENABLED)

    def complete_row() -> dict[str, Any]:
        row = last_row(h)
        assert None not in (row["cpuUsage"], row["memoryUsage"], row["apiLatencyMs"], row["apiErrorRate"]), row
        assert row["alerts"], row
        return row

    row = wait_until(complete_row, 15, "a row with every value and the firing alert")
    assert 0 <= row["cpuUsage"] <= 100 and 0 < row["memoryUsage"] <= 100, row
    assert 0 <= row["apiLatencyMs"] < 1000, "a local probe's mean latency in ms"
    assert row["apiErrorRate"] == 0, "every probe answered 200"
    [alert] = row["alerts"]
    assert set(alert) == {"rule", "severity", "environment", "labels", "value", "startsAt"}, alert
    assert (alert["rule"], alert["severity"], alert["environment"], alert["value"]) == \
        ("level_high", "critical", "production", 1), alert
    assert alert["labels"]["svc"] == "api"
    rfc3339(alert["startsAt"])

    # One row per interval: more come, a second or so apart.
    wait_until(lambda: len(health_rows(h)) >= 4, 10, "four rows")
    times = [r["createdAt"] for r in health_rows(h)]
    assert times == sorted(times) and len(set(times)) == len(times), times
    # The counter reaches /metrics at the next render, a moment after the row is in the table.
    wait_until(lambda: written(tt) >= 4, 10, "four writes counted")
    m = scrape(tt)
    assert m.get("telltale_system_health_writes_total", outcome="failed") == 0
    assert m.get("telltale_system_health_last_write_timestamp_seconds") > 0

    # The app fails: its error rate (percent over the probe's 2 s window) reaches 100.
    h.rx.set_mode(PROBE_PATH, "error")
    wait_until(lambda: last_row(h)["apiErrorRate"] == 100, 10, "apiErrorRate 100 while the app fails")
    # The alert resolves: the next rows list no alert.
    h.set_level(0)
    wait_until(lambda: last_row(h)["alerts"] == [], 10, "an empty alerts list once resolved")


def test_old_rows_pruned_by_retention(h: Harness) -> None:
    create_portal_table(h)
    h.sql("""
        INSERT INTO admin_system_health ("cpuUsage", "createdAt") VALUES
            (11, now() AT TIME ZONE 'UTC' - interval '2 days'),
            (12, now() AT TIME ZONE 'UTC' - interval '3 hours'),
            (13, now() AT TIME ZONE 'UTC' - interval '30 minutes');
    """)
    tt = start(h, health={**ENABLED, "retention": "1h"})
    wait_until(lambda: [r["cpuUsage"] for r in health_rows(h)][:1] == [13], 10, "the rows past 1 h pruned")
    # The count is rendered after the prune (renders are at least 250 ms apart): waited for.
    wait_until(lambda: scrape(tt).get("telltale_system_health_pruned_rows_total") == 2, 10, "the pruned rows counted")
    assert scrape(tt).get("telltale_system_health_prune_failures_total") == 0
    wait_until(lambda: written(tt) >= 2, 10, "rows still written")
    assert [r["cpuUsage"] for r in health_rows(h)][0] == 13, "a row inside the retention stays"


def test_only_the_leader_writes(h: Harness) -> None:
    create_portal_table(h)
    a = start(h, health=ENABLED)
    b = start(h, wait_leader=False, health=ENABLED)
    wait_until(lambda: scrape(b).get("telltale_alerting_leader") == 0, 15, "replica B up as a follower")
    wait_until(lambda: written(a) >= 3, 10, "three rows from the leader")
    m = scrape(b)
    assert m.get("telltale_system_health_writes_total", outcome="written") == 0, "a follower writes nothing"
    assert m.get("telltale_system_health_writes_total", outcome="failed") == 0, "a follower does not even try"
    rows_before = len(health_rows(h))
    # B takes over once A is gone, and writes from then on.
    a.kill()
    wait_until(lambda: scrape(b).get("telltale_alerting_leader") == 1, 20, "replica B leading")
    wait_until(lambda: written(b) >= 2, 10, "rows from the new leader")
    assert len(health_rows(h)) >= rows_before + 2


def test_off_by_default(h: Harness) -> None:
    create_portal_table(h)
    tt = start(h)
    # Several host collections and evaluations later (the writer's interval would be 60 s
    # anyway, but nothing of it even starts): no row, no writer metrics.
    m = h.runs(tt, 3, "host")
    assert not m.find("telltale_system_health_writes_total")
    assert health_rows(h) == []


def test_a_failed_write_is_counted_and_retried_without_stopping_alerting(h: Harness) -> None:
    """No table yet (the portal not migrated): each write fails, is counted and logged once
    in a while without the DSN; alerting goes on; once the table exists rows are written."""
    path = h.add_channel("ops", "webhook")
    h.add_rule("level_high", 0.5, channel="ops")
    tt = start(h, health=ENABLED)
    wait_until(lambda: (scrape(tt).get("telltale_system_health_writes_total", outcome="failed") or 0) >= 2, 10,
               "failed writes counted")
    assert written(tt) == 0
    h.wait_accepted(path, 1)  # the alert is still delivered
    assert "could not write the system health row" in tt.logs()
    password = h.dsn.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password not in tt.logs() and password not in tt.metrics()
    create_portal_table(h)
    wait_until(lambda: written(tt) >= 1 and health_rows(h), 10, "rows once the table exists")
    assert json.dumps(last_row(h)["alerts"]).count("level_high") == 1


def test_unknown_probe_is_a_config_error(h: Harness) -> None:
    h.env[APP_DSN_ENV] = h.dsn
    h.write_config(alerting={"system_health": {"enabled": True, "dsn": f"${{{APP_DSN_ENV}}}", "probe": "nope"}})
    r = h.cli("check-config")
    assert r.returncode == 2, r
    assert "alerting.system_health.probe" in r.stdout + r.stderr
    assert h.dsn not in r.stdout + r.stderr
