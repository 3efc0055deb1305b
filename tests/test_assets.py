"""The shipped Prometheus rules, their unit tests, Grafana dashboards and example configs are valid."""
import glob
import json
import os
import subprocess

import pytest

from helpers import PROMTOOL

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_alert_rules_are_valid():
    files = sorted(glob.glob(os.path.join(REPO, "alerts", "*.yml")))
    assert files
    result = subprocess.run([PROMTOOL, "check", "rules", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_pass():
    files = sorted(glob.glob(os.path.join(REPO, "alerts", "tests", "*.yml")))
    assert files
    result = subprocess.run([PROMTOOL, "test", "rules", *files], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "dashboards", "*.json"))))
def test_dashboard_is_grafana_json(path):
    with open(path) as f:
        dashboard = json.load(f)
    assert dashboard.get("uid") and dashboard.get("title") and dashboard.get("panels")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "examples", "*.yml"))))
def test_example_config_is_valid(run_cli, path):
    env = {"TELLTALE_PG_DSN": "postgres://u:p@127.0.0.1:1/db", "TELLTALE_REDIS_URL": "redis://127.0.0.1:1"}
    result = run_cli(["check-config", "--config", path], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
