"""The Grafana dashboards in dashboards/ ask Prometheus honest, well-formed questions.

- Every panel query parses and evaluates in a real Prometheus (Debian's /usr/bin/prometheus,
  started on loopback with nothing to scrape), template variables substituted as Grafana would.
- Every query filters on the dashboard's template variables wherever its family carries the label.
- No stat turns an absent source into a healthy-looking 0 (`or vector(0)`).
- Every family a panel queries exists (README "## Metrics" or examples/admin-portal.yml), and the
  families an operator needs to see are on some panel; the others are listed here with the reason.
- State timelines get a grid unit of height per row they are expected to draw.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import find_free_port
from helpers import wait_until

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted(glob.glob(str(REPO / "dashboards" / "*.json")))
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

# Grafana's built-in variables, as a 15 s scrape interval and a 6 h range would make them.
BUILT_INS = {"__rate_interval": "1m", "__interval": "15s", "__interval_ms": "15000", "__range": "6h",
             "__range_s": "21600", "__range_ms": "21600000"}

# Which families carry the label a template variable filters on (README "## Metrics",
# examples/admin-portal.yml). Variables not listed (datasource) filter nothing.
VARIABLE_FAMILIES = {
    "job": ("job", r".*"),
    "instance": ("instance", r".*"),
    "redis": ("redis", r"telltale_(queue|redis)_.*"),
    "prefix": ("prefix", r"telltale_queue_.*"),
    "queue": ("queue", r"telltale_queue_.*"),
    "target": ("target", r"telltale_pg_.*"),
    "database": ("database", r"telltale_pg_(connections|xact_commits_total|xact_rollbacks_total|deadlocks_total"
                             r"|temp_bytes_total|blocks_hit_total|blocks_read_total|database_size_bytes)"),
    "provider": ("provider", r"telltale_provider_.*"),
    "currency": ("currency", r"telltale_provider_(pending_)?balance"),
    "probe": ("target", r"telltale_probe_.*"),
    "integration": ("integration", r"app_sync_.*"),
    "environment": ("environment", r"app_(feature_flag_enabled|alert_threshold_ratio)"),
}

# Families an operator must find on a dashboard (issue #15: each went unnoticed once).
MUST_BE_DRAWN = {
    "telltale_alerting_database_up", "telltale_alert_rule_errors", "telltale_notification_channel_failing",
    "telltale_notification_queue_depth", "telltale_queue_workers", "telltale_queue_active_unlocked",
    "telltale_provider_stale", "app_webhook_processing_duration_seconds", "telltale_config_last_reload_successful",
    "telltale_config_reloads_total", "app_email_sends_total", "telltale_alert_state", "telltale_alerts_firing",
}

# README families no dashboard draws, and why. A new family must be drawn or listed here.
NOT_DRAWN = {
    "telltale_http_connections": "connection limits are checked by tests; the status page shows them",
    "telltale_http_connections_closed_total": "as above",
    "telltale_render_duration_seconds": "a performance figure (BENCHMARKS.md), not an operating signal",
    "telltale_tls_last_reload_success_timestamp_seconds": "when the listener's certificate was loaded; failures page "
                                                          "through TelltaleTLSReloadFailing",
    "telltale_host_filesystem_size_bytes": "the usage ratio and available bytes are drawn",
    "telltale_process_start_time_seconds": "per watched process; restarts show in its CPU and memory lines",
    "telltale_process_threads": "per watched process; rarely actionable",
    "telltale_process_virtual_memory_bytes": "per watched process; resident memory is drawn",
    "telltale_probe_status_code": "the probe status and error ratio say the same for an operator; the status page shows the code",
    "telltale_provider_last_success_timestamp_seconds": "data age is drawn from the collector's last success",
    "telltale_queue_job_attempts": "retries show as failures and stalls",
    "telltale_redis_memory_max_bytes": "drawn as the used ratio",
    "telltale_redis_round_trips_total": "Telltale's own cost per run, a benchmark figure",
    "telltale_redis_rejected_connections_total": "rare; alert material rather than a panel",
    "telltale_alert_evaluation_duration_seconds": "engine internals",
    "telltale_alert_samples": "engine internals",
    "telltale_alert_samples_refused_total": "engine internals (logged)",
    "telltale_alert_value": "one series per rule and label set; the status page lists values with thresholds",
    "telltale_alert_transitions_unrecorded": "engine internals (logged once each)",
    "telltale_system_health_writes_total": "the admin portal's own system-health page shows these rows",
    "telltale_system_health_last_write_timestamp_seconds": "as above",
    "telltale_system_health_unread_values_total": "as above",
    "telltale_system_health_pruned_rows_total": "as above",
    "telltale_system_health_prune_failures_total": "as above",
    "telltale_outbox_pruned_rows_total": "housekeeping of the outbox's tables, not an operating signal",
    "telltale_outbox_prune_failures_total": "housekeeping; each failure is logged (throttled) and retried",
}

SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
HISTOGRAM_SERIES = re.compile(r"_(bucket|count|sum)$")



def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def all_panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries(dashboard: dict) -> list[tuple[dict, dict]]:
    return [(panel, t) for panel in all_panels(dashboard) for t in panel.get("targets", []) if t.get("expr")]


def variables(dashboard: dict) -> list[str]:
    return [v["name"] for v in dashboard.get("templating", {}).get("list", []) if v.get("type") != "datasource"]


def substitute(expr: str) -> str:
    """What Grafana sends: built-ins replaced, every custom variable set to All (.*)."""
    for name in sorted(BUILT_INS, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", BUILT_INS[name]).replace("$" + name, BUILT_INS[name])
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", ".*", expr)


def family(selector_name: str) -> str:
    return HISTOGRAM_SERIES.sub("", selector_name)


def selectors(expr: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in SELECTOR.finditer(expr)]


def every_query():
    for path in DASHBOARDS:
        for panel, t in queries(load(path)):
            yield pytest.param(panel, t, id=f"{os.path.basename(path)}:{panel['title']}:{t.get('refId')}")


def readme_families() -> set[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Metrics"):text.index("\n## ", text.index("## Metrics") + 1)]
    names = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([a-z_:]+)`", line.split("|")[1]))
        elif line.startswith("`telltale_"):
            names.add(re.match(r"`([a-z_:]+)", line).group(1))
    return names


def example_families() -> set[str]:
    """SQL-defined families of examples/admin-portal.yml, as exported (counters get _total)."""
    config = yaml.safe_load((REPO / "examples" / "admin-portal.yml").read_text())
    names = set()
    for target in config.get("postgres", []):
        for q in target.get("queries", []):
            names.add(q["metric"] + ("_total" if q.get("type") == "counter" else ""))
    return names


def drawn_families() -> set[str]:
    return {family(name) for path in DASHBOARDS for _, t in queries(load(path)) for name, _ in selectors(t["expr"])}


@pytest.mark.parametrize("path", DASHBOARDS)
def test_every_query_filters_on_the_dashboards_variables(path):
    dashboard = load(path)
    missing = []
    for name in variables(dashboard):
        label, families = VARIABLE_FAMILIES[name]
        for panel, t in queries(dashboard):
            for metric, matchers in selectors(t["expr"]):
                if re.fullmatch(families, family(metric)) and f'{label}=~"${name}"' not in matchers:
                    missing.append(f"{panel['title']} {t['refId']}: {metric} lacks {label}=~\"${name}\"")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("path", DASHBOARDS)
def test_no_stat_shows_zero_for_an_absent_source(path):
    offenders = [f"{panel['title']}: {t['expr']}" for panel, t in queries(load(path))
                 if re.search(r"\bor\s+vector\s*\(\s*0\s*\)", t["expr"])]
    assert not offenders, "use a guard that is absent with the source (e.g. `or 0 * <its up series>`):\n" + "\n".join(offenders)


@pytest.mark.parametrize("path", DASHBOARDS)
def test_quantiles_show_no_line_rather_than_nan(path):
    """histogram_quantile over a window without observations is NaN: keep only series whose
    _count grew in the same window (e.g. collectors that run every minute or five)."""
    unguarded = [f"{panel['title']} {t['refId']}" for panel, t in queries(load(path))
                 if "histogram_quantile" in t["expr"] and not re.search(r"_count\{[^}]*\}\[[^\]]+\]\)\) > 0$", t["expr"])]
    assert not unguarded, unguarded


@pytest.mark.parametrize("path", DASHBOARDS)
def test_ratios_of_rates_skip_empty_windows(path):
    """A share of events (failed / all) is 0/0 = NaN when nothing happened: the divisor is
    filtered with `> 0` so the panel shows no line instead."""
    unguarded = [f"{panel['title']} {t['refId']}" for panel, t in queries(load(path))
                 if re.search(r"\b(rate|increase|delta)\(", t["expr"]) and " / " in t["expr"]
                 and not t["expr"].rstrip().endswith("> 0)")]
    assert not unguarded, unguarded


def test_every_queried_family_exists():
    known = readme_families() | example_families() | {"up"}
    unknown = sorted(drawn_families() - known)
    assert not unknown, f"queried but neither in README's Metrics nor in examples/admin-portal.yml: {unknown}"


def test_operators_families_are_drawn():
    assert not MUST_BE_DRAWN - drawn_families(), sorted(MUST_BE_DRAWN - drawn_families())


def test_every_readme_family_is_drawn_or_excused():
    rules = "".join(p.read_text() for p in (REPO / "alerts").glob("*.yml"))
    undrawn = {name for name in readme_families() - drawn_families() - set(NOT_DRAWN) if name not in rules}
    assert not undrawn, f"draw these or say in NOT_DRAWN why not: {sorted(undrawn)}"
    stale = sorted(name for name in NOT_DRAWN if name in drawn_families())
    assert not stale, f"drawn now, remove from NOT_DRAWN: {stale}"


# Rows a state timeline is expected to draw, by what it splits on: a collector per source and
# SQL query (18-24 in the admin-portal profile), a rule per alert (the ops roadmap has ~20).
MANY_ROWS = {"{{collector}}": 20, "{{rule}}": 20}


@pytest.mark.parametrize("path", DASHBOARDS)
def test_state_timelines_have_room_for_their_rows(path):
    cramped = []
    for panel in all_panels(load(path)):
        if panel["type"] != "state-timeline":
            continue
        rows = max([MANY_ROWS.get(t.get("legendFormat"), 4) for t in panel["targets"]])
        if panel["gridPos"]["h"] < rows + 2:
            cramped.append(f"{panel['title']}: h={panel['gridPos']['h']} for about {rows} rows")
    assert not cramped, "\n".join(cramped)


@pytest.mark.parametrize("path", DASHBOARDS)
def test_panels_fit_the_grid_without_overlapping(path):
    taken: dict[tuple[int, int], str] = {}
    clashes = []
    for panel in load(path)["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, f"{panel['title']}: {g}"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in taken:
                    clashes.append(f"{panel['title']} overlaps {taken[(x, y)]}")
                taken[(x, y)] = panel["title"]
    assert not clashes, sorted(set(clashes))


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.fail(f"prometheus not found at {PROMETHEUS} (scripts/setup.sh installs the prometheus package)")
    work = tmp_path_factory.mktemp("prometheus")
    (work / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    port = find_free_port()
    log = open(work / "prometheus.log", "w")
    process = subprocess.Popen([PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
                                f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=log, stderr=log)
    try:
        wait_until(lambda: ready(port), 60, "Prometheus ready")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def evaluate(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": f"{time.time():.3f}"})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


@pytest.mark.parametrize("panel,target", list(every_query()))
def test_panel_query_parses_in_prometheus(prometheus, panel, target):
    expr = substitute(target["expr"])
    answer = evaluate(prometheus, expr)
    assert answer["status"] == "success", f"{expr}\n{answer.get('errorType')}: {answer.get('error')}"


@pytest.mark.parametrize("path", DASHBOARDS)
def test_variable_queries_parse_in_prometheus(prometheus, path):
    for v in load(path).get("templating", {}).get("list", []):
        query = v.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query or "")
        if m:
            answer = evaluate(prometheus, substitute(f"group by ({m.group(2)}) ({m.group(1)})"))
            assert answer["status"] == "success", f"{v['name']}: {answer.get('error')}"
