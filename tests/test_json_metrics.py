"""End-to-end tests of a `json` provider's `metrics:` (generic JSON metrics) against the
local fake in tests/fakes/provider_fake.py: value maps, filters, key labels, the series cap,
duplicate label sets, the last good values kept while fetches fail, promtool-valid output,
and configuration errors that name the key (exit code 2).

No PostgreSQL or Redis needed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from provider_fake import FakeProcess  # noqa: E402

from helpers import promtool_check, scrape, wait_for  # noqa: E402

NO_DEFAULT_COLLECTORS = "collectors: {host: {enabled: false}, process: {enabled: false}}"

STATUS = {
    "services": [
        {"name": "api", "state": "ACTIVE", "health": "UP", "workers": 4, "version": "1.2"},
        {"name": "db", "state": "ACTIVE", "health": "DOWN", "workers": "2", "version": "9.6"},
        {"name": "old", "state": "RETIRED", "health": "UP", "workers": 0, "version": "0.1"},
        {"name": "cache", "state": "ACTIVE", "health": "MAYBE", "workers": 1, "version": "7"},
    ],
    "queues": {"mail": {"depth": 3}, "sms": {"depth": 7}, "push": {"depth": 1}},
}


@pytest.fixture
def fake():
    f = FakeProcess()
    f.set_route("/status", STATUS)
    yield f
    f.stop()


def config(fake) -> str:
    return f"""\
{NO_DEFAULT_COLLECTORS}
providers:
  - name: acme
    url: "{fake.url}/status"
    interval: 1s
    timeout: 1s
    labels: {{env: test}}
    metrics:
      - name: acme_service_up
        help: Whether an active service reports UP.
        path: 'services[?(@.state == "ACTIVE")]'
        value: health
        value_map: {{UP: 1, DOWN: 0}}
        labels: {{service: name}}
      - name: acme_service_workers
        path: 'services[?(@.workers >= 2)]'
        value: workers
        labels: {{service: name}}
        static_labels: {{team: core}}
      - name: acme_queue_depth
        type: counter
        path: 'queues.{{queue}}'
        value: depth
        max_series: 2
      - name: acme_service
        type: info
        path: 'services[*]'
        labels: {{service: name, version: version}}
      - name: acme_state_workers
        path: 'services[*]'
        value: workers
        labels: {{state: state}}
"""


def fetched(tt, runs: float = 1):
    """The scrape once the provider has fetched (at least `runs` times) and is up."""
    def ready(s):
        return (s.get("telltale_provider_up", provider="acme") == 1
                and (s.get("telltale_provider_request_duration_seconds_count", provider="acme") or 0) >= runs)
    return wait_for(tt, ready, 10, f"{runs} good fetches of provider acme")[0]


def test_value_maps_filters_key_labels_and_the_cap(start_telltale, fake):
    tt = start_telltale(config(fake))
    s = fetched(tt)
    base = {"provider": "acme", "env": "test"}
    # Value maps, on the ACTIVE services only; MAYBE is not in the map: absent and counted.
    assert s.get("acme_service_up", service="api", **base) == 1
    assert s.get("acme_service_up", service="db", **base) == 0
    assert s.find("acme_service_up", service="old") == []
    assert s.find("acme_service_up", service="cache") == []
    assert (s.get("telltale_collector_errors_total", collector="provider:acme", reason="bad_value") or 0) >= 1
    # A numeric filter, numeric strings, static labels.
    assert s.get("acme_service_workers", service="api", team="core", **base) == 4
    assert s.get("acme_service_workers", service="db", team="core", **base) == 2
    assert len(s.find("acme_service_workers")) == 2
    # Keys as labels, a counter, and the cap (2 of the 3 queues; sorted by key).
    assert s.types["acme_queue_depth"] == "counter"
    assert s.get("acme_queue_depth_total", queue="mail", **base) == 3
    assert s.get("acme_queue_depth_total", queue="push", **base) == 1
    assert s.find("acme_queue_depth_total", queue="sms") == []
    assert s.get("telltale_series_dropped_total", collector="provider:acme", metric="acme_queue_depth") >= 1
    # Info series.
    assert s.get("acme_service_info", service="old", version="0.1", **base) == 1
    # A repeated label set keeps the first series and is counted.
    assert s.get("acme_state_workers", state="ACTIVE", **base) == 4
    assert (s.get("telltale_collector_errors_total", collector="provider:acme", reason="duplicate_labels") or 0) >= 1
    promtool_check(s.text)

    # The values follow the API's.
    fake.set_route("/status", {**STATUS, "services": [{**STATUS["services"][0], "health": "DOWN"}]})
    s, _ = wait_for(tt, lambda s: s.get("acme_service_up", service="api") == 0, 10, "api DOWN")
    assert s.find("acme_service_up", service="db") == []


def test_last_good_values_stay_while_fetches_fail(start_telltale, fake):
    tt = start_telltale(config(fake))
    fetched(tt)
    fake.set_route("/status", {"message": "maintenance"}, status=503)
    s, _ = wait_for(tt, lambda s: s.get("telltale_provider_stale", provider="acme") == 1, 10, "provider acme stale")
    assert s.get("telltale_provider_up", provider="acme") == 0
    assert s.get("telltale_provider_errors_total", provider="acme", reason="http_5xx") >= 1
    assert s.get("acme_service_up", service="api") == 1
    assert s.get("acme_queue_depth_total", queue="mail") == 3
    promtool_check(s.text)
    fake.set_route("/status", STATUS)
    wait_for(tt, lambda s: s.get("telltale_provider_stale", provider="acme") == 0
             and s.get("telltale_provider_up", provider="acme") == 1, 10, "provider acme fresh again")


def test_metrics_alone_need_no_balances(start_telltale, fake):
    tt = start_telltale(f"""\
{NO_DEFAULT_COLLECTORS}
providers:
  - name: acme
    url: "{fake.url}/status"
    interval: 1s
    timeout: 1s
    metrics:
      - {{name: acme_services, path: services, value: '[0].workers'}}
