"""`--web.config.file`: the exporter toolkit's web configuration (TLS, bcrypt basic auth,
response headers), with a real Prometheus scraping Telltale over TLS.

Certificates are made with `openssl` per module (a CA, a server certificate for 127.0.0.1,
a second one for rotation, a client certificate); bcrypt hashes by the `bcrypt` package
(another implementation than the libxcrypt Telltale uses).
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import requests

from conftest import find_free_port
from helpers import wait_until
from test_queue_tls import make_ca, make_leaf

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PASSWORD = "s3cret-scrape-password"
SERVER_EXT = ("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
              "subjectAltName=DNS:localhost,IP:127.0.0.1\n")


@dataclass
class PKI:
    dir: Path

    def __getattr__(self, name: str) -> Path:
        stem, _, kind = name.rpartition("_")
        return self.dir / f"{stem}.{'pem' if kind == 'cert' else 'key'}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("web-tls")
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_leaf(d, "server", "ca", SERVER_EXT)
    make_leaf(d, "rotated", "ca", SERVER_EXT)
    make_leaf(d, "client", "ca", "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
    make_leaf(d, "stranger", "otherca", "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n")
    return PKI(d)


def hashed(password: str = PASSWORD, cost: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def web_config(tmp_path: Path, pki: PKI, *, users: dict[str, str] | None = None, client_auth: str | None = None,
               cert: Path | None = None, key: Path | None = None, headers: dict[str, str] | None = None) -> Path:
    """A web config with its certificate and key copied next to it (so a test may replace them)."""
    shutil.copy(cert or pki.server_cert, tmp_path / "tls.pem")
    shutil.copy(key or pki.server_key, tmp_path / "tls.key")
    tls = {"cert_file": str(tmp_path / "tls.pem"), "key_file": str(tmp_path / "tls.key")}
    if client_auth:
        tls |= {"client_auth_type": client_auth, "client_ca_file": str(pki.ca_cert)}
    config = {"tls_server_config": tls}
    if users:
        config["basic_auth_users"] = users
    if headers:
        config["http_server_config"] = {"headers": headers}
    path = tmp_path / "web.yml"
    path.write_text(json.dumps(config))
    return path


NO_COLLECTORS = "collectors: {host: {enabled: false}, process: {interval: 1s, timeout: 1s}}\n"


def start_tls(start_telltale, web: Path, pki: PKI, *args: str):
    tt = start_telltale(NO_COLLECTORS, args=["--web.config.file", str(web), *args], wait=False)
    wait_until(lambda: https_get(tt, "/healthz", pki).status_code == 200, 15, "Telltale answering over TLS",
               details=tt.describe)
    return tt


def https_get(tt, path: str, pki: PKI, auth: tuple[str, str] | None = None, client: bool = False) -> requests.Response:
    cert = (str(pki.client_cert), str(pki.client_key)) if client else None
    return requests.get(https(tt) + path, verify=str(pki.ca_cert), auth=auth, cert=cert, timeout=10)


def https(tt) -> str:
    return f"https://127.0.0.1:{tt.port}"


def served_serial(port: int, pki: PKI) -> int:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der, capture_output=True, check=True)
    return int(out.stdout.decode().strip().split("=")[1], 16)


def file_serial(cert: Path) -> int:
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-serial"], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().split("=")[1], 16)


def prometheus_up(tmp_path: Path, tt, scrape: dict) -> float | None:
    """Runs a real Prometheus scraping `tt` with `scrape` (tls_config, basic_auth) until `up` is known."""
    port = find_free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "telltale", "scheme": "https",
                            "static_configs": [{"targets": [f"127.0.0.1:{tt.port}"]}], **scrape}],
    }))
    log = open(tmp_path / "prometheus.log", "wb")
    prometheus = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        def up() -> float | None:
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": "up"})
            with urllib.request.urlopen(url, timeout=5) as r:
                result = json.load(r)["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        return wait_until(lambda: up() is not None and up(), 60, "Prometheus scraping Telltale",
                          ignore=(OSError,)) and up()
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        log.close()


@pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="needs Debian's prometheus")
def test_prometheus_scrapes_over_tls_with_bcrypt_basic_auth(start_telltale, pki, tmp_path) -> None:
    web = web_config(tmp_path, pki, users={"prometheus": hashed()},
                     headers={"Strict-Transport-Security": "max-age=31536000", "X-Frame-Options": "deny"})
    tt = start_tls(start_telltale, web, pki)
    assert prometheus_up(tmp_path, tt, {"tls_config": {"ca_file": str(pki.ca_cert)},
                                        "basic_auth": {"username": "prometheus", "password": PASSWORD}}) == 1
    for path in ("/metrics", "/", "/api/v1/status"):
        wrong = https_get(tt, path, pki, auth=("prometheus", "wrong"))
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Basic"), (path, wrong.status_code)
        assert https_get(tt, path, pki, auth=("nobody", PASSWORD)).status_code == 401
        assert https_get(tt, path, pki).status_code == 401
        good = https_get(tt, path, pki, auth=("prometheus", PASSWORD))
        assert good.status_code == 200, path
        assert good.headers["Strict-Transport-Security"] == "max-age=31536000" and good.headers["X-Frame-Options"] == "deny"
    # The configured headers are on every answer, refusals and unknown paths too.
    assert https_get(tt, "/nope", pki, auth=("prometheus", PASSWORD)).headers["X-Frame-Options"] == "deny"
    assert https_get(tt, "/metrics", pki).headers["X-Frame-Options"] == "deny"
    assert https_get(tt, "/healthz", pki).status_code == 200
    # Plain HTTP on the TLS port gets nothing useful.
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{tt.port}/metrics", timeout=5).raise_for_status()
    assert PASSWORD not in tt.logs()


@pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="needs Debian's prometheus")
def test_mutual_tls_requires_a_client_certificate_from_the_ca(start_telltale, pki, tmp_path) -> None:
    web = web_config(tmp_path, pki, client_auth="RequireAndVerifyClientCert")
    tt = start_telltale(NO_COLLECTORS, args=["--web.config.file", str(web)], wait=False)
    wait_until(lambda: https_get(tt, "/healthz", pki, client=True).status_code == 200, 15, "Telltale over mutual TLS",
               ignore=(requests.RequestException,))
    assert prometheus_up(tmp_path, tt, {"tls_config": {"ca_file": str(pki.ca_cert), "cert_file": str(pki.client_cert),
                                                       "key_file": str(pki.client_key)}}) == 1
    with pytest.raises(requests.exceptions.SSLError):
        https_get(tt, "/metrics", pki)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https(tt) + "/metrics", verify=str(pki.ca_cert), cert=(str(pki.stranger_cert), str(pki.stranger_key)),
                     timeout=10)


def test_verify_if_given_accepts_no_certificate_but_refuses_a_strangers(start_telltale, pki, tmp_path) -> None:
    web = web_config(tmp_path, pki, client_auth="VerifyClientCertIfGiven")
    tt = start_tls(start_telltale, web, pki)
    assert https_get(tt, "/metrics", pki).status_code == 200
    assert https_get(tt, "/metrics", pki, client=True).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https(tt) + "/metrics", verify=str(pki.ca_cert), cert=(str(pki.stranger_cert), str(pki.stranger_key)),
                     timeout=10)


def test_a_replaced_certificate_is_served_without_a_restart(start_telltale, pki, tmp_path) -> None:
    web = web_config(tmp_path, pki)
    tt = start_tls(start_telltale, web, pki)
    assert served_serial(tt.port, pki) == file_serial(pki.server_cert)
    # A broken replacement is refused and counted; the good certificate stays.
    (tmp_path / "tls.pem").write_text("not a certificate\n")
    wait_until(lambda: "telltale_tls_reload_errors_total 1" in https_get(tt, "/metrics", pki).text, 15,
               "the broken certificate counted")
    assert served_serial(tt.port, pki) == file_serial(pki.server_cert)
    # Replaced the way cert-manager or certbot do it: new files moved into place.
    shutil.copy(pki.rotated_key, tmp_path / "new.key")
    shutil.copy(pki.rotated_cert, tmp_path / "new.pem")
    (tmp_path / "new.key").rename(tmp_path / "tls.key")
    (tmp_path / "new.pem").rename(tmp_path / "tls.pem")
    wait_until(lambda: served_serial(tt.port, pki) == file_serial(pki.rotated_cert), 15, "the rotated certificate served")
    assert https_get(tt, "/metrics", pki).status_code == 200
    assert tt.running


BAD_INPUTS = {
    "wrong hash format": ({"basic_auth_users": {"alice": "$1$notbcrypt"}}, "basic_auth_users.alice"),
    "bcrypt cost too high": ({"basic_auth_users": {"alice": "$2b$32$" + "a" * 53}}, "basic_auth_users.alice"),
    "unknown key": ({"tls_server_config": {"cert_file": "{cert}", "key_file": "{key}", "colour": "red"}},
                    "tls_server_config.colour"),
    "unsupported key": ({"tls_server_config": {"cert_file": "{cert}", "key_file": "{key}", "cipher_suites": ["x"]}},
                        "tls_server_config.cipher_suites"),
    "key of another certificate": ({"tls_server_config": {"cert_file": "{cert}", "key_file": "{otherkey}"}},
                                   "does not match"),
    "unreadable certificate": ({"tls_server_config": {"cert_file": "/nonexistent/cert.pem", "key_file": "{key}"}},
                               "cert_file"),
    "bad client_auth_type": ({"tls_server_config": {"cert_file": "{cert}", "key_file": "{key}", "client_auth_type": "Maybe"}},
                             "tls_server_config.client_auth_type"),
    "verification without a CA": ({"tls_server_config": {"cert_file": "{cert}", "key_file": "{key}",
                                                         "client_auth_type": "RequireAndVerifyClientCert"}},
                                  "tls_server_config.client_ca_file"),
    "a header not allowed": ({"http_server_config": {"headers": {"Server": "x"}}}, "http_server_config.headers.Server"),
    "bad min_version": ({"tls_server_config": {"cert_file": "{cert}", "key_file": "{key}", "min_version": "SSL3"}},
                        "tls_server_config.min_version"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_exit_2_naming_the_key(run_cli, pki, tmp_path, case) -> None:
    content, expected = BAD_INPUTS[case]
    text = json.dumps(content).replace("{cert}", str(pki.server_cert)).replace("{key}", str(pki.server_key)) \
        .replace("{otherkey}", str(pki.rotated_key))
    web = tmp_path / "web.yml"
    web.write_text(text)
    config = tmp_path / "telltale.yml"
    config.write_text(NO_COLLECTORS)
    for args in (["check-config", "--config", str(config), "--web.config.file", str(web)],
                 ["serve", "--config", str(config), "--web.config.file", str(web), "--listen", f"127.0.0.1:{find_free_port()}"]):
        r = run_cli(args, timeout=30)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert expected in r.stderr and str(web) in r.stderr, r.stderr
    assert "BEGIN" not in r.stderr, "no key material in messages"


def test_server_auth_and_bcrypt_users_together_are_refused(run_cli, tmp_path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(json.dumps({"basic_auth_users": {"alice": hashed()}}))
    config = tmp_path / "telltale.yml"
    config.write_text(NO_COLLECTORS + "server: {auth: {bearer_token: t}}\n")
    r = run_cli(["check-config", "--config", str(config), "--web.config.file", str(web)])
    assert r.returncode == 2 and "server.auth" in r.stderr and "basic_auth_users" in r.stderr, r.stderr


def test_plain_http_with_bcrypt_users_and_reload_swaps_them(start_telltale, tmp_path) -> None:
    """No TLS: basic auth alone (behind a TLS-terminating proxy, say). A reload applies new users."""
    web = tmp_path / "web.yml"
    web.write_text(json.dumps({"basic_auth_users": {"alice": hashed("first")}}))
    tt = start_telltale(NO_COLLECTORS, args=["--web.config.file", str(web)])
    assert tt.get("/metrics", auth=("alice", "first")).status_code == 200
    assert tt.get("/metrics", auth=("alice", "second")).status_code == 401
    # Many scrapes with the right password cost one bcrypt check: the rest are answered at once.
    started = time.monotonic()
    for _ in range(20):
        assert tt.get("/metrics", auth=("alice", "first")).status_code == 200
    print(f"20 authenticated scrapes in {time.monotonic() - started:.3f}s")

    web.write_text(json.dumps({"basic_auth_users": {"alice": hashed("second")}}))
    tt.proc.send_signal(__import__("signal").SIGHUP)
    wait_until(lambda: tt.get("/metrics", auth=("alice", "second")).status_code == 200, 10, "the new password accepted")
    assert tt.get("/metrics", auth=("alice", "first")).status_code == 401

    # A broken web configuration on reload changes nothing.
    web.write_text(json.dumps({"basic_auth_users": {"alice": "plaintext"}}))
    tt.proc.send_signal(__import__("signal").SIGHUP)
    wait_until(lambda: "telltale_config_last_reload_successful 0" in tt.get("/metrics", auth=("alice", "second")).text,
               10, "the failed reload reported")
    assert tt.get("/metrics", auth=("alice", "second")).status_code == 200
    token = base64.b64encode(b"alice:second").decode()
    assert token not in tt.logs() and "second" not in tt.stderr()
