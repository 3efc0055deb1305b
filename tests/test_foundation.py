"""End-to-end tests of Telltale's foundation: exposition formats, content negotiation,
gzip, the small HTTP endpoints, authentication, signals, configuration errors, `once`
and watched processes.

Every test runs the real binary (TELLTALE_BIN, else .build/release/telltale) through
the fixtures in conftest.py; no PostgreSQL or Redis is needed.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from helpers import assert_secrets_absent, holds_for, promtool_check, samples, value, wait_until

# What Prometheus itself sends when scraping (scrape_classic / default negotiation).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

CURL = shutil.which("curl")

# Collectors that run often: readiness comes quickly and values move.
FAST_COLLECTORS = """\
collectors:
  process: {interval: 1s, timeout: 1s}
  host: {interval: 1s, timeout: 1s}
"""

# Collectors that run once soon after start and then not again for an hour: after
# readiness, every /metrics body is identical except telltale_scrapes_total.
STABLE_COLLECTORS = """\
collectors:
  process: {interval: 1h, timeout: 5s}
  host: {interval: 1h, timeout: 5s}
"""

NO_ACCEPT_ENCODING = {"Accept-Encoding": None}  # requests drops a header set to None

# How long telltale may take to exit after SIGTERM/SIGINT before a test calls it hung. It
# normally takes a few hundred milliseconds at most; what the tests catch is a shutdown
# held up by something that never ends by itself: a kept-alive connection (held until
# the 120 s idle timeout), a collector run stuck in a blocking call, a lost signal. Far
# below those, far above what a busy 2-core CI machine adds to a prompt exit.
EXIT_BOUND = 10.0


# --------------------------------------------------------------------- helpers


def wait_ready(tt, timeout: float = 8.0) -> list[int]:
    """Polls /readyz until 200; returns every status seen (the first may be 503).  Ready
    means every collector's first results are on /metrics (a run is marked done only
    once its families are in the store), and waiting for it scrapes nothing, so
    telltale_scrapes_total still counts only the test's own scrapes."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        r = tt.get("/readyz", timeout=2)
        seen.append(r.status_code)
        if r.status_code == 200:
            return seen
        assert r.status_code == 503, f"/readyz answered {r.status_code}: {r.text!r}"
        assert "waiting" in r.text, r.text
        if time.monotonic() > deadline:
            pytest.fail(f"/readyz still {r.status_code} after {timeout}s: {r.text!r}\n{tt.describe()}")
        time.sleep(0.05)


def get_raw(tt, path: str = "/metrics", headers: dict | None = None) -> tuple[requests.Response, bytes]:
    """GET without letting requests decode the body: (response, bytes as sent)."""
    r = tt.get(path, headers=headers or {}, stream=True)
    body = r.raw.read(decode_content=False)
    r.close()
    return r, body


def scrape_counts(text: str) -> dict[str, float]:
    """{format: value} of telltale_scrapes_total in either format."""
    counts = {}
    for m in re.finditer(r'^telltale_scrapes_total\{format="([a-z]+)"\} (\S+)$', text, re.M):
        counts[m.group(1)] = float(m.group(2))
    return counts


def without_scrape_samples(text: str) -> str:
    """The exposition minus the per-request telltale_scrapes_total sample lines."""
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith("telltale_scrapes_total{")
    )


def telltale_version(run_cli) -> str:
    r = run_cli(["--version"])
    assert r.returncode == 0, r
    version = r.stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version), f"--version printed {r.stdout!r}"
    return version


# --------------------------------------------------------------------- CLI basics


def test_version_flag(run_cli):
    r = run_cli(["--version"])
    assert r.returncode == 0, r
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*\n", r.stdout), repr(r.stdout)


def test_once_without_config_prints_valid_exposition(run_cli, tmp_path):
    version = telltale_version(run_cli)
    before = time.time()
    r = run_cli(["once"], cwd=tmp_path)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    text = r.stdout
    promtool_check(text)
    table = samples(text)
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "telltale_host_cpu_usage_ratio",
    ):
        assert value(table, name) is not None, f"{name} missing from `telltale once`:\n{text}"
    assert value(table, "telltale_build_info", version=version) == 1, text
    assert value(table, "process_resident_memory_bytes") > 0
    assert value(table, "process_cpu_seconds_total") >= 0
    start = value(table, "process_start_time_seconds")
    assert before - 60 < start < time.time() + 5, f"process_start_time_seconds={start}, now={time.time()}"
    assert 0 <= value(table, "telltale_host_cpu_usage_ratio") <= 1
    assert value(table, "telltale_collector_up", collector="process") == 1
    assert value(table, "telltale_collector_up", collector="host") == 1
    assert not text.rstrip().endswith("# EOF"), "`once` prints the text format, not OpenMetrics"