""")
    s = fetched(tt)
    assert s.get("acme_services", provider="acme") == 4
    assert s.find("telltale_provider_balance") == []


@pytest.mark.parametrize("metric, key, message", [
    ("{name: 'bad-name', path: a}", "providers[0].metrics[0].name", "invalid metric name"),
    ("{name: telltale_x, path: a}", "providers[0].metrics[0].name", "telltale_ prefix"),
    ("{name: x_total, type: counter, path: a}", "providers[0].metrics[0].name", "must not end with _total"),
    ("{name: x, type: summary, path: a}", "providers[0].metrics[0].type", "expected gauge, counter or info"),
    ("{name: x, path: 'a[?(@.b =~ 1)]'}", "providers[0].metrics[0].path", "not a valid path"),
    ("{name: x, path: a, labels: {__y: b}}", "providers[0].metrics[0].labels.__y", "not a valid label name"),
    ("{name: x, path: a, static_labels: {provider: b}}", "providers[0].metrics[0].static_labels.provider",
     "already set"),
    ("{name: x, path: a, max_series: 100001}", "providers[0].metrics[0].max_series", "from 1 to 100000"),
    ("{name: x, path: a, value_map: {UP: yes}}", "providers[0].metrics[0].value_map.UP", "expected a number"),
    ("{name: x, path: a, colour: red}", "providers[0].metrics[0].colour", "unknown key"),
    ("{name: x}", "providers[0].metrics[0].path", "is required"),
])
def test_config_errors_name_the_key(run_cli, tmp_path, metric, key, message):
    path = tmp_path / "config.yml"
    path.write_text(f"""\
providers:
  - name: acme
    url: http://127.0.0.1:1/status
    metrics:
      - {metric}
""")
    result = run_cli(["check-config", "--config", path])
    assert result.returncode == 2, result
    output = result.stdout + result.stderr
    assert any(key in line and message in line for line in output.splitlines()), output


def test_a_clash_between_metrics_names_the_key(run_cli, tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("""\
providers:
  - name: acme
    url: http://127.0.0.1:1/status
    metrics:
      - {name: hits, type: counter, path: a}
      - {name: hits_total, path: b}
""")
    result = run_cli(["check-config", "--config", path])
    assert result.returncode == 2
    assert "providers[0].metrics[1].name" in result.stdout + result.stderr
