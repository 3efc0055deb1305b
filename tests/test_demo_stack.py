"""The whole demo stack (scripts/demo.sh) against a real Prometheus and Alertmanager.

scripts/demo.sh runs with TELLTALE_DEMO_EXTERNAL_SERVICES=1 on the PostgreSQL and Redis of
the test run (a database of its own, telltale_demo_stack, and Redis database 5, so other
tests' tables and keys are left alone), the TELLTALE_BIN under test, free ports, and short
intervals (Prometheus scrapes and evaluates every 2 s). Prometheus loads copies of
alerts/*.rules.yml whose `for:` is cut to FOR_SECONDS, so the scenario's alerts fire within
the test; nothing else in the rules is changed.

Checked, in this order (the last one stops PostgreSQL):
  * every rule file loads: /api/v1/rules has each file's groups with all their rules, and no
    group or rule reports an error;
  * every template variable of dashboards/*.json resolves to at least one value;
  * every panel query of every dashboard returns data (a non-NaN sample in the last 5 minutes,
    as Grafana would draw it), except the CONDITIONAL panels below, each with its reason;
  * the scenario: a queue's failed set filled, a provider's balance drained, PostgreSQL
    stopped: the expected alerts fire in Prometheus and reach the chat receiver through
    Alertmanager's webhook, and Telltale's own alerting posts to the chat as well.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml

from conftest import REPO, find_free_port, read_env_file, run_dir
from helpers import poll, run_psql, wait_until

DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))
RULE_FILES = sorted((REPO / "alerts").glob("*.rules.yml"))
DATABASE = "telltale_demo_stack"
REDIS_DB = 5
# The demo's own Redis gets a maxmemory (scripts/demo.sh); the test run's shared one gets it
# for the stack's lifetime, so telltale_redis_memory_used_ratio exists.
REDIS_MEMORY = {"maxmemory": "1gb", "maxmemory-policy": "noeviction"}
FOR_SECONDS = 5
SCRAPE_INTERVAL = "2s"
BULLMQ_PYTHON = REPO / ".venv-bullmq-v6" / "bin" / "python"

# Panels that have no data in the demo by design: (dashboard file, panel title) -> why.
CONDITIONAL = {
    ("telltale-postgres.json", "Replication lag"): "no replica in the demo",
    ("telltale-postgres.json", "WAL retained by replication slots"): "no replication slot in the demo",
    ("telltale-overview.json", "Matching processes"): "the demo watches no other process",
    ("telltale-overview.json", "CPU by process"): "the demo watches no other process",
    ("telltale-overview.json", "Resident memory by process"): "the demo watches no other process",
    ("telltale-overview.json", "File descriptors used"): "the demo watches no other process",
    ("telltale-postgres.json", "Collector errors"): "the demo's PostgreSQL answers: errors only in an outage",
}

# What Grafana puts in for its own variables; every dashboard query variable becomes ".*"
# (the dashboards' "All").
BUILTINS = {"__rate_interval": "1m", "__interval": "30s", "__interval_ms": "30000",
            "__range": "5m", "__range_s": "300", "__range_ms": "300000"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


# ----------------------------------------------------------------------------- the stack


class Stack:
    def __init__(self, root: Path, env: dict[str, str], proc: subprocess.Popen, ports: dict[str, int]) -> None:
        self.root, self.env, self.proc, self.ports = root, env, proc, ports
        self.prometheus = f"http://127.0.0.1:{ports['prometheus']}"
        self.chat = f"http://127.0.0.1:{ports['chat']}"
        self.apis = f"http://127.0.0.1:{ports['apis']}"
        self.telltale = f"http://127.0.0.1:{ports['telltale']}"

    def output(self) -> str:
        text = (self.root / "demo.out").read_text(errors="replace")
        return "\n--- scripts/demo.sh output (tail) ---\n" + text[-4000:]

    def api(self, path: str, **params: Any) -> Any:
        r = requests.get(self.prometheus + path, params=params, timeout=10)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]

    def firing(self) -> list[dict[str, str]]:
        return [a["labels"] for a in self.api("/api/v1/alerts")["alerts"] if a["state"] == "firing"]

    def chat_messages(self) -> list[dict[str, Any]]:
        return requests.get(self.chat + "/messages", timeout=10).json()


def shortened_rules(target: Path) -> Path:
    """Copies of alerts/*.rules.yml with every `for:` cut to FOR_SECONDS."""
    target.mkdir()
    for path in RULE_FILES:
        text = re.sub(r"(?m)^(\s+)for:\s*\S+", rf"\1for: {FOR_SECONDS}s", path.read_text())
        (target / path.name).write_text(text)
    return target


def create_database(env: dict[str, str]) -> dict[str, str]:
    """A database of the stack's own, and the DSNs for it (as scripts/services.sh writes them)."""
    port, sock = env["TELLTALE_PG_PORT"], env["TELLTALE_PG_SOCKET_DIR"]
    admin = f"postgresql://postgres@/postgres?host={sock}&port={port}"
    psql = str(Path(env["TELLTALE_PG_BIN"]) / "psql")
    run_psql(psql, admin, f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE);\n"
                          f"CREATE DATABASE {DATABASE} OWNER {env['TELLTALE_PG_USER']};")
    own_admin = f"postgresql://postgres@/{DATABASE}?host={sock}&port={port}"
    run_psql(psql, own_admin, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;")
    return {
        "TELLTALE_PG_ADMIN_DSN": own_admin,
        "TELLTALE_PG_DATABASE": DATABASE,
        "TELLTALE_PG_DSN": f"postgres://{env['TELLTALE_PG_USER']}:{env['TELLTALE_PG_PASSWORD']}"
                           f"@127.0.0.1:{port}/{DATABASE}",
    }


def drop_database(env: dict[str, str]) -> None:
    admin = f"postgresql://postgres@/postgres?host={env['TELLTALE_PG_SOCKET_DIR']}&port={env['TELLTALE_PG_PORT']}"
    subprocess.run([str(Path(env["TELLTALE_PG_BIN"]) / "psql"), "-X", "-q", "-d", admin,
                    "-c", f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"],
                   capture_output=True, timeout=60)


def redis_config(url: str, settings: dict[str, str]) -> dict[str, str]:
    """CONFIG SET each setting; returns the values they had."""
    before = {}
    for name, value in settings.items():
        got = subprocess.run(["redis-cli", "-u", url, "CONFIG", "GET", name], check=True, capture_output=True,
                             text=True, timeout=30).stdout.split()
        before[name] = got[1] if len(got) > 1 else ""
        subprocess.run(["redis-cli", "-u", url, "CONFIG", "SET", name, value], check=True, capture_output=True,
                       timeout=30)
    return before


def stop_demo(proc: subprocess.Popen) -> None:
    """SIGTERM to scripts/demo.sh, which stops what it started; SIGKILL to the group if not."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything left in the demo's own process group
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="module")
def stack(telltale_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    service = read_env_file(run_dir() / "env")
    root = tmp_path_factory.mktemp("demo-stack")
    redis_url = f"redis://127.0.0.1:{service['TELLTALE_REDIS_PORT']}/{REDIS_DB}"
    subprocess.run(["redis-cli", "-u", redis_url, "FLUSHDB"], check=True, capture_output=True, timeout=30)
    saved_memory = redis_config(redis_url, REDIS_MEMORY)
    ports = {name: find_free_port() for name in ("telltale", "apis", "chat", "prometheus", "alertmanager")}
    env = {
        **os.environ, **service, **create_database(service),
        "TELLTALE_DEMO_EXTERNAL_SERVICES": "1",
        "TELLTALE_BIN": str(telltale_bin),
        "TELLTALE_DEMO_DIR": str(root / "run"),
        "TELLTALE_DEMO_REDIS_URL": redis_url,
        "TELLTALE_DEMO_PORT": str(ports["telltale"]),
        "TELLTALE_DEMO_APIS_PORT": str(ports["apis"]),
        "TELLTALE_DEMO_CHAT_PORT": str(ports["chat"]),
        "TELLTALE_DEMO_PROMETHEUS_PORT": str(ports["prometheus"]),
        "TELLTALE_DEMO_ALERTMANAGER_PORT": str(ports["alertmanager"]),
        "TELLTALE_DEMO_RULES_DIR": str(shortened_rules(root / "rules")),
        "TELLTALE_DEMO_SCRAPE_INTERVAL": SCRAPE_INTERVAL,
        "TELLTALE_DEMO_INTERVAL": "5s",
        "TELLTALE_DEMO_PROVIDER_INTERVAL": "5s",
        "TELLTALE_DEMO_GROUP_WAIT": "1s",
        # The workload's rhythms, sped up: a pause, provider errors and e-mails failing for
        # good within a minute. Only the scenario makes jobs of payments fail for good.
        "TELLTALE_DEMO_PAUSE_EVERY": "20", "TELLTALE_DEMO_PAUSE_SECONDS": "15",
        "TELLTALE_DEMO_ERROR_EVERY": "15", "TELLTALE_DEMO_ERROR_SECONDS": "6",
        "TELLTALE_DEMO_BURST_EVERY": "20", "TELLTALE_DEMO_BURST_KEEP": "10",
    }
    env.pop("TELLTALE_CHANNEL_SLACK", None)
    out = open(root / "demo.out", "w")
    proc = subprocess.Popen(["bash", str(REPO / "scripts" / "demo.sh")], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    s = Stack(root, env, proc, ports)
    try:
        def up() -> bool:
            assert proc.poll() is None, f"scripts/demo.sh exited with {proc.returncode}"
            targets = s.api("/api/v1/targets")["activeTargets"]
            return any(t["labels"]["job"] == "telltale" and t["health"] == "up" for t in targets)

        wait_until(up, 120, "Prometheus scraping the demo's Telltale", interval=1, details=s.output)
        yield s
    finally:
        stop_demo(proc)
        out.close()
        drop_database(service)
        subprocess.run(["redis-cli", "-u", redis_url, "FLUSHDB"], capture_output=True, timeout=30)
        redis_config(redis_url, saved_memory)


# ----------------------------------------------------------------------------- dashboards


def panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def expand(expr: str, variables: set[str]) -> str:
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        assert name in variables, f"unknown variable ${name} in {expr!r}"
        return ".*"
    return VARIABLE.sub(one, expr)


def query_variables(dashboard: dict) -> list[dict]:
    return [v for v in dashboard.get("templating", {}).get("list", []) if v.get("type") == "query"]


def variable_query(variable: dict) -> str:
    query = variable.get("query")
    return query.get("query", "") if isinstance(query, dict) else str(query or "")


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression with variables expanded) of every target."""
    result = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        names = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
        for panel in panels(dashboard):
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    result.append((path.name, panel.get("title", "?"), expand(target["expr"], names)))
    return result


def has_data(s: Stack, expr: str) -> bool:
    end = time.time()
    data = s.api("/api/v1/query_range", query=expr, start=end - 300, end=end, step=5)
    return any(not math.isnan(float(v)) for series in data["result"] for _, v in series["values"])


def test_rule_files_load_without_errors(stack: Stack) -> None:
    expected = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            expected[(path.name, group["name"])] = len(group["rules"])

    def loaded() -> dict:
        groups = stack.api("/api/v1/rules")["groups"]
        found = {(Path(g["file"]).name, g["name"]): g for g in groups}
        evaluated = all(not g.get("lastEvaluation", "0001").startswith("0001") for g in found.values())
        return found if set(found) >= set(expected) and evaluated else {}

    found = wait_until(loaded, 60, "every rule group loaded and evaluated", interval=1, details=stack.output)
    problems = []
    for key, count in expected.items():
        group = found[key]
        if len(group["rules"]) != count:
            problems.append(f"{key}: {len(group['rules'])} rules loaded of {count}")
        problems += [f"{key} {r['name']}: {r['health']} {r.get('lastError')}" for r in group["rules"]
                     if r.get("health") == "err" or r.get("lastError")]
    assert not problems, "\n".join(problems)


def test_dashboard_template_variables_resolve(stack: Stack) -> None:
    problems = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        names = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
        for variable in query_variables(dashboard):
            query = expand(variable_query(variable), names)
            m = re.fullmatch(r"\s*label_values\((?:(.*),\s*)?(\w+)\)\s*", query)
            if not m:
                problems.append(f"{path.name} ${variable['name']}: not a label_values() query: {query!r}")
                continue
            params = {"match[]": m.group(1)} if m.group(1) else {}
            try:
                values = wait_until(lambda: stack.api(f"/api/v1/label/{m.group(2)}/values", **params), 60,
                                    f"values of {query}", interval=2)
            except AssertionError as e:
                problems.append(f"{path.name} ${variable['name']}: {query} has no values ({e})")
                continue
            if variable.get("regex") and variable["regex"] != ".*":
                pattern = re.compile(variable["regex"].strip("/"))
                if not any(pattern.search(v) for v in values):
                    problems.append(f"{path.name} ${variable['name']}: no value of {values} matches the regex")
    assert not problems, "\n".join(problems)


def test_every_panel_query_returns_data(stack: Stack) -> None:
    queries = panel_queries()
    assert queries, "no panel queries found in dashboards/*.json"
    stale = {key for key in CONDITIONAL if not any((d, t) == key for d, t, _ in queries)}
    assert not stale, f"CONDITIONAL names panels that no longer exist: {sorted(stale)}"
    checked = [q for q in queries if (q[0], q[1]) not in CONDITIONAL]
    missing: list[tuple[str, str, str]] = []

    def all_have_data() -> bool:
        missing[:] = [q for q in checked if not has_data(stack, q[2])]
        return not missing

    assert poll(all_have_data, 180, interval=5), (f"{len(missing)} of {len(checked)} panel queries return no data:\n"
                + "\n".join(f"  {d} / {t}: {e}" for d, t, e in missing))


# ----------------------------------------------------------------------------- scenario


def alerts_on(metric: str, also: str = "") -> set[str]:
    """Names of the alerts whose expression reads ``metric`` (and contains ``also``)."""
    names = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                expr = str(rule.get("expr", ""))
                if "alert" in rule and metric in expr and also in expr:
                    names.add(rule["alert"])
    return names


def reached_chat(stack: Stack, path: str, name: str, **labels: str) -> bool:
    for message in stack.chat_messages():
        if message["path"] != path or not isinstance(message["json"], dict):
            continue
        for alert in message["json"].get("alerts", []):
            got = alert.get("labels", {})
            if alert.get("status") == "firing" and got.get("alertname") == name and \
                    all(got.get(k) == v for k, v in labels.items()):
                return True
    return False


def fire_and_deliver(stack: Stack, candidates: set[str], labels: dict[str, str], what: str) -> list[str]:
    """Waits until one of ``candidates`` fires with ``labels`` in Prometheus and one of them
    (Alertmanager may inhibit the lesser ones) reaches the chat through Alertmanager; the
    problems found, if any."""
    if not candidates:
        return [f"{what}: no rule in alerts/*.rules.yml watches it"]

    def fired() -> bool:
        return any(a["alertname"] in candidates and all(a.get(k) == v for k, v in labels.items())
                   for a in stack.firing())

    try:
        wait_until(fired, 90, f"{what}: one of {sorted(candidates)} firing with {labels}", interval=1)
        wait_until(lambda: any(reached_chat(stack, "/alertmanager", name, **labels) for name in candidates), 60,
                   f"{what}: one of {sorted(candidates)} delivered by Alertmanager to the chat receiver", interval=1)
    except AssertionError as e:
        return [str(e)]
    return []


def test_scenario_alerts_reach_the_receiver(stack: Stack, services) -> None:
    problems = []
    # A queue's failed set: jobs that fail for good, worked by the demo's own workers.
    r = subprocess.run([str(BULLMQ_PYTHON), str(REPO / "scripts" / "demo" / "queues.py"),
                        "--redis", stack.env["TELLTALE_DEMO_REDIS_URL"], "fail", "3", "--queue", "payments"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # A provider's balance drained: the fake reports 0 from now on (drift stops for it).
    requests.post(stack.apis + "/_balances", json={"kg": 0}, timeout=10).raise_for_status()

    problems += fire_and_deliver(stack, alerts_on("telltale_queue_jobs", 'state="failed"'),
                                 {"queue": "payments"}, "the failed set of payments")
    problems += fire_and_deliver(stack, alerts_on("telltale_provider_balance", "<"),
                                 {"provider": "kinguin"}, "kinguin's balance drained to 0")
    # Telltale's own alerting (examples/alert-rules.sql) tells the chat too, before its
    # database goes away.
    try:
        wait_until(lambda: any(m["path"] == "/slack" and "queue_failed" in m["summary"]
                               for m in stack.chat_messages()), 90,
                   "Telltale's queue_failed alert posted to the chat's /slack", interval=1)
    except AssertionError as e:
        problems.append(str(e))

    services.stop_pg()
    problems += fire_and_deliver(stack, {"PostgresDown"}, {"target": "app"}, "PostgreSQL stopped")
    assert not problems, "\n".join(problems) + stack.output()
