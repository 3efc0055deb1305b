"""Shared pytest fixtures for Telltale's end-to-end tests.

Fixtures only — the tests themselves live in tests/test_*.py, and the plain helper
functions they share (parsing /metrics, scraping, waiting, promtool) in
tests/helpers.py.  Normally run via
``scripts/test.sh`` (which builds the release binary, starts PostgreSQL/Redis
and sets TELLTALE_BIN); running ``.venv/bin/pytest tests`` directly also works
after ``scripts/services.sh start`` and ``swift build -c release``.

Fixtures / helpers:
  telltale_bin      path of the telltale binary (TELLTALE_BIN, else
                    .build/release/telltale); fails clearly if missing
  free_port         callable -> an unused TCP port on 127.0.0.1
                    (also importable: ``from conftest import find_free_port``)
  start_telltale    factory: start_telltale(config_yaml=None, args=[], env={},
                    wait=True) -> Telltale (running ``telltale serve``); every
                    instance is killed at teardown
  run_cli           callable: run_cli(args, env=None, timeout=60) ->
                    subprocess.CompletedProcess (text, stdout/stderr captured)
  service_env       dict of every variable exported by $RUN_DIR/env
  pg_env, redis_env the same dict, after checking that PostgreSQL / Redis answer
  services          .stop_pg() .start_pg() .stop_redis() .start_redis()
                    .status() via scripts/services.sh; anything a test stopped
                    is started again at teardown

Environment passed to telltale processes: os.environ, plus the variables of
$RUN_DIR/env when that file exists (so ${TELLTALE_PG_DSN} & co. in configs
resolve even when pytest is not started by scripts/test.sh), plus the test's
``env`` overrides; an override value of None removes the variable.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import pytest
import requests

# Detailed assert messages in the shared helpers too, as in the test modules.
pytest.register_assert_rewrite("helpers")

REPO = Path(__file__).resolve().parent.parent
SERVICES_SH = REPO / "scripts" / "services.sh"
HEALTH_TIMEOUT = 15.0  # seconds for /healthz to answer 200 after start


def run_dir() -> Path:
    return Path(os.environ.get("TELLTALE_RUN_DIR") or REPO / ".run")


# --------------------------------------------------------------------- helpers


def find_free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the OS picks; small race until bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_env_file(path: Path | None = None) -> dict[str, str]:
    """Parse the ``export NAME='value'`` lines written by scripts/services.sh."""
    path = path or run_dir() / "env"
    result: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        if words and words[0] == "export":
            words = words[1:]
        for word in words:
            name, sep, value = word.partition("=")
            if sep:
                result[name] = value
    return result


def _service_env_or_empty() -> dict[str, str]:
    try:
        return read_env_file()
    except FileNotFoundError:
        return {}


def build_env(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """os.environ + $RUN_DIR/env (if any) + overrides (None removes a name)."""
    env = dict(os.environ)
    env.update(_service_env_or_empty())
    for name, value in (overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _resolve_telltale_bin() -> Path:
    env_bin = os.environ.get("TELLTALE_BIN")
    candidate = Path(env_bin) if env_bin else REPO / ".build" / "release" / "telltale"
    if not candidate.is_file() or not os.access(candidate, os.X_OK):
        how = f"TELLTALE_BIN={env_bin}" if env_bin else f"TELLTALE_BIN unset and {candidate}"
        pytest.fail(
            f"telltale binary not found ({how} is not an executable file). "
            "Run scripts/test.sh, or `swift build -c release --product telltale` "
            "and set TELLTALE_BIN.",
            pytrace=False,
        )
    return candidate.resolve()


# ------------------------------------------------------------------- telltale


class TelltaleStartError(AssertionError):
    pass


class Telltale:
    """One ``telltale serve`` subprocess with its output captured to files."""

    def __init__(
        self,
        binary: Path,
        workdir: Path,
        name: str,
        config_path: Path | None,
        args: Sequence[str],
        env: Mapping[str, str],
        port: int | None,
    ) -> None:
        self.binary = binary
        self.config_path = config_path
        self.stdout_path = workdir / f"{name}.stdout.log"
        self.stderr_path = workdir / f"{name}.stderr.log"
        args = [str(a) for a in args]
        listen = _listen_from_args(args)
        if listen is not None:
            host, _, port_s = listen.rpartition(":")
            self.host, self.port = (host.strip("[]") or "127.0.0.1"), int(port_s)
            listen_args: list[str] = []
        else:
            self.host, self.port = "127.0.0.1", port or find_free_port()
            listen_args = ["--listen", f"127.0.0.1:{self.port}"]
        if self.host in ("0.0.0.0", "::", ""):
            self.host = "127.0.0.1"
        self.cmd = [str(binary), "serve"]
        if config_path is not None:
            self.cmd += ["--config", str(config_path)]
        self.cmd += listen_args + args
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            env=dict(env),
            cwd=str(workdir),
        )

    # -- addresses
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- output
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> str:
        """Captured stdout followed by captured stderr."""
        return self.stdout() + self.stderr()

    # -- HTTP conveniences
    def get(self, path: str = "/", **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.get(self.url + path, **kwargs)

    def metrics(self, **kwargs) -> str:
        r = self.get("/metrics", **kwargs)
        r.raise_for_status()
        return r.text

    # -- lifecycle
    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT, path: str = "/healthz") -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            if self.proc.poll() is not None:
                raise TelltaleStartError(
                    f"telltale exited with code {self.proc.returncode} before "
                    f"{path} answered 200\n{self.describe()}"
                )
            try:
                r = requests.get(self.url + path, timeout=1)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]!r}"
            except requests.RequestException as e:
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline:
                self.kill()
                raise TelltaleStartError(
                    f"telltale did not answer 200 on {path} within {timeout:.0f}s "
                    f"(last: {last})\n{self.describe()}"
                )
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5) -> int:
        """Send ``sig``, wait up to ``timeout`` s, return the exit code
        (negative = killed by that signal).  Fails the test, after a SIGKILL,
        if the process does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(
                    f"telltale did not exit within {timeout}s after signal "
                    f"{signal.Signals(sig).name}; killed\n{self.describe()}",
                    pytrace=False,
                )
        self._close_files()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._close_files()

    def _close_files(self) -> None:
        for f in (self._out, self._err):
            if not f.closed:
                f.close()

    def describe(self) -> str:
        lines = [f"command: {shlex.join(self.cmd)}"]
        if self.config_path is not None and self.config_path.exists():
            lines += [f"--- config {self.config_path} ---", self.config_path.read_text().rstrip()]
        lines += ["--- stdout ---", self.stdout().rstrip(), "--- stderr ---", self.stderr().rstrip()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.proc.returncode}"
        return f"<Telltale {self.url} pid={self.proc.pid} {state}>"