# ------------------------------------------------------------ formats & negotiation


def test_promtool_accepts_live_text_metrics(start_telltale):
    tt = start_telltale(FAST_COLLECTORS)
    wait_ready(tt)
    r, body = get_raw(tt, headers=NO_ACCEPT_ENCODING)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == TEXT_CONTENT_TYPE
    assert "Content-Encoding" not in r.headers
    text = body.decode("utf-8")
    promtool_check(text)
    table = samples(text)
    assert value(table, "process_resident_memory_bytes") > 0
    assert value(table, "telltale_collector_up", collector="process") == 1
    assert value(table, "telltale_collector_up", collector="host") == 1
    assert "# EOF" not in text


def test_openmetrics_with_prometheus_accept_header(start_telltale):
    tt = start_telltale(FAST_COLLECTORS)
    wait_ready(tt)
    r, body = get_raw(tt, headers={"Accept": PROMETHEUS_ACCEPT, **NO_ACCEPT_ENCODING})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OPENMETRICS_CONTENT_TYPE
    assert "Content-Encoding" not in r.headers
    text = body.decode("utf-8")
    assert text.endswith("# EOF\n"), text[-200:]
    assert text.count("# EOF") == 1
    families = {f.name: f for f in openmetrics_families(text)}  # raises on any syntax error
    for name, type_ in (
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("telltale_host_cpu_usage_ratio", "gauge"),
        ("telltale_build", "info"),
        ("telltale_collector_duration_seconds", "histogram"),
        ("telltale_scrapes", "counter"),
    ):
        assert name in families, f"{name} missing from OpenMetrics output:\n{text}"
        assert families[name].type == type_, (name, families[name].type)
    assert families["telltale_scrapes"].samples
    assert {s.labels["format"]: s.value for s in families["telltale_scrapes"].samples}["openmetrics"] == 1


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, TEXT_CONTENT_TYPE),
        ("text/plain;version=0.0.4", TEXT_CONTENT_TYPE),
        ("*/*", TEXT_CONTENT_TYPE),
        ("application/openmetrics-text;version=1.0.0", OPENMETRICS_CONTENT_TYPE),
        ("application/openmetrics-text", OPENMETRICS_CONTENT_TYPE),
        (PROMETHEUS_ACCEPT, OPENMETRICS_CONTENT_TYPE),
        # text preferred by quality
        ("application/openmetrics-text;version=1.0.0;q=0.2,text/plain;version=0.0.4;q=0.9", TEXT_CONTENT_TYPE),
    ],
)
def test_content_negotiation(start_telltale, accept, expected):
    tt = start_telltale(STABLE_COLLECTORS)
    headers = {} if accept is None else {"Accept": accept}
    r = tt.get("/metrics", headers=headers)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == expected
    assert r.text.endswith("# EOF\n") == (expected == OPENMETRICS_CONTENT_TYPE)


# ------------------------------------------------------------------------ gzip


@pytest.mark.parametrize("accept", [None, PROMETHEUS_ACCEPT], ids=["text", "openmetrics"])
def test_gzip_decompresses_to_the_plain_response(start_telltale, accept):
    tt = start_telltale(STABLE_COLLECTORS)
    wait_ready(tt)
    base = {} if accept is None else {"Accept": accept}

    plain_r, plain = get_raw(tt, headers={**base, **NO_ACCEPT_ENCODING})
    assert "Accept-Encoding" not in plain_r.request.headers
    assert "Content-Encoding" not in plain_r.headers, plain_r.headers
    assert plain_r.headers.get("Content-Length") == str(len(plain))

    gz_r, compressed = get_raw(tt, headers={**base, "Accept-Encoding": "gzip"})
    assert gz_r.status_code == 200
    assert gz_r.headers.get("Content-Encoding") == "gzip", gz_r.headers
    assert gz_r.headers["Content-Type"] == plain_r.headers["Content-Type"]
    assert compressed[:2] == b"\x1f\x8b", compressed[:16]
    assert gz_r.headers.get("Content-Length") == str(len(compressed))
    assert len(compressed) < len(plain)
    unzipped = gzip.decompress(compressed)  # checks CRC-32 and length too

    plain_text, unzipped_text = plain.decode(), unzipped.decode()
    assert without_scrape_samples(unzipped_text) == without_scrape_samples(plain_text)
    fmt = "text" if accept is None else "openmetrics"
    other = "openmetrics" if accept is None else "text"
    assert scrape_counts(plain_text) == {fmt: 1, other: 0}
    assert scrape_counts(unzipped_text) == {fmt: 2, other: 0}
    if accept is None:
        promtool_check(unzipped_text)
    else:
        assert unzipped_text.endswith("# EOF\n")
        list(openmetrics_families(unzipped_text))

    # requests' own transparent decoding agrees.
    auto = tt.get("/metrics", headers={**base, "Accept-Encoding": "gzip"})
    assert auto.headers.get("Content-Encoding") == "gzip"
    assert without_scrape_samples(auto.text) == without_scrape_samples(plain_text)
    assert scrape_counts(auto.text) == {fmt: 3, other: 0}


