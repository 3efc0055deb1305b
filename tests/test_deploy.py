"""The packaging in deploy/ holds together: the systemd unit passes `systemd-analyze verify`
with a low exposure score, and Telltale lives within its sandbox (its system calls and
sockets under strace, writable+executable memory refused by the kernel); the Kubernetes
manifests agree with each other and with what Telltale serves, the PrometheusRule is what
scripts/gen-prometheusrule.py makes of alerts/*.rules.yml, `telltale check-config` accepts
the example configurations, and a ConfigMap updated the kubelet's way applies on SIGHUP.

No cluster or kubectl here: the manifests are checked structurally."""

from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from conftest import find_free_port
from helpers import PROMTOOL, wait_until

REPO = Path(__file__).resolve().parent.parent
SYSTEMD = REPO / "deploy" / "systemd"
KUBERNETES = REPO / "deploy" / "kubernetes"
GENERATOR = REPO / "scripts" / "gen-prometheusrule.py"
UNIT = SYSTEMD / "telltale.service"
INSTALLED_BIN = "/usr/local/bin/telltale"
PORT = 9839
# A unit whose exposure (systemd-analyze security, 0-10) is above this fails: it is 1.4 now.
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


SYMBOL_ORDER = REPO / "scripts" / "symbol-order.txt"


def test_release_binary_keeps_the_functions_that_run_together(telltale_bin):
    """scripts/build-release.sh lays out the functions of scripts/symbol-order.txt first and
    together (BENCHMARKS.md, "Resident memory"). Fails when the flags stop taking effect (they
    need every function in its own section) or the order file has gone stale
    (scripts/bench/symbol-order.sh regenerates it)."""
    if "/release/" not in str(telltale_bin):
        pytest.skip(f"{telltale_bin} is not the release build")
    listing = subprocess.run(["nm", "-S", "--defined-only", str(telltale_bin)], capture_output=True, text=True,
                             check=True, timeout=120).stdout
    functions: dict[str, tuple[int, int]] = {}
    for line in listing.splitlines():
        fields = line.split(maxsplit=3)
        if len(fields) == 4 and fields[2] in "tTwW":
            functions.setdefault(fields[3], (int(fields[0], 16), int(fields[1], 16)))
    names = [name for name in SYMBOL_ORDER.read_text().split() if name in functions]
    assert len(names) >= 0.75 * len(SYMBOL_ORDER.read_text().split()), "scripts/symbol-order.txt is stale"
    starts = [functions[name][0] for name in names]
    size = sum(functions[name][1] for name in set(names))
    span = max(start + functions[name][1] for name, start in zip(names, starts)) - min(starts)
    # The span is about 3 times their size: the toolchain's static libraries keep much of their
    # code in one section per file, which comes along whole. Without the ordering the functions
    # spread over all the code (about 10 times), without function sections over about 5 times.
    assert span < 4 * size, f"the ordered functions ({size} bytes) are spread over {span} bytes"


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


def syscall_set(filters: list[str]) -> set[str]:
    """The system calls of SystemCallFilter= values: names and @groups, expanded."""
    names: set[str] = set()
    for item in " ".join(filters).split():
        if not item.startswith("@"):
            names.add(item)
            continue
        listing = subprocess.run([systemd_analyze(), "syscall-filter", item], capture_output=True, text=True,
                                 timeout=60, check=True).stdout
        members = [line.split()[0] for line in listing.splitlines()[1:]
                   if line.strip() and not line.strip().startswith("#")]
        names |= syscall_set(members)
    return names


def test_telltale_calls_only_what_the_unit_allows(telltale_bin, tmp_path):
    """`telltale serve` under strace, through its first collections (process with a pattern, host,
    Postgres and Redis connects, a libcurl probe), a gzip scrape and a status page, then SIGTERM:
    every system call it made passes the unit's SystemCallFilter=, every socket its
    RestrictAddressFamilies=."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace not found: scripts/setup.sh installs it")
    probe = subprocess.run([strace, "-o", os.devnull, "true"], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, f"strace cannot trace here (ptrace refused?): {probe.stderr}"
    filters = unit_settings()["SystemCallFilter"]
    allowed = syscall_set([f for f in filters if not f.startswith("~")]) - \
        syscall_set([f[1:] for f in filters if f.startswith("~")])
    port = find_free_port()
    config = tmp_path / "strace.yml"
    config.write_text(f"""