def _listen_from_args(args: Sequence[str]) -> str | None:
    for i, a in enumerate(args):
        if a == "--listen" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--listen="):
            return a.split("=", 1)[1]
    return None


def _looks_like_port_clash(text: str) -> bool:
    t = text.lower()
    return "address already in use" in t or "eaddrinuse" in t


# -------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def telltale_bin() -> Path:
    return _resolve_telltale_bin()


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """Use as ``port = free_port()``."""
    return find_free_port


@pytest.fixture
def start_telltale(telltale_bin: Path, tmp_path: Path) -> Iterator[Callable[..., Telltale]]:
    started: list[Telltale] = []
    counter = iter(range(1, 10_000))

    def start(
        config_yaml: str | os.PathLike | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str | None] | None = None,
        wait: bool = True,
        timeout: float = HEALTH_TIMEOUT,
    ) -> Telltale:
        """Start ``telltale serve``.  ``config_yaml``: YAML text (written to a
        file in tmp_path), a path (os.PathLike) to an existing file, or None for
        no --config.  ``--listen 127.0.0.1:<free port>`` is added unless
        ``args`` has its own --listen.  ``wait``: block until /healthz is 200."""
        n = next(counter)
        workdir = tmp_path / f"telltale-{n}"
        workdir.mkdir()
        if config_yaml is None:
            config_path = None
        elif isinstance(config_yaml, os.PathLike):
            config_path = Path(config_yaml).resolve()
        else:
            config_path = workdir / "config.yml"
            config_path.write_text(config_yaml)
        full_env = build_env(env)
        # A free port can be grabbed by someone else before telltale binds it:
        # retry a couple of times when that is clearly what happened.
        for attempt in range(3):
            tt = Telltale(telltale_bin, workdir, f"attempt{attempt}" if attempt else "telltale",
                          config_path, args, full_env, None)
            started.append(tt)
            if not wait:
                return tt
            try:
                tt.wait_healthy(timeout=timeout)
                return tt
            except TelltaleStartError:
                own_listen = _listen_from_args([str(a) for a in args]) is None
                if own_listen and attempt < 2 and not tt.running and _looks_like_port_clash(tt.logs()):
                    continue
                raise
        raise AssertionError("unreachable")

    yield start

    for tt in started:
        tt.kill()