@pytest.mark.skipif(CURL is None, reason="curl not installed")
@pytest.mark.parametrize("accept", [None, PROMETHEUS_ACCEPT], ids=["text", "openmetrics"])
def test_gzip_with_curl_compressed(start_telltale, tmp_path, accept):
    tt = start_telltale(STABLE_COLLECTORS)
    wait_ready(tt)
    accept_args = [] if accept is None else ["-H", f"Accept: {accept}"]

    def curl(*extra):
        headers_file = tmp_path / f"headers-{secrets.token_hex(4)}"
        p = subprocess.run(
            [CURL, "-sS", "--fail", "-D", str(headers_file), *accept_args, *extra, tt.url + "/metrics"],
            capture_output=True,
            timeout=20,
        )
        assert p.returncode == 0, p
        return headers_file.read_text().lower(), p.stdout.decode()

    plain_headers, plain = curl()  # curl sends no Accept-Encoding by default
    assert "content-encoding" not in plain_headers, plain_headers
    zipped_headers, unzipped = curl("--compressed")
    assert "content-encoding: gzip" in zipped_headers, zipped_headers
    assert without_scrape_samples(unzipped) == without_scrape_samples(plain)
    fmt = "text" if accept is None else "openmetrics"
    assert scrape_counts(unzipped)[fmt] == 2


@pytest.mark.parametrize(
    "accept_encoding, gzipped",
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("br", False),
    ],
)
def test_accept_encoding_variants(start_telltale, accept_encoding, gzipped):
    tt = start_telltale(STABLE_COLLECTORS)
    r, body = get_raw(tt, headers={"Accept-Encoding": accept_encoding})
    assert r.status_code == 200
    if gzipped:
        assert r.headers.get("Content-Encoding") == "gzip"
        text = gzip.decompress(body).decode()
    else:
        assert "Content-Encoding" not in r.headers, r.headers
        text = body.decode()
    assert "telltale_build_info" in text


def test_scrape_counter_counts_requests_exactly(start_telltale):
    tt = start_telltale(STABLE_COLLECTORS)
    wait_ready(tt)  # /healthz and /readyz are not scrapes
    expected = {"text": 0, "openmetrics": 0}
    plan = [
        ("text", {}),
        ("text", {"Accept-Encoding": "gzip"}),
        ("openmetrics", {"Accept": PROMETHEUS_ACCEPT}),
        ("text", {"Accept": "text/plain;version=0.0.4"}),
        ("openmetrics", {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}),
        ("openmetrics", {"Accept": "application/openmetrics-text;version=1.0.0"}),
        ("text", {}),
    ]
    for fmt, headers in plan:
        expected[fmt] += 1
        r = tt.get("/metrics", headers={**NO_ACCEPT_ENCODING, **headers})
        assert r.status_code == 200
        assert scrape_counts(r.text) == expected, (headers, r.text[-300:])
        # Other endpoints in between do not count.
        assert tt.get("/healthz").status_code == 200
        assert tt.get("/").status_code == 200
    final = samples(tt.get("/metrics", headers=NO_ACCEPT_ENCODING).text)
    assert value(final, "telltale_scrapes_total", format="text") == expected["text"] + 1
    assert value(final, "telltale_scrapes_total", format="openmetrics") == expected["openmetrics"]


# ----------------------------------------------------------- healthz, readyz, /


def test_healthz_readyz_and_status_page(start_telltale, run_cli):
    version = telltale_version(run_cli)
    tt = start_telltale(FAST_COLLECTORS)
    r = tt.get("/healthz")
    assert r.status_code == 200
    statuses = wait_ready(tt)
    assert statuses[-1] == 200 and set(statuses) <= {200, 503}
    assert tt.get("/readyz").status_code == 200  # stays ready

    page = tt.get("/")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert version in html
    assert re.search(r"<td>process</td>", html), html
    assert re.search(r"<td>host</td>", html), html
    # Only the collectors that run are listed.
    assert "postgres" not in html

    metrics = samples(tt.metrics())
    assert value(metrics, "telltale_build_info", version=version) == 1
    assert tt.get("/no-such-page").status_code == 404


