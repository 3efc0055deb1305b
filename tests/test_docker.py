"""docker/: the compose stack kept in step with scripts/demo.sh, checked as far as a machine
without a Docker engine allows (promtool and amtool checks are in tests/test_rules.py).

Every service it names exists, every file it mounts or builds from is in the repository,
every address Telltale, Prometheus and Alertmanager are given names a service of the stack,
and the demo's sources of examples/admin-portal.yml are pointed at the stack's services.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_dependencies_and_images_exist() -> None:
    built = {service.get("image") for service in SERVICES.values() if "build" in service}
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, (name, dependency)
        image = service.get("image", "")
        assert "build" in service or ":local" not in image or image in built, f"{name} uses {image}, which nothing builds"


def test_mounted_and_built_files_exist() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), (name, volume)
        build = service.get("build")
        if build:
            context = DOCKER / build["context"]
            assert (context / build.get("dockerfile", "Dockerfile")).exists() or (DOCKER / build.get("dockerfile", "")).is_file(), name


def host_of(url: str) -> str:
    return urlparse(url).hostname or ""


def test_addresses_name_services_of_the_stack() -> None:
    environment = SERVICES["telltale"]["environment"]
    for key in ("TELLTALE_DEMO_REDIS_URL", "TELLTALE_DEMO_APIS_URL", "TELLTALE_CHANNEL_SLACK", "TELLTALE_REDIS_URL"):
        assert host_of(environment[key]) in SERVICES, (key, environment[key])
    alertmanager = yaml.safe_load((DOCKER / "alertmanager.yml").read_text())
    for receiver in alertmanager["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            assert host_of(hook["url"]) in SERVICES, hook["url"]
    prometheus = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    targets += [t for a in prometheus["alerting"]["alertmanagers"] for c in a["static_configs"] for t in c["targets"]]
    for target in targets:
        assert target.split(":")[0] in SERVICES | {"localhost": None}, target


def test_the_demo_sources_of_the_profile_are_fed_by_the_stack() -> None:
    """Every variable examples/admin-portal.yml reads without a default is given to Telltale,
    and the demo's addresses (which default to scripts/demo.sh's loopback ports) are set."""
    profile = (REPO / "examples" / "admin-portal.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+)\}", profile))
    with_default = set(re.findall(r"\$\{([A-Z0-9_]+):-", profile))
    environment = SERVICES["telltale"]["environment"]
    assert required <= set(environment), required - set(environment)
    assert {"TELLTALE_DEMO_REDIS_URL", "TELLTALE_DEMO_APIS_URL"} <= with_default & set(environment)
    rules = (REPO / "examples" / "alert-rules.sql").read_text()
    for variable in re.findall(r"'(TELLTALE_CHANNEL_[A-Z0-9_]+)'", rules):
        assert variable in environment, variable


def test_the_demo_programs_bind_where_containers_reach_them() -> None:
    for script in ("apis.py", "chat.py"):
        r = subprocess.run([sys.executable, str(REPO / "scripts" / "demo" / script), "--help"], capture_output=True,
                           text=True, timeout=30, cwd=REPO)
        assert r.returncode == 0 and "--host" in r.stdout, (script, r.stdout, r.stderr)
        command = next(s["command"] for s in SERVICES.values() if f"scripts/demo/{script}" in s.get("command", []))
        assert command[command.index("--host") + 1] == "0.0.0.0"


def excluded_from_build_context(path: str) -> bool:
    """Whether docker/Dockerfile.dockerignore keeps `path` out of the build context: its
    patterns in order, the last match deciding (`!` re-includes), a directory's pattern
    covering what is below it."""
    excluded = False
    for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            excluded = not negated
    return excluded


def test_every_file_the_dockerfile_copies_is_in_the_build_context() -> None:
    copied = 0
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(word.startswith("--from") for word in words):
            continue
        for source in words[1:-1]:
            matches = [path.relative_to(REPO).as_posix() for path in REPO.glob(source)]
            assert matches, f"COPY {source}: not in the repository"
            for match in matches:
                assert not excluded_from_build_context(match), f"COPY {match}: docker/Dockerfile.dockerignore leaves it out"
            copied += 1
    assert copied >= 4
