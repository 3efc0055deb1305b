"""End-to-end tests of expressions in rule rows (issue #13, part 1): functions over windows
and aggregation, exact on controlled data, and in agreement with a real Prometheus
(/usr/bin/prometheus) scraping Telltale's own /metrics and computing the same PromQL.
Also: examples/alert-rules.sql loads into a migrated database without a rule error.

Uses tests/test_alerting.py's Harness (a fresh database, ``tt_level{svc}`` every 500 ms).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_alerting import Harness, h, rx, status_rows, wait_until  # noqa: E402,F401

from conftest import find_free_port  # noqa: E402
import helpers  # noqa: E402
from helpers import scrape  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def add_expression_rule(h: Harness, name: str, metric: str, *, function: str = "value", window: float | None = None,
                        aggregate: str | None = None, by: str = "", matchers: str = "", comparison: str = ">",
                        threshold: float = 1e12) -> None:
    h.add_rule(name, threshold, comparison=comparison, matchers=matchers, metric=metric)
    window_sql = "NULL" if window is None else repr(float(window))
    aggregate_sql = "NULL" if aggregate is None else f"'{aggregate}'"
    h.sql(f"UPDATE telltale_alert_rules SET function = '{function}', window_seconds = {window_sql}, "
          f"aggregate = {aggregate_sql}, aggregate_by = '{by}' WHERE name = '{name}'")


# A counter that grows by exactly 10 a second whenever it is read: its increase over a window
# is known, whoever samples it and however often.
COUNTER_QUERY = {
    "metric": "tt_count", "type": "counter", "labels": ["svc"], "values": ["n"], "interval": "500ms", "timeout": "500ms",
    "sql": "SELECT 'api' AS svc, (extract(epoch FROM clock_timestamp()) * 10 - {base})::float8 AS n",
}


def test_exact_values_on_controlled_data(h: Harness) -> None:
    h.sql("INSERT INTO tt_level_src VALUES ('web', 2), ('worker', 4)")
    add_expression_rule(h, "level_sum", "tt_level", aggregate="sum")
    add_expression_rule(h, "level_max_by_svc", "tt_level", aggregate="max", by="svc", matchers='svc=~"w.*"')
    add_expression_rule(h, "level_count", "tt_level", aggregate="count", threshold=2)
    add_expression_rule(h, "missing", "tt_missing", function="absent", matchers='svc="api"', comparison="==", threshold=1)
    add_expression_rule(h, "level_peak", "tt_level", function="max_over_time", window=60, matchers='svc="api"')
    tt = h.start()
    m, _ = helpers.wait_for(tt, lambda s: s.get("telltale_alert_value", rule="level_sum") == 7, 10, "sum of 1 + 2 + 4")
    assert m.get("telltale_alert_value", rule="level_max_by_svc", svc="web") == 2
    assert m.get("telltale_alert_value", rule="level_max_by_svc", svc="worker") == 4
    assert m.get("telltale_alert_value", rule="level_count") == 3
    assert m.get("telltale_alert_value", rule="missing", svc="api") == 1
    assert m.get("telltale_alert_state", rule="level_count", alertstate="firing") == 1, "3 series > 2"
    assert m.get("telltale_alert_state", rule="missing", alertstate="firing") == 1
    assert m.get("telltale_alert_samples") >= 1

    h.set_level(9)
    h.level_seen(tt, 9)
    h.set_level(1)
    h.level_seen(tt, 1)
    m = scrape(tt)
    assert m.get("telltale_alert_value", rule="level_peak", svc="api") == 9, "the peak stays in the window"
    assert m.get("telltale_alert_value", rule="level_sum") == 7


def test_invalid_expressions_are_reported_per_row(h: Harness) -> None:
    add_expression_rule(h, "no_window", "tt_level", function="rate")
    add_expression_rule(h, "bad_function", "tt_level", function="median")
    add_expression_rule(h, "fine", "tt_level", aggregate="sum")
    tt = h.start()
    wait_until(lambda: scrape(tt).get("telltale_alert_value", rule="fine") == 1, 10, "the valid rule evaluated")
    m = scrape(tt)
    assert m.get("telltale_alert_rule_errors", rule="no_window") == 1
    assert m.get("telltale_alert_rule_errors", rule="bad_function") == 1
    page = tt.get("/").text
    assert "needs window_seconds" in page and "median" in page


def prometheus_query(port: int, expr: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        result = json.load(r)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="needs Debian's prometheus")
def test_windowed_rules_agree_with_prometheus(h: Harness, tmp_path: Path) -> None:
    query = dict(COUNTER_QUERY, sql=COUNTER_QUERY["sql"].format(base=int(time.time() * 10)))
    add_expression_rule(h, "count_increase", "tt_count_total", function="increase", window=10, aggregate="sum", threshold=50)
    add_expression_rule(h, "count_rate", "tt_count_total", function="rate", window=10)
    add_expression_rule(h, "count_delta", "tt_count_total", function="delta", window=10)
    tt = h.start(queries=[query])
    port = find_free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: telltale
    static_configs: [{{targets: ['127.0.0.1:{tt.port}']}}]
""")
    log = open(tmp_path / "prometheus.log", "w")
    prometheus = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        # Both need a full window of samples.
        wait_until(lambda: (prometheus_query(port, "count_over_time(tt_count_total[10s])") or 0) >= 9, 60,
                   "Prometheus holding 10 s of samples")
        wait_until(lambda: scrape(tt).get("telltale_alert_state", rule="count_increase", alertstate="firing") == 1, 20,
                   "Telltale's increase rule firing (about 100 > 50)")
        for rule, expr, expected in (("count_increase", "sum(increase(tt_count_total[10s]))", 100),
                                     ("count_rate", "rate(tt_count_total[10s])", 10),
                                     ("count_delta", "delta(tt_count_total[10s])", 100)):
            theirs = prometheus_query(port, expr)
            ours = scrape(tt).get("telltale_alert_value", rule=rule, **({} if rule == "count_increase" else {"svc": "api"}))
            assert ours is not None and theirs is not None, (rule, ours, theirs)
            # The counter grows 10/s: both are close to the truth, and to each other, within
            # what extrapolation from differently timed samples allows.
            assert abs(ours - expected) <= 0.2 * expected, (rule, ours, expected)
            assert abs(ours - theirs) <= 0.2 * expected, (rule, ours, theirs)
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        log.close()


def test_example_rules_load_without_errors(h: Harness) -> None:
    h.sql((REPO / "examples" / "admin-portal-schema.sql").read_text())
    h.env["TELLTALE_CHANNEL_SLACK"] = h.rx.url_for("/hooks/slack/example")
    h.sql((REPO / "examples" / "alert-rules.sql").read_text())
    h.sql((REPO / "examples" / "alert-rules.sql").read_text())  # re-runnable
    tt = h.start()
    names = {"queue_failed", "ipn_invalid_signatures", "webhook_invalid_signatures", "email_failures", "underpaid_spike",
             "admin:production:cpu", "admin:production:memory"}
    wait_until(lambda: names <= {r[0] for r in status_rows(tt)}, 10, "every example rule loaded")
    m = scrape(tt)
    assert not m.find("telltale_alert_rule_errors"), m.find("telltale_alert_rule_errors")
    assert m.get("telltale_alert_threshold", rule="email_failures") == 10