def test_readyz_waits_for_every_collector(start_telltale):
    """With both collectors on a 1-hour interval, readiness still comes from the first
    runs, which start (with a small stagger) right after startup."""
    tt = start_telltale(STABLE_COLLECTORS)
    wait_ready(tt, timeout=15)
    html = tt.get("/").text
    assert "pending" not in html, html


# ------------------------------------------------------------------------ auth


def _check_protected(tt, good: dict, bad: list[dict], scheme: str, secret: str) -> None:
    for path in ("/metrics", "/"):
        for headers in [{}] + bad:
            r = tt.get(path, headers=headers)
            assert r.status_code == 401, (path, headers, r.status_code, r.text[:200])
            challenge = r.headers.get("WWW-Authenticate", "")
            assert challenge.lower().startswith(scheme.lower()), (path, headers, r.headers)
            assert_secrets_absent([secret], **{f"401 body of {path}": r.text, "401 headers": str(r.headers)})
        r = tt.get(path, headers=good)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
        assert "WWW-Authenticate" not in r.headers
        assert_secrets_absent([secret], **{f"200 body of {path}": r.text})
    # Health endpoints stay open, with or without credentials.
    for path in ("/healthz", "/readyz"):
        assert tt.get(path).status_code == 200, path
        assert tt.get(path, headers=good).status_code == 200, path
    om = tt.get("/metrics", headers={**good, "Accept": PROMETHEUS_ACCEPT})
    assert om.status_code == 200 and om.text.endswith("# EOF\n")
    assert_secrets_absent([secret], openmetrics=om.text)


def _finish_and_check_logs(tt, secret: str) -> None:
    assert tt.stop(signal.SIGTERM) == 0
    assert_secrets_absent([secret], stdout=tt.stdout(), stderr=tt.stderr())


@pytest.mark.parametrize("source", ["inline", "env", "file"])
def test_bearer_token_auth(start_telltale, run_cli, tmp_path, source):
    token = "tt-bearer-" + secrets.token_hex(16)
    env = {}
    if source == "inline":
        setting = f"bearer_token: {token}"
    elif source == "env":
        env = {"TELLTALE_TEST_BEARER": token}
        setting = "bearer_token: ${TELLTALE_TEST_BEARER}"
    else:
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        setting = f"bearer_token_file: {token_file}"
    config = f"""\
log: {{level: trace}}
server:
  auth:
    {setting}
{FAST_COLLECTORS}"""
    config_path = tmp_path / "auth.yml"
    config_path.write_text(config)
    checked = run_cli(["check-config", "--config", config_path], env=env)
    assert checked.returncode == 0, checked
    assert_secrets_absent([token], **{"check-config stdout": checked.stdout, "check-config stderr": checked.stderr})

    tt = start_telltale(config_path, env=env)
    wait_ready(tt)
    bad = [
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Bearer {token[:-1]}"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer "},
        {"Authorization": token},
        {"Authorization": "Basic " + base64.b64encode(f"user:{token}".encode()).decode()},
    ]
    if source == "env":
        bad.append({"Authorization": "Bearer ${TELLTALE_TEST_BEARER}"})
    _check_protected(tt, {"Authorization": f"Bearer {token}"}, bad, "Bearer", token)
    _finish_and_check_logs(tt, token)


def test_basic_auth_with_password_file(start_telltale, run_cli, tmp_path):
    password = "tt-basic-" + secrets.token_hex(16)
    password_file = tmp_path / "password"
    password_file.write_text(password + "\n")
    config = f"""\
log: {{level: trace}}
server:
  auth:
    basic:
      username: u
      password_file: {password_file}
{FAST_COLLECTORS}"""
    config_path = tmp_path / "basic.yml"
    config_path.write_text(config)
    assert run_cli(["check-config", "--config", config_path]).returncode == 0

    def basic(user, pw):
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}

    tt = start_telltale(config_path)
    wait_ready(tt)
    bad = [
        basic("u", password + "x"),
        basic("u", password + "\n"),
        basic("v", password),
        basic("u", ""),
        basic("", password),
        {"Authorization": f"Bearer {password}"},
        {"Authorization": "Basic !!!not-base64"},
    ]
    _check_protected(tt, basic("u", password), bad, "Basic", password)
    # requests' own HTTPBasicAuth builds the same header.
    assert tt.get("/metrics", auth=("u", password)).status_code == 200
    assert tt.get("/metrics", auth=("u", "nope")).status_code == 401
    _finish_and_check_logs(tt, password)