server: {{listen: "127.0.0.1:{port}"}}
collectors:
  process: {{interval: 1s, timeout: 1s, watch: [{{name: nothing, pattern: "no-such-process-[0-9]+"}}]}}
  host: {{interval: 1s, timeout: 1s}}
postgres: [{{name: app, dsn: "postgres://u@127.0.0.1:1/db", interval: 1s, timeout: 1s, connect_timeout: 1s}}]
queues: {{redis: {{url: "redis://127.0.0.1:1"}}, interval: 1s, timeout: 1s}}
probes: [{{name: self, url: "http://127.0.0.1:{port}/healthz", interval: 1s, timeout: 1s}}]
""")
    trace, log = tmp_path / "trace.txt", tmp_path / "telltale.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([strace, "-f", "-qq", "-o", str(trace), str(telltale_bin), "serve", "--config",
                                    str(config)], stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, f"telltale exited under strace: {log.read_text()[-2000:]}"
        return requests.get(f"{base}/readyz", timeout=5).status_code == 200

    try:
        wait_until(ready, 60, "/readyz 200 under strace")
        assert requests.get(f"{base}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5).status_code == 200
        assert requests.get(f"{base}/", timeout=5).status_code == 200
    finally:
        if process.poll() is None:
            # The first line of the trace is telltale's execve, by telltale's pid.
            os.kill(int(trace.read_text().split(None, 1)[0]), signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0, log.read_text()[-2000:]
    used = set(re.findall(r"^\d+ +([a-z0-9_]+)\(", trace.read_text(), re.MULTILINE))
    assert "execve" in used and "accept4" in used, sorted(used)
    assert used <= allowed, f"not allowed by SystemCallFilter=: {sorted(used - allowed)}"
    # glibc's getaddrinfo asks netlink which address families are configured; where it may
    # not (RestrictAddressFamilies=), it assumes both IPv4 and IPv6 are.
    families = set(re.findall(r"^\d+ +socket\((AF_[A-Z0-9]+)", trace.read_text(), re.MULTILINE)) - {"AF_NETLINK"}
    assert families <= set(" ".join(unit_settings()["RestrictAddressFamilies"]).split()), sorted(families)


# ------------------------------------------------------------------ Kubernetes


@functools.cache
def manifests() -> list[dict]:
    """Every document of deploy/kubernetes/*.yaml but the kustomization (parsed once: read, never changed)."""
    documents = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return documents


def manifest(kind: str, name: str | None = None) -> dict:
    found = [m for m in manifests() if m["kind"] == kind and name in (None, m["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/kubernetes, found {len(found)}"
    return found[0]


def secret_data(name: str) -> dict[str, str]:
    secret = manifest("Secret", name)
    return dict(secret.get("stringData") or {})


def telltale_container() -> dict:
    containers = manifest("Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "telltale")


def config_text() -> str:
    return manifest("ConfigMap", "telltale-config")["data"]["telltale.yml"]


def mount_path(volume: str) -> str:
    return next(m["mountPath"] for m in telltale_container()["volumeMounts"] if m["name"] == volume)


def test_every_manifest_names_its_kind():
    documents = manifests()
    assert documents
    for document in documents:
        assert document.get("apiVersion") and document.get("kind") and document["metadata"].get("name"), document


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert [image["name"] for image in kustomization["images"]] == ["telltale"]


def test_deployment_runs_two_hardened_replicas():
    deployment = manifest("Deployment", "telltale")
    spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert container["resources"]["limits"]["memory"], container["name"]


def test_deployment_probes_and_port_are_what_telltale_serves():
    container = telltale_container()
    assert container["ports"] == [{"name": "metrics", "containerPort": PORT, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert f'listen: ":{PORT}"' in config_text()


def test_deployment_reads_the_configmap_and_secrets():
    deployment = manifest("Deployment", "telltale")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "telltale-config"
    command = telltale_container()["command"]
    assert command[:2] == [INSTALLED_BIN, "serve"]
    assert command[command.index("--config") + 1] == f"{mount_path('config')}/telltale.yml"
    for container in deployment["spec"]["template"]["spec"]["containers"] + \
            deployment["spec"]["template"]["spec"]["initContainers"]:
        assert [source["secretRef"]["name"] for source in container["envFrom"]] == ["telltale-secrets"]
    # Every ${VAR} of the configuration is a key of the Secret passed as environment variables.
    assert set(VARIABLE.findall(config_text())) <= set(secret_data("telltale-secrets"))


def test_service_and_servicemonitor_select_telltale_with_its_token():
    pod_labels = manifest("Deployment", "telltale")["spec"]["template"]["metadata"]["labels"]
    service = manifest("Service", "telltale")  # its name is the job label the alert rules expect
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": PORT, "targetPort": "metrics", "protocol": "TCP"}]
    monitor = manifest("ServiceMonitor", "telltale")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert "jobLabel" not in monitor["spec"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    # Prometheus sends the token Telltale checks: the same Secret key, mounted as bearer_token_file.
    credentials = endpoint["authorization"]["credentials"]
    assert credentials["key"] in secret_data(credentials["name"])
    volumes = {v["name"]: v for v in manifest("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == credentials["name"]
    token_file = f"{mount_path('secrets')}/{credentials['key']}"
    assert f"bearer_token_file: {token_file}" in config_text()


def test_poddisruptionbudget_keeps_a_replica():
    budget = manifest("PodDisruptionBudget", "telltale")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= \
        manifest("Deployment")["spec"]["template"]["metadata"]["labels"].items()


def test_prometheusrule_is_generated_from_the_alert_rules():
    result = subprocess.run([sys.executable, str(GENERATOR), "--stdout"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (KUBERNETES / "prometheusrule.yaml").read_text(), \
        "deploy/kubernetes/prometheusrule.yaml is out of date: run scripts/gen-prometheusrule.py"
    groups = []
    for path in sorted((REPO / "alerts").glob("*.rules.yml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    rule = manifest("PrometheusRule", "telltale")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == groups


def test_prometheusrule_groups_pass_promtool(tmp_path):
    rules = tmp_path / "prometheusrule.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": manifest("PrometheusRule", "telltale")["spec"]["groups"]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------ example configurations


def check_config(run_cli, config: Path, env: dict[str, str]):
    result = run_cli(["check-config", "--config", str(config)], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stderr, result.stderr


def test_systemd_example_config_is_valid(run_cli):
    config = SYSTEMD / "telltale.yml"
    env = {name: "redis://127.0.0.1:1" if "REDIS" in name else "postgres://u:p@127.0.0.1:1/db"
           for name in VARIABLE.findall(config.read_text())}
    check_config(run_cli, config, env)


def kubelet_volume(folder: Path, files: dict[str, str]) -> Path:
    """A folder laid out as the kubelet mounts a ConfigMap or Secret: each key a symbolic
    link through `..data` (swapped atomically on updates) to the real file."""
    real = folder / "..2026_11_28_00_00_00.000000000"
    real.mkdir(parents=True)
    (folder / "..data").symlink_to(real.name)
    for key, content in files.items():
        (real / key).write_text(content)
        (folder / key).symlink_to(f"..data/{key}")
    return folder


def test_kubernetes_example_config_is_valid(run_cli, tmp_path):
    """The ConfigMap's telltale.yml, with the Secrets' example values as the pods see them:
    environment variables, and files under the secrets mount (here a temporary folder), both
    mounted as the kubelet does."""
    volumes = {v["name"]: v for v in manifest("Deployment")["spec"]["template"]["spec"]["volumes"]}
    secrets = kubelet_volume(tmp_path / "secrets", secret_data(volumes["secrets"]["secret"]["secretName"]))
    text = config_text().replace(f"{mount_path('secrets')}/", f"{secrets}/")
    config = kubelet_volume(tmp_path / "config", {"telltale.yml": text}) / "telltale.yml"
    check_config(run_cli, config, secret_data("telltale-secrets"))



def test_a_configmap_updated_by_the_kubelet_applies_on_sighup(start_telltale, tmp_path):
    """What `kubectl exec POD -- bash -c 'kill -HUP 1'` relies on: the kubelet swaps `..data` to
    a folder with the new telltale.yml, and SIGHUP makes Telltale read it through the link."""
    folder = kubelet_volume(tmp_path / "config", {"telltale.yml": "collectors:\n  host: {enabled: true}\n"})
    tt = start_telltale(args=["--config", str(folder / "telltale.yml")])  # the link itself, not resolved
    wait_until(lambda: "telltale_host_memory_total_bytes" in tt.metrics(), 30, "host metrics")
    updated = folder / "..2026_11_28_00_01_00.000000000"
    updated.mkdir()
    (updated / "telltale.yml").write_text("collectors:\n  host: {enabled: false}\n")
    (folder / "..data_tmp").symlink_to(updated.name)
    os.replace(folder / "..data_tmp", folder / "..data")
    tt.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "telltale_host_memory_total_bytes" not in tt.metrics(), 30,
               "the host collector gone after SIGHUP", details=tt.stderr)
    assert tt.proc.poll() is None
