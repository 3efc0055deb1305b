"""The shipped alerting assets hold together: every alert rule has a promtool unit test, the
Alertmanager example is valid and inhibits what it says, the docker Prometheus configuration
(with its rule files) is valid.

`promtool check rules` and `promtool test rules` themselves run in test_assets.py.
"""
import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from conftest import find_free_port
from helpers import PROMTOOL, wait_until

REPO = Path(__file__).resolve().parent.parent
ALERTMANAGER_YML = REPO / "docker" / "alertmanager.yml"
AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"


def rule_alert_names() -> set[str]:
    names = set()
    for path in glob.glob(str(REPO / "alerts" / "*.rules.yml")):
        for group in yaml.safe_load(Path(path).read_text())["groups"]:
            names.update(rule["alert"] for rule in group["rules"] if "alert" in rule)
    return names


def alert_names_under_test() -> set[str]:
    names = set()
    for path in glob.glob(str(REPO / "alerts" / "tests" / "*.yml")):
        for test in yaml.safe_load(Path(path).read_text())["tests"]:
            names.update(case["alertname"] for case in test.get("alert_rule_test", []))
    return names


def test_every_alert_has_a_promtool_test():
    alerts = rule_alert_names()
    assert len(alerts) > 50
    assert sorted(alerts - alert_names_under_test()) == []


def test_alert_tests_name_only_existing_alerts():
    assert sorted(alert_names_under_test() - rule_alert_names()) == []


def test_alertmanager_example_is_valid():
    result = subprocess.run([AMTOOL, "check-config", str(ALERTMANAGER_YML)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_prometheus_config_is_valid_with_the_rules(tmp_path):
    """docker/prometheus.yml names the rules by their path in the container: check a copy
    pointing at alerts/ here, so the rule files are checked too (a glob matching nothing passes)."""
    text = (REPO / "docker" / "prometheus.yml").read_text()
    assert "/etc/prometheus/rules/*.yml" in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/etc/prometheus/rules/", str(REPO / "alerts") + "/"))
    result = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    rule_files = len(glob.glob(str(REPO / "alerts" / "*.yml")))
    assert f"{rule_files} rule files found" in output, output
    alerting = yaml.safe_load(text)["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alerting == ["alertmanager:9093"]


@pytest.fixture
def alertmanager(tmp_path):
    """Debian's Alertmanager with the shipped example (its webhook placeholder goes nowhere:
    only the alerts' inhibition status is looked at)."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.fail("prometheus-alertmanager is not installed (scripts/setup.sh installs it)")
    port = find_free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "log").open("w") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={ALERTMANAGER_YML}", f"--storage.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: requests.get(url + "/-/ready", timeout=2).status_code == 200, 30, "Alertmanager ready")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def alert(name: str, severity: str, **labels: str) -> dict:
    return {"labels": {"alertname": name, "severity": severity, "job": "telltale", "instance": "t:9839", **labels}}


def test_alertmanager_example_inhibits_one_cause_once(alertmanager):
    sent = [
        alert("PostgresDown", "critical", target="app"),
        alert("PaymentsFailing", "critical", target="app", provider="nowpayments"),
        alert("PostgresConnectionsNearMax", "warning", target="replica"),
        alert("RedisDown", "critical", redis="jobs"),
        alert("QueueNotProcessing", "critical", redis="jobs", queue="emails"),
        alert("QueueNotProcessing", "critical", redis="other", queue="emails"),
        alert("QueueJobsFailed", "critical", redis="other", prefix="bull", queue="payments"),
        alert("QueueFailureRateHigh", "warning", redis="other", queue="payments"),
        alert("TelltaleAlertingDatabaseDown", "critical"),
        alert("HostCpuHigh", "warning"),
    ]
    requests.post(alertmanager + "/api/v2/alerts", json=sent, timeout=5).raise_for_status()
    expected_inhibited = {
        ("PaymentsFailing", "app", ""), ("QueueNotProcessing", "", "jobs"), ("QueueFailureRateHigh", "", "other"),
    }

    def states():
        alerts = requests.get(alertmanager + "/api/v2/alerts", timeout=5).json()
        return {(a["labels"]["alertname"], a["labels"].get("target", ""), a["labels"].get("redis", "")):
                bool(a["status"]["inhibitedBy"]) for a in alerts}

    got = wait_until(lambda: (lambda s: s if len(s) == len(sent) and
                              {k for k, v in s.items() if v} == expected_inhibited else None)(states()),
                     15, "the expected alerts inhibited")
    assert not got[("PostgresDown", "app", "")]
    assert not got[("HostCpuHigh", "", "")]        # a critical with the same labels is another cause
    assert not got[("PostgresConnectionsNearMax", "replica", "")]


def test_admin_portal_exports_email_sends_by_status():
    """app_email_sends_total{status} (sent / failed) is defined next to the failures counter the
    alerts use; check-config of the example runs in test_assets.py."""
    config = yaml.safe_load((REPO / "examples" / "admin-portal.yml").read_text())
    queries = {q["metric"]: q for target in config["postgres"] for q in target["queries"]}
    sends = queries["app_email_sends"]
    assert sends["type"] == "counter" and sends["mode"] == "incremental" and sends["labels"] == ["status"]
    assert "'sent'" in sends["sql"] and "'failed'" in sends["sql"]
    assert "app_email_send_failures" in queries