def test_rejected_requests_are_not_counted_as_scrapes(start_telltale):
    token = "tt-count-" + secrets.token_hex(8)
    tt = start_telltale(f"server: {{auth: {{bearer_token: {token}}}}}\n{STABLE_COLLECTORS}")
    for _ in range(3):
        assert tt.get("/metrics").status_code == 401
    r = tt.get("/metrics", headers={"Authorization": f"Bearer {token}", **NO_ACCEPT_ENCODING})
    assert r.status_code == 200
    assert scrape_counts(r.text) == {"text": 1, "openmetrics": 0}


# --------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("keepalive", [False, True], ids=["idle", "keepalive-open"])
def test_signal_exits_zero_promptly(start_telltale, sig, keepalive):
    tt = start_telltale(FAST_COLLECTORS)
    wait_ready(tt)
    session = requests.Session()
    if keepalive:
        # A scraper's kept-alive connection must not hold the shutdown up (until the idle timeout).
        assert session.get(tt.url + "/metrics", timeout=5).status_code == 200
    started = time.monotonic()
    tt.proc.send_signal(sig)
    try:
        code = tt.proc.wait(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        tt.kill()
        pytest.fail(f"telltale did not exit within {EXIT_BOUND} s of {sig.name}\n{tt.describe()}")
    finally:
        session.close()
    print(f"[{sig.name}] exited {time.monotonic() - started:.3f}s after the signal")
    assert code == 0, f"exit code {code} after {sig.name}\n{tt.describe()}"


def test_sigterm_right_after_start(start_telltale):
    tt = start_telltale(STABLE_COLLECTORS)  # /healthz answers; first runs may still be under way
    tt.proc.send_signal(signal.SIGTERM)
    try:
        code = tt.proc.wait(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        tt.kill()
        pytest.fail(f"telltale did not exit within {EXIT_BOUND} s of a SIGTERM right after start\n{tt.describe()}")
    assert code == 0, tt.describe()


# ------------------------------------------------------------ configuration errors

PG_MISSING_ENV = """\
postgres:
  - name: x
    dsn: ${NOPE_NOT_SET}
"""

THREE_PROBLEMS = """\
server:
  colour: blue
  listen: "127.0.0.1:70000"
collectors:
  process:
    enabled: maybe
"""

INVALID_CONFIGS = {
    "bool-type": ("collectors: {process: {enabled: maybe}}\n", ["collectors.process.enabled"]),
    "list-for-scalar": ("collectors: {host: {interval: [1, 2]}}\n", ["collectors.host.interval"]),
    "scalar-for-mapping": ("server: 5\n", ["server"]),
    "bad-duration": ("collectors: {process: {interval: soon}}\n", ["collectors.process.interval"]),
    "timeout-over-interval": ("collectors: {host: {interval: 1s, timeout: 2s}}\n", ["collectors.host.timeout"]),
    "unknown-key": ("server: {colour: blue}\n", ["server.colour: unknown key"]),
    "unknown-top-level-key": ("colour: blue\n", ["colour: unknown key"]),
    "unknown-nested-key": ("collectors: {process: {intervall: 5s}}\n", ["collectors.process.intervall: unknown key"]),
    "bad-port": ('server: {listen: "127.0.0.1:70000"}\n', ["server.listen"]),
    "port-zero": ('server: {listen: "127.0.0.1:0"}\n', ["server.listen"]),
    "missing-env": (PG_MISSING_ENV, ["NOPE_NOT_SET", "postgres[0].dsn"]),
    "bad-watch-regex": (
        'collectors: {process: {watch: [{name: a, pattern: "("}]}}\n',
        ["collectors.process.watch[0].pattern"],
    ),
    "watch-needs-one-matcher": (
        "collectors: {process: {watch: [{name: a}]}}\n",
        ["collectors.process.watch[0]"],
    ),
    "auth-without-credentials": ("server: {auth: {}}\n", ["server.auth"]),
    "three-problems": (THREE_PROBLEMS, ["server.colour: unknown key", "server.listen", "collectors.process.enabled"]),
    "yaml-syntax": ("server: [unterminated\n  listen: :1\n", []),
    "yaml-bad-indentation": ("server:\n  listen: 1\n bad: 2\n", []),
}


def _config_command(command: str, config_path: Path, port: int) -> list:
    if command == "check-config":
        return ["check-config", "--config", config_path]
    if command == "serve":
        return ["serve", "--config", config_path, "--listen", f"127.0.0.1:{port}"]
    return ["once", "--config", config_path]


@pytest.mark.parametrize("command", ["check-config", "serve"])
@pytest.mark.parametrize("case", list(INVALID_CONFIGS))
def test_invalid_config_exits_2_naming_the_key(run_cli, tmp_path, free_port, command, case):
    text, expected = INVALID_CONFIGS[case]
    config_path = tmp_path / "bad.yml"
    config_path.write_text(text)
    r = run_cli(_config_command(command, config_path, free_port()), env={"NOPE_NOT_SET": None}, timeout=20)
    assert r.returncode == 2, f"{command} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert r.stderr.strip(), "no error message on stderr"
    for needle in expected:
        assert needle in r.stderr, f"{needle!r} not in stderr:\n{r.stderr}"
    if case == "three-problems":
        # All three in one run, each once.
        for needle in expected:
            assert r.stderr.count(needle) == 1, r.stderr
    if command == "check-config":
        assert "is valid" not in r.stdout


def test_invalid_config_for_once_exits_2(run_cli, tmp_path):
    config_path = tmp_path / "bad.yml"
    config_path.write_text(THREE_PROBLEMS)
    r = run_cli(["once", "--config", config_path])
    assert r.returncode == 2, r
    assert "server.colour: unknown key" in r.stderr
    assert "process_cpu_seconds_total" not in r.stdout


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_missing_config_file_exits_2(run_cli, tmp_path, free_port, command):
    missing = tmp_path / "does-not-exist.yml"
    r = run_cli(_config_command(command, missing, free_port()), timeout=20)
    assert r.returncode == 2, r
    assert str(missing) in r.stderr


def test_valid_config_passes_check_config(run_cli, tmp_path):
    password_file = tmp_path / "pw"
    password_file.write_text("hunter2\n")
    config_path = tmp_path / "good.yml"
    config_path.write_text(
        f"""\
# Every section of the foundation, with env substitution.
server:
  listen: "127.0.0.1:19839"
  auth:
    basic:
      username: ops
      password_file: {password_file}
log:
  level: debug
collectors:
  process:
    enabled: true
    interval: 2s
    timeout: 500ms
    watch:
      - name: init
        pid_file: {tmp_path / 'init.pid'}
      - name: shells
        pattern: "^(ba)?sh "
  host:
    enabled: yes
    interval: 1m
    timeout: 10s
    filesystems: [/, /tmp]
postgres:
  - name: main
    dsn: ${{TELLTALE_TEST_DSN}}
    interval: 15s
  - name: other
    dsn: "${{TELLTALE_TEST_UNSET_DSN:-postgres://localhost/x}}"
"""
    )
    r = run_cli(
        ["check-config", "--config", config_path],
        env={"TELLTALE_TEST_DSN": "postgres://u:p@127.0.0.1:1/db", "TELLTALE_TEST_UNSET_DSN": None},
    )
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "postgres://u:p@" not in r.stdout + r.stderr


def test_empty_config_is_valid(run_cli, tmp_path):
    config_path = tmp_path / "empty.yml"
    config_path.write_text("# nothing configured\n")
    r = run_cli(["check-config", "--config", config_path])
    assert r.returncode == 0, r


@pytest.mark.parametrize(
    "listen", ["bad", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:http", ":-1"]
)
def test_bad_listen_flag_exits_2(run_cli, tmp_path, listen):
    r = run_cli(["serve", "--listen", listen], cwd=tmp_path, timeout=20)
    assert r.returncode == 2, f"--listen {listen!r}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "--listen" in r.stderr, r.stderr


def test_listen_flag_overrides_config(start_telltale, free_port):
    port = free_port()
    tt = start_telltale(f'server: {{listen: "127.0.0.1:{port}"}}\n{STABLE_COLLECTORS}')
    assert tt.port != port
    assert tt.get("/healthz").status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


# ------------------------------------------------------------ watched processes


@pytest.fixture
def sleepers(tmp_path):
    """Two `sleep` processes with unique command lines (shared by no concurrent run)."""
    tag = f"{secrets.randbelow(900000) + 100000}"
    procs = [
        subprocess.Popen(["sleep", f"300.{tag}1"], stdin=subprocess.DEVNULL),
        subprocess.Popen(["sleep", f"300.{tag}2"], stdin=subprocess.DEVNULL),
    ]
    yield tag, procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def test_watched_processes(start_telltale, tmp_path, sleepers):
    tag, (first, second) = sleepers
    pid_file = tmp_path / "sleeper.pid"
    pid_file.write_text(f"{first.pid}\n")
    stale_pid_file = tmp_path / "stale.pid"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale_pid_file.write_text(f"{dead.pid}\n")
    ghost = "no-such-process-xyz-" + secrets.token_hex(6)
    config = f"""\
collectors:
  process:
    interval: 1s
    timeout: 1s
    watch:
      - name: sleeper
        pattern: "sleep 300\\\\.{tag}1"
      - name: pidfile
        pid_file: {pid_file}
      - name: ghost
        pattern: "{ghost}"
      - name: both
        pattern: "^sleep 300\\\\.{tag}[12]$"
      - name: stale
        pid_file: {stale_pid_file}
      - name: nofile
        pid_file: {tmp_path / "missing.pid"}
  host: {{interval: 1s, timeout: 1s}}
"""
    tt = start_telltale(config)
    wait_ready(tt)
    text = tt.metrics()
    promtool_check(text)
    table = samples(text)

    def up(name):
        return value(table, "telltale_process_up", name=name)

    assert up("sleeper") == 1, text
    assert up("pidfile") == 1, text
    assert up("ghost") == 0, text
    assert up("both") == 2, text
    assert up("stale") == 0, text
    assert up("nofile") == 0, text

    rss = value(table, "telltale_process_resident_memory_bytes", name="sleeper")
    assert rss is not None and rss > 0, text
    assert value(table, "telltale_process_resident_memory_bytes", name="pidfile") == rss
    assert value(table, "telltale_process_resident_memory_bytes", name="ghost") is None
    start = value(table, "telltale_process_start_time_seconds", name="sleeper")
    assert start is not None and abs(start - time.time()) < 120, start
    assert value(table, "telltale_process_threads", name="sleeper") == 1
    assert value(table, "telltale_process_threads", name="both") == 2
    assert value(table, "telltale_collector_up", collector="process") == 1

    # The OpenMetrics rendering of the same families parses too.
    om = tt.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT}).text
    families = {f.name: f for f in openmetrics_families(om)}
    assert {s.labels["name"]: s.value for s in families["telltale_process_up"].samples}["sleeper"] == 1

    # The watched process goes away: its count drops to 0 within a couple of runs.
    first.kill()
    first.wait(timeout=5)

    def gone():
        nonlocal table
        table = samples(tt.metrics())
        return up("sleeper") == 0 and up("pidfile") == 0 and up("both") == 1

    wait_until(gone, 10, "sleeper and pidfile 0, both 1 once the first sleeper is killed",
               details=lambda: f" (sleeper, pidfile, both) = {(up('sleeper'), up('pidfile'), up('both'))}")


def test_label_values_are_escaped(start_telltale):
    """Watched-process names become label values: quotes, backslashes, line feeds and
    non-ASCII text must come out escaped so that both formats still parse."""
    names = ['quote"d', "back\\slash", "new\nline", "ünïcode ✓", "trailing\\"]
    watch = "\n".join(
        f"      - name: {json.dumps(name, ensure_ascii=False)}\n"
        f"        pattern: no-such-process-{secrets.token_hex(6)}"
        for name in names
    )
    tt = start_telltale(f"collectors:\n  process:\n    interval: 1s\n    timeout: 1s\n    watch:\n{watch}\n")
    wait_ready(tt)
    text = tt.metrics()
    promtool_check(text)
    table = samples(text)
    for name in names:
        assert value(table, "telltale_process_up", name=name) == 0, (name, text)
    om = tt.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT}).text
    families = {f.name: f for f in openmetrics_families(om)}
    assert sorted(s.labels["name"] for s in families["telltale_process_up"].samples) == sorted(names)


