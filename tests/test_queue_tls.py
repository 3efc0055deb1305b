"""End-to-end tests of Redis over TLS (issue #12, point 2): `rediss://` URLs and the `tls:`
block of `queues.redis`.

A CA, a server certificate for 127.0.0.1/localhost (subjectAltName), a certificate for
another host, another CA and a client certificate are made with `openssl` in a temporary
directory; the servers are TLS-only `redis-server`s (`--port 0 --tls-port P`: Debian's
Redis 7 is built with TLS) on loopback. Real BullMQ jobs are written over TLS too, with
the v6 venv's bullmq and redis-py (`rediss://…?ssl_ca_certs=…`), and the counts Telltale
reads over TLS are compared with bullmq's own getJobCounts().
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import find_free_port
from test_queue_errors import own_redis
from test_queues import STATES, BullTool, QueueSamples, queue_config, wait_for

# The queue collector's name. The collector is becoming `queues:<name>` (default name
# `default`): this line is all that changes then.
COLLECTOR = "queues:default"


def up(s: QueueSamples) -> float | None:
    return s.get("telltale_collector_up", collector=COLLECTOR)


def connect_errors(s: QueueSamples) -> float:
    return s.get("telltale_collector_errors_total", collector=COLLECTOR, reason="connect") or 0


# ------------------------------------------------------------------ certificates


@dataclass
class PKI:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    wrong_host_cert: Path  # for wrong.example only, by the same CA
    wrong_host_key: Path
    other_ca: Path  # a CA that signed none of these
    client_cert: Path
    client_key: Path


def openssl(cwd: Path, *args: str) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"openssl {' '.join(args)}\n{r.stdout}\n{r.stderr}"


def make_ca(cwd: Path, name: str) -> None:
    openssl(cwd, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=Telltale test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_leaf(cwd: Path, name: str, ca: str, extensions: str) -> None:
    (cwd / f"{name}.ext").write_text(extensions)
    openssl(cwd, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    openssl(cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("tls")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    server = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    make_leaf(d, "server", "ca", server + "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    make_leaf(d, "wronghost", "ca", server + "subjectAltName=DNS:wrong.example\n")
    make_leaf(d, "client", "ca", "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
    return PKI(d, d / "ca.pem", d / "server.pem", d / "server.key", d / "wronghost.pem", d / "wronghost.key",
               d / "otherca.pem", d / "client.pem", d / "client.key")


# ------------------------------------------------------------------ servers


@contextlib.contextmanager
def tls_redis(pki: PKI, auth_clients: str = "no", cert: Path | None = None, key: Path | None = None) -> Iterator[int]:
    """A TLS-only redis-server on loopback (no plain port); yields its TLS port."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server not found (scripts/setup.sh installs it)", pytrace=False)
    workdir = Path(tempfile.mkdtemp(prefix="ttqtls-"))
    port = find_free_port()
    argv = [server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(cert or pki.server_cert), "--tls-key-file", str(key or pki.server_key),
            "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", auth_clients,
            "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    log = open(workdir / "redis.log", "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    "redis-server did not start:\n" + (workdir / "redis.log").read_text()[-2000:]
                time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def bull_tool(pki: PKI, port: int, client_cert: bool = False) -> BullTool:
    """bullmq (v6 layout) over TLS, verifying the server against the test CA."""
    url = f"rediss://localhost:{port}/0?ssl_ca_certs={pki.ca}"
    if client_cert:
        url += f"&ssl_certfile={pki.client_cert}&ssl_keyfile={pki.client_key}"
    return BullTool("v6", url)


def write_jobs(tool: BullTool, queue: str = "tlsq") -> dict[str, int]:
    """Two waiting jobs and a delayed one, written by bullmq; its getJobCounts() of them."""
    tool("add", queue, json.dumps([{"data": {}}, {"data": {"n": 2}}, {"data": {}, "opts": {"delay": 3_600_000}}]))
    counts = tool("counts", queue)["all"]
    assert counts["waiting"] == 2 and counts["delayed"] == 1, counts
    return counts


def tls_config(url: str, tls: dict[str, Any] | None = None) -> str:
    redis: dict[str, Any] = {"url": url}
    if tls is not None:
        redis["tls"] = tls
    return queue_config(url, redis=redis, discovery={"enabled": True, "interval": "1s"})


def counts_match(s: QueueSamples, expected: dict[str, int], queue: str = "tlsq") -> bool:
    return up(s) == 1 and all(s.get("telltale_queue_jobs", prefix="bull", queue=queue, state=state) == expected[state]
                              for state in STATES)


def assert_fails_clearly(tt, *fragments: str) -> str:
    """collector_up 0, a connect error counted, no queue series, and the reason on `/` and
    in the log; returns the status page."""
    s, _ = wait_for(tt, lambda s: up(s) == 0 and connect_errors(s) >= 1, 15, "the collector down with a connect error")
    assert not s.find("telltale_queue_jobs"), s.excerpt("telltale_queue_jobs")
    page = tt.get("/").text
    for fragment in fragments:
        assert fragment in page, f"{fragment!r} not on the status page:\n{page[-3000:]}"
    wait_for(tt, lambda s: all(f in tt.logs() for f in fragments), 10, "the reason in the log")
    return page


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("how", ["rediss_url", "tls_block_with_ip"])
def test_a_good_certificate_works(pki, start_telltale, how):
    with tls_redis(pki) as port:
        expected = write_jobs(bull_tool(pki, port))
        if how == "rediss_url":
            config = tls_config(f"rediss://localhost:{port}/0", {"ca_file": str(pki.ca)})
        else:  # the block alone turns TLS on; the certificate's IP address SAN is verified
            config = tls_config(f"redis://127.0.0.1:{port}/0", {"ca_file": str(pki.ca)})
        tt = start_telltale(config)
        s, _ = wait_for(tt, lambda s: counts_match(s, expected), 15, "the counts over TLS")
        assert s.get("telltale_queue_up", prefix="bull", queue="tlsq") == 1
        assert not connect_errors(s)
        # It stays up, run after run, on the same connection.
        wait_for(tt, lambda s: counts_match(s, expected)
                 and (s.get("telltale_collector_duration_seconds_count", collector=COLLECTOR) or 0) >= 4,
                 15, "more runs over TLS")


@pytest.mark.parametrize("trust", ["other_ca", "system_store"])
def test_an_unknown_ca_fails_clearly(pki, start_telltale, trust):
    with tls_redis(pki) as port:
        write_jobs(bull_tool(pki, port))
        tls = {"ca_file": str(pki.other_ca)} if trust == "other_ca" else None  # rediss:// alone: the system's CAs
        tt = start_telltale(tls_config(f"rediss://localhost:{port}/0", tls))
        page = assert_fails_clearly(tt, f"TLS handshake with localhost:{port} failed: certificate verify failed")
        # Redis sends its CA along with its certificate (OpenSSL completes the chain from its
        # store) unless told otherwise: either reason names an issuer Telltale does not trust.
        assert ("(self-signed certificate in certificate chain)" in page
                or "(unable to get local issuer certificate)" in page), page[-3000:]


def test_a_wrong_hostname_fails_clearly(pki, start_telltale):
    with tls_redis(pki) as port:
        write_jobs(bull_tool(pki, port))
        tt = start_telltale(tls_config(f"rediss://127.0.0.1:{port}/0",
                                       {"ca_file": str(pki.ca), "server_name": "wrong.example"}))
        assert_fails_clearly(tt, f"TLS handshake with 127.0.0.1:{port} failed: certificate verify failed",
                             "(hostname mismatch)")


def test_a_certificate_for_another_host_needs_server_name(pki, start_telltale):
    """The server presents a certificate for wrong.example: connecting by address fails,
    and `server_name: wrong.example` is what makes it verify (and is sent as SNI)."""
    with tls_redis(pki, cert=pki.wrong_host_cert, key=pki.wrong_host_key) as port:
        tool = BullTool("v6", f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={pki.ca}&ssl_check_hostname=false")
        expected = write_jobs(tool)
        bad = start_telltale(tls_config(f"rediss://127.0.0.1:{port}/0", {"ca_file": str(pki.ca)}))
        assert_fails_clearly(bad, "certificate verify failed", "(IP address mismatch)")
        good = start_telltale(tls_config(f"rediss://127.0.0.1:{port}/0",
                                         {"ca_file": str(pki.ca), "server_name": "wrong.example"}))
        wait_for(good, lambda s: counts_match(s, expected), 15, "the counts with server_name")


def test_client_certificates(pki, start_telltale):
    with tls_redis(pki, auth_clients="yes") as port:
        expected = write_jobs(bull_tool(pki, port, client_cert=True))
        url = f"rediss://localhost:{port}/0"
        with_cert = start_telltale(tls_config(url, {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert),
                                                    "key_file": str(pki.client_key)}))
        without = start_telltale(tls_config(url, {"ca_file": str(pki.ca)}))
        wait_for(with_cert, lambda s: counts_match(s, expected), 15, "the counts with a client certificate")
        # TLS 1.3: the server checks the client's certificate after the client's side of the
        # handshake, so the refusal arrives as an alert on the first read.
        assert_fails_clearly(without, "the server asked for a client certificate and none is configured")
        with_cert.stop()
        # The key's path may be named anywhere; its content never.
        key_text = pki.client_key.read_text()
        body = "".join(key_text.strip().splitlines()[1:-1])
        for text in (without.get("/").text, without.logs(), with_cert.logs()):
            assert body[:40] not in text


def test_insecure_skip_verify_accepts_an_unknown_ca(pki, start_telltale):
    with tls_redis(pki) as port:
        expected = write_jobs(bull_tool(pki, port))
        tt = start_telltale(tls_config(f"rediss://localhost:{port}/0",
                                       {"ca_file": str(pki.other_ca), "insecure_skip_verify": True}))
        wait_for(tt, lambda s: counts_match(s, expected), 15, "the counts without verification")


def test_plain_tcp_to_a_tls_port_says_so(pki, start_telltale):
    with tls_redis(pki) as port:
        tt = start_telltale(tls_config(f"redis://127.0.0.1:{port}/0"))
        s, _ = wait_for(tt, lambda s: up(s) == 0 and connect_errors(s) >= 1, 15, "the collector down")
        page = tt.get("/").text
        assert "does it require TLS? use rediss:// or a tls: block" in page, page[-3000:]


def test_tls_to_a_plain_port_says_so(start_telltale):
    """A TLS client on a plain port: Redis waits for the end of a line that the ClientHello
    does not hold, and the handshake times out."""
    with own_redis() as port:
        tt = start_telltale(tls_config(f"rediss://127.0.0.1:{port}/0", {"insecure_skip_verify": True}))
        s, _ = wait_for(tt, lambda s: up(s) == 0 and connect_errors(s) >= 1, 15, "the collector down")
        page = tt.get("/").text
        assert f"TLS handshake with 127.0.0.1:{port} timed out" in page and "is this a plain-TCP port?" in page, \
            page[-3000:]


@pytest.mark.parametrize("problem", ["missing_ca", "cert_without_key", "unknown_key"])
def test_configuration_problems_name_the_key(pki, run_cli, tmp_path, problem):
    tls = {
        "missing_ca": {"ca_file": str(tmp_path / "nope.pem")},
        "cert_without_key": {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert)},
        "unknown_key": {"ca_file": str(pki.ca), "verify": False},
    }[problem]
    expected = {
        "missing_ca": f"redis.tls.ca_file: cannot open {tmp_path / 'nope.pem'}",
        "cert_without_key": "redis.tls.key_file: is required with cert_file",
        "unknown_key": "redis.tls.verify: unknown key",
    }[problem]
    path = tmp_path / "tls.yml"
    path.write_text(tls_config("rediss://localhost:6379/0", tls))
    r = run_cli(["check-config", "--config", path])
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert expected in r.stdout + r.stderr, r.stdout + r.stderr


def test_a_key_file_never_shows_its_content(pki, run_cli, tmp_path):
    """A key that is not the certificate's: the problem names the key, never the PEM."""
    path = tmp_path / "tls.yml"
    path.write_text(tls_config("rediss://localhost:6379/0", {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert),
                                                             "key_file": str(pki.server_key)}))
    r = run_cli(["check-config", "--config", path])
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "redis.tls.key_file:" in r.stdout + r.stderr and "is not the key of tls.cert_file" in r.stdout + r.stderr
    body = "".join(pki.server_key.read_text().strip().splitlines()[1:-1])
    assert body[:40] not in r.stdout + r.stderr
