"""The packaging in deploy/ holds together: the systemd unit passes `systemd-analyze verify`
with a low exposure score, the Kubernetes manifests agree with each other and with what
Telltale serves, the PrometheusRule is what scripts/gen-prometheusrule.py makes of
alerts/*.rules.yml, and `telltale check-config` accepts the example configurations.

No cluster or kubectl here: the manifests are checked structurally."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import PROMTOOL

REPO = Path(__file__).resolve().parent.parent
SYSTEMD = REPO / "deploy" / "systemd"
KUBERNETES = REPO / "deploy" / "kubernetes"
GENERATOR = REPO / "scripts" / "gen-prometheusrule.py"
UNIT = SYSTEMD / "telltale.service"
INSTALLED_BIN = "/usr/local/bin/telltale"
PORT = 9839
# A unit whose exposure (systemd-analyze security, 0-10) is above this fails: it is 1.2 now.
MAX_EXPOSURE = 2.0
# ${VAR} in a configuration; `$${` is a literal and not matched.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze not found: scripts/setup.sh installs the Debian package systemd")
    return path


def unit_with_binary(tmp_path: Path, binary: Path) -> Path:
    """The unit, with its commands pointing at the built binary (verify checks that it exists)."""
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED_BIN, str(binary)))
    return unit


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_systemd_unit_verifies_without_warnings(tmp_path, telltale_bin):
    unit = unit_with_binary(tmp_path, telltale_bin)
    result = subprocess.run([systemd_analyze(), "verify", str(unit)], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    about_unit = [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line]
    assert result.returncode == 0 and not about_unit, result.stdout + result.stderr


def test_systemd_unit_exposure_is_low(tmp_path, telltale_bin):
    unit = unit_with_binary(tmp_path, telltale_bin)
    # --threshold is on systemd's internal 0-100 scale (exposure × 10).
    result = subprocess.run([systemd_analyze(), "security", "--offline=yes", f"--threshold={int(MAX_EXPOSURE * 10)}",
                             str(unit)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    overall = [line for line in result.stdout.splitlines() if "Overall exposure level" in line]
    print(*overall)
    assert result.returncode == 0 and overall, result.stdout + result.stderr


def test_systemd_unit_runs_and_reloads_telltale():
    settings = unit_settings()
    assert settings["ExecStart"] == [f"{INSTALLED_BIN} serve --config /etc/telltale/telltale.yml"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["User"] == ["telltale"] and settings["Group"] == ["telltale"]
    assert settings["RestartPreventExitStatus"] == ["2"], "an invalid configuration exits 2: no restart loop"
    assert settings["CapabilityBoundingSet"] == [""]
    # The host and process collectors read /proc/{stat,meminfo,loadavg} and other users' /proc/<pid>.
    assert settings["ProcSubset"] == ["all"] and settings["ProtectProc"] == ["default"]


def test_sysusers_file_creates_the_unit_user(tmp_path):
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.fail("systemd-sysusers not found: scripts/setup.sh installs the Debian package systemd")
    (tmp_path / "etc").mkdir()
    result = subprocess.run([sysusers, "--dry-run", f"--root={tmp_path}", str(SYSTEMD / "telltale.sysusers")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Creating user 'telltale'" in result.stdout + result.stderr


def test_telltale_runs_without_writable_executable_memory(telltale_bin, tmp_path):
    """MemoryDenyWriteExecute= in the unit: the kernel's own MDWE (prctl PR_SET_MDWE, Linux 6.3+)
    refuses the same mappings, so `telltale once` runs under it, with a PCRE2 pattern compiled."""
    pr_get_mdwe = 66
    if ctypes.CDLL(None, use_errno=True).prctl(pr_get_mdwe, 0, 0, 0, 0) < 0:
        pytest.skip("this kernel has no PR_SET_MDWE")
    config = tmp_path / "mdwe.yml"
    config.write_text("collectors:\n  process:\n    watch: [{name: nothing, pattern: 'no-such-process-[0-9]+'}]\n")
    # PR_SET_MDWE (65) with PR_MDWE_REFUSE_EXEC_GAIN (1) in a python that then execs telltale:
    # the flag is kept across execve.
    with_mdwe = ("import ctypes, os, sys; assert ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) == 0; "
                 "os.execv(sys.argv[1], sys.argv[1:])")
    result = subprocess.run([sys.executable, "-c", with_mdwe, str(telltale_bin), "once", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "process_cpu_seconds_total" in result.stdout