def test_metrics_with_query_string(start_telltale):
    tt = start_telltale(STABLE_COLLECTORS)
    wait_ready(tt)
    r = tt.get("/metrics?collect[]=process&x=1")
    assert r.status_code == 200
    assert "process_cpu_seconds_total" in r.text


def _raw_exchange(port: int, payload: bytes) -> bytes:
    """Sends raw bytes on one connection and reads until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(payload)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def test_pipelined_requests_are_answered_in_order(start_telltale):
    # /metrics is answered on the event loop, everything else by the router: a /metrics request
    # pipelined behind a router request must still come back after it.
    tt = start_telltale(STABLE_COLLECTORS)
    wait_ready(tt)
    requests = [
        b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n",
        b"GET /metrics?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ]
    data = _raw_exchange(tt.port, b"".join(requests))
    responses = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(responses) == 5, data[:2000]
    kinds = []
    for response in responses:
        head, _, body = response.partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n"))
        assert fields[b"Server"] == b"telltale" and fields[b"Date"].endswith(b" GMT"), head
        if fields.get(b"Content-Encoding") == b"gzip":
            kinds.append("metrics-gzip")
            assert int(fields[b"Content-Length"]) == len(body[:int(fields[b"Content-Length"])])
        elif b"telltale_build_info" in body:
            kinds.append("metrics")
        else:
            kinds.append(body.strip().decode())
    assert kinds == ["ready", "metrics", "ok", "metrics-gzip", "metrics"], kinds


def test_port_in_use_exits_nonzero(run_cli, tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        r = run_cli(["serve", "--listen", f"127.0.0.1:{port}"], cwd=tmp_path, timeout=20)
    assert r.returncode != 0, r
    assert "in use" in r.stderr.lower(), r.stderr


# ----------------------------------------------------------------- known bugs
#
# The tests below FAIL against the current code: each shows a Telltale bug (see the
# docstrings). They are deliberately not marked xfail.


@pytest.mark.parametrize("command", ["check-config", "serve"])
@pytest.mark.parametrize(
    "setting, key",
    [
        ("interval: 1e30s", "collectors.process.interval"),
        ("interval: 10000000000000000", "collectors.process.interval"),
        ("interval: 1s\n    timeout: 99999999999999999h", "collectors.process.timeout"),
    ],
    ids=["1e30s", "1e16-bare-seconds", "huge-hours"],
)
def test_huge_duration_is_a_config_error_not_a_crash(run_cli, tmp_path, free_port, command, setting, key):
    """BUG: parseDuration (Sources/TelltaleCore/Config/ConfigReader.swift) converts with
    `Int64((number * scale * 1000).rounded())`, which traps when the value does not fit:
    check-config and serve crash with "Fatal error: Double value cannot be converted to
    Int64" (SIGILL, exit 132) instead of reporting the key and exiting 2."""
    config_path = tmp_path / "huge.yml"
    config_path.write_text(f"collectors:\n  process:\n    {setting}\n")
    r = run_cli(_config_command(command, config_path, free_port()), timeout=30)
    assert r.returncode == 2, f"exit {r.returncode}\nstderr: {r.stderr[:600]}"
    assert key in r.stderr, r.stderr[:600]


