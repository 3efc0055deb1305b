"""End-to-end test of the outbox's retention (`alerting.outbox_retention`): the alerting
leader deletes notifications sent or given up, transitions carried or dropped, and idle
groups once older than the retention, and keeps everything still waiting.

Reuses tests/test_alerting.py's Harness and fixtures (a fresh database per test, the chat
receiver).
"""

from __future__ import annotations

import json
import time

import helpers
from helpers import scrape
from test_alerting import Harness, h, rx, wait_until  # noqa: F401 - h and rx are fixtures

OLD = "now() - interval '2 days'"
RECENT = "now() - interval '10 minutes'"


def seed(h: Harness) -> None:
    """Rows either side of a 1 h retention, in each state that matters. The waiting
    transition is a firing that starts tomorrow: its group's wait holds it for the test."""
    tomorrow = json.dumps({"rule": "r", "environment": "any", "severity": "warning", "status": "firing", "metric": "m",
                           "comparison": ">", "threshold": 1, "labels": {}, "startsAt": time.time() + 86400})
    h.sql(f"""
        INSERT INTO telltale_notifications (idempotency_key, channel, rule, series, status, event,
                                            created_at, delivered_at, failed_at) VALUES
            ('old-delivered', 'c', 'r', 's', 'firing', '{{}}', {OLD}, {OLD}, NULL),
            ('old-failed', 'c', 'r', 's', 'firing', '{{}}', {OLD}, NULL, {OLD}),
            ('group|c|busy|1', 'c', 'r', 's', 'firing', '{{}}', {OLD}, NULL, NULL),
            ('recent-delivered', 'c', 'r', 's', 'firing', '{{}}', {RECENT}, {RECENT}, NULL);
        INSERT INTO telltale_alert_transitions (idempotency_key, channel, group_key, event, created_at, flush_id) VALUES
            ('t-carried', 'c', 'idle', '{{}}', {OLD}, 7),
            ('t-dropped', 'c', 'idle', '{{}}', {OLD}, 0),
            ('t-waiting', 'c', 'waiting', '{tomorrow}', {OLD}, NULL),
            ('t-recent', 'c', 'idle', '{{}}', {RECENT}, 7);
        INSERT INTO telltale_alert_groups (channel, group_key, messages, last_sent_at) VALUES
            ('c', 'idle', 3, {OLD}),
            ('c', 'waiting', 1, {OLD}),
            ('c', 'busy', 1, {OLD}),
            ('c', 'recent', 1, {RECENT});
    """)


def test_done_rows_past_the_retention_are_deleted_and_waiting_ones_kept(h: Harness) -> None:
    seed(h)
    tt = h.start(alerting={"outbox_retention": "1h"})
    helpers.wait_until(lambda: scrape(tt).get("telltale_outbox_pruned_rows_total", table="telltale_alert_groups") == 1,
                       20, "the idle group pruned", ignore=(AssertionError, OSError, ValueError, KeyError),
                       details=lambda: "\n" + "\n".join(line for line in tt.metrics().splitlines() if "outbox" in line))
    m = scrape(tt)
    assert m.get("telltale_outbox_pruned_rows_total", table="telltale_notifications") == 2
    assert m.get("telltale_outbox_pruned_rows_total", table="telltale_alert_transitions") == 2
    assert m.get("telltale_outbox_prune_failures_total") == 0
    keys = lambda table: sorted(r["k"] for r in h.rows(f"SELECT idempotency_key AS k FROM {table}"))  # noqa: E731
    assert keys("telltale_notifications") == ["group|c|busy|1", "recent-delivered"], "pending and recent stay"
    assert keys("telltale_alert_transitions") == ["t-recent", "t-waiting"], "waiting and recent stay"
    groups = sorted(r["group_key"] for r in h.rows("SELECT group_key FROM telltale_alert_groups"))
    assert groups == ["busy", "recent", "waiting"], "a group with a message or transition waiting stays"


def test_a_retention_under_an_hour_is_refused(h: Harness) -> None:
    h.write_config(alerting={"outbox_retention": "10m"})
    result = h.cli("check-config")
    assert result.returncode == 2
    assert "alerting.outbox_retention" in result.stderr