@pytest.fixture
def run_cli(telltale_bin: Path) -> Callable[..., subprocess.CompletedProcess]:
    def run(
        args: Sequence[str | os.PathLike],
        env: Mapping[str, str | None] | None = None,
        timeout: float = 60,
        cwd: str | os.PathLike | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``telltale ARGS`` to completion; never raises on a non-zero exit."""
        return subprocess.run(
            [str(telltale_bin), *map(str, args)],
            env=build_env(env),
            cwd=str(cwd or REPO),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def service_env() -> dict[str, str]:
    path = run_dir() / "env"
    if not path.is_file():
        pytest.fail(
            f"{path} not found: PostgreSQL/Redis are not started. "
            "Run scripts/test.sh, or scripts/services.sh start.",
            pytrace=False,
        )
    return read_env_file(path)


@pytest.fixture
def pg_env(service_env: dict[str, str]) -> dict[str, str]:
    port = int(service_env["TELLTALE_PG_PORT"])
    if not _port_open("127.0.0.1", port):
        pytest.fail(f"PostgreSQL is not answering on 127.0.0.1:{port} "
                    "(scripts/services.sh status)", pytrace=False)
    return service_env


@pytest.fixture
def redis_env(service_env: dict[str, str]) -> dict[str, str]:
    port = int(service_env["TELLTALE_REDIS_PORT"])
    if not _port_open("127.0.0.1", port):
        pytest.fail(f"Redis is not answering on 127.0.0.1:{port} "
                    "(scripts/services.sh status)", pytrace=False)
    return service_env


class Services:
    """Stop/start PostgreSQL or Redis (data kept) to simulate outages."""

    def __init__(self) -> None:
        self.stopped: set[str] = set()

    def _run(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(
            ["bash", str(SERVICES_SH), command],
            env={**os.environ, "TELLTALE_RUN_DIR": str(run_dir())},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"scripts/services.sh {command} exited {r.returncode}\n{r.stdout}{r.stderr}"
            )
        return r

    def stop_pg(self) -> None:
        self.stopped.add("pg")
        self._run("stop-pg")

    def start_pg(self) -> None:
        self._run("start-pg")
        self.stopped.discard("pg")

    def stop_redis(self) -> None:
        self.stopped.add("redis")
        self._run("stop-redis")

    def start_redis(self) -> None:
        self._run("start-redis")
        self.stopped.discard("redis")

    def status(self) -> str:
        return self._run("status", check=False).stdout

    def restore(self) -> None:
        if "pg" in self.stopped:
            self.start_pg()
        if "redis" in self.stopped:
            self.start_redis()


@pytest.fixture
def services(service_env: dict[str, str]) -> Iterator[Services]:
    s = Services()
    yield s
    s.restore()  # leave the services up for the next test