def test_basic_auth_without_username_does_not_report_password_as_unknown(run_cli, tmp_path):
    """BUG: HTTPAuth.read (Sources/TelltaleServer/ServerConfig.swift) reads `password`
    only after `username` in one `guard`; with no username the password is never read, so
    finish() also reports "server.auth.basic.password: unknown key" — a misleading error
    for a key that is perfectly valid."""
    config_path = tmp_path / "basic.yml"
    config_path.write_text("server: {auth: {basic: {password: hunter2}}}\n")
    r = run_cli(["check-config", "--config", config_path])
    assert r.returncode == 2, r
    assert "server.auth.basic" in r.stderr
    assert "password: unknown key" not in r.stderr, r.stderr


def test_a_fifo_pid_file_blocks_nothing_and_sigterm_exits_at_once(start_telltale, tmp_path):
    """A watched pid_file that is a FIFO with no writer used to block the process collector
    in open() (as a hung NFS mount would). Files named by configuration are now opened
    without blocking and must be regular files: the run succeeds, the watched process reads
    as not running, and SIGTERM ends telltale at once."""
    fifo = tmp_path / "stuck.pid"
    os.mkfifo(fifo)
    tt = start_telltale(f"""\
collectors:
  process:
    interval: 1s
    timeout: 1s
    watch:
      - name: stuck
        pid_file: {fifo}
  host: {{interval: 1s, timeout: 1s}}
""")
    wait_ready(tt)
    assert value(tt.metrics(), "telltale_collector_up", collector="process") == 1
    assert value(tt.metrics(), "telltale_process_up", name="stuck") == 0
    tt.proc.send_signal(signal.SIGTERM)
    try:
        # A run stuck in open() would hold the exit up for as long as the FIFO has no writer.
        code = tt.proc.wait(timeout=EXIT_BOUND)
    except subprocess.TimeoutExpired:
        # Release the blocked open(): if telltale now exits, the stuck run was the cause.
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: nobody is blocked on it any more
            pass
        try:
            late = tt.proc.wait(timeout=3)
            detail = f"it exited ({late}) only once the blocked read was released"
        except subprocess.TimeoutExpired:
            detail = "it still had not exited after the blocked read was released"
        tt.kill()
        pytest.fail(f"telltale did not exit within {EXIT_BOUND} s of SIGTERM; {detail}\n{tt.describe()}")
    assert code == 0


def test_serves_with_every_collector_disabled(start_telltale):
    """With nothing to collect Telltale still serves its own metrics until told to stop."""
    tt = start_telltale("collectors: {host: {enabled: false}, process: {enabled: false}}\n")
    wait_ready(tt)
    # Nothing to wait for: no collector runs, so no counter moves by itself. The bug this
    # guards against is the service group ending at once with nothing in it, so telltale
    # must keep running and serving throughout a while (1 s: many times the time it takes
    # to start, and to quit).
    holds_for(lambda: tt.running and "telltale_build_info{" in tt.metrics(), 1.0,
              "telltale running and serving with every collector disabled")
    assert tt.stop(signal.SIGTERM) == 0
