"""Regressions of the hardening issue for the HTTP server: a connection cap, idle and
request-head timeouts, HEAD on every GET route, HTTP/1.0, bounded Accept parsing, a
`listen` address checked as `serve` binds it, and `/readyz` that names collectors only to
whoever may see `/`."""

from __future__ import annotations

import http.client
import socket
import threading
import time

import requests

from helpers import samples, value, wait_until

NO_COLLECTORS = "collectors: {host: {enabled: false}, process: {enabled: true, interval: 1s, timeout: 1s}}"


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except (TimeoutError, socket.timeout):
        return False


def test_over_the_connection_cap_new_connections_are_refused_and_established_ones_go_on(start_telltale):
    tt = start_telltale(f"server: {{max_connections: 5}}\n{NO_COLLECTORS}")
    port = int(tt.url.rsplit(":", 1)[1])
    scraper = requests.Session()
    assert scraper.get(tt.url + "/metrics", timeout=5).status_code == 200  # established before the flood
    flood = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(10)]
    try:
        refused = sum(closed_by_server(s, 3) for s in flood)
        assert refused >= 6, f"only {refused} of 10 connections over the cap of 5 were closed"
        for _ in range(5):
            assert scraper.get(tt.url + "/metrics", timeout=5).status_code == 200
        table = samples(scraper.get(tt.url + "/metrics", timeout=5).text)
    finally:
        for s in flood:
            s.close()
    wait_until(lambda: requests.get(tt.url + "/healthz", timeout=2).status_code == 200, 10, "fresh connections served again")
    wait_until(lambda: (value(samples(tt.metrics()), "telltale_http_connections_closed_total", reason="over_limit") or 0) >= 6,
               10, "refusals counted", )
    assert table is not None


def test_idle_connections_are_closed(start_telltale):
    tt = start_telltale(f"server: {{idle_timeout: 1s}}\n{NO_COLLECTORS}")
    port = int(tt.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
        assert closed_by_server(idle, 10)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/healthz")
    assert connection.getresponse().read() == b"ok\n"
    assert closed_by_server(connection.sock, 10), "a kept-alive connection idle past the timeout stays open"


def test_a_slow_request_head_is_cut_off(start_telltale):
    """Slowloris: a head trickling in a byte at a time would hold the connection for ever."""
    tt = start_telltale(f"server: {{header_timeout: 1s, idle_timeout: 30s}}\n{NO_COLLECTORS}")
    port = int(tt.url.rsplit(":", 1)[1])
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40
    with socket.create_connection(("127.0.0.1", port), timeout=5) as slow:
        started = time.monotonic()
        closed = False
        for byte in head:
            try:
                slow.send(bytes([byte]))
            except OSError:
                closed = True
                break
            if closed_by_server(slow, 0.25):
                closed = True
                break
        assert closed, "the slow head was never cut off"
        assert time.monotonic() - started < 10
    assert requests.get(tt.url + "/metrics", timeout=5).status_code == 200


def test_a_body_announced_and_never_sent_is_cut_off(start_telltale):
    """Review finding: a complete head with `Content-Length: 1` and no body stopped every
    timer, so a few hundred such sockets held every slot under the cap for ever."""
    tt = start_telltale(f"server: {{max_connections: 4, header_timeout: 1s, idle_timeout: 30s}}\n{NO_COLLECTORS}")
    port = int(tt.url.rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
    try:
        for sock in held:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n")
        assert all(closed_by_server(sock, 10) for sock in held), "a request without its body held its connection"
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: requests.get(tt.url + "/metrics", timeout=2).status_code == 200, 10, "scrapes served again")


def test_head_answers_every_get_route(start_telltale):
    tt = start_telltale(NO_COLLECTORS)
    wait_until(lambda: requests.get(tt.url + "/readyz", timeout=2).status_code == 200, 10, "ready")
    port = int(tt.url.rsplit(":", 1)[1])
    for path in ("/metrics", "/healthz", "/readyz", "/"):
        get = requests.get(tt.url + path, timeout=5)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("HEAD", path)
        response = connection.getresponse()
        assert response.status == get.status_code == 200, (path, response.status)
        length = int(response.getheader("Content-Length"))
        assert response.read() == b""
        if path != "/metrics":  # /metrics changes between the two requests
            assert length == len(get.content), (path, length, len(get.content))
        assert response.getheader("Content-Type") == get.headers["Content-Type"]
        connection.close()


def test_http_1_0_without_keep_alive_is_answered_and_closed(start_telltale):
    tt = start_telltale(NO_COLLECTORS)
    port = int(tt.url.rsplit(":", 1)[1])
    for path in ("/metrics", "/healthz"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            received = b""
            sock.settimeout(5)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
            assert received.startswith(b"HTTP/1.") and b" 200 " in received.split(b"\r\n", 1)[0], received[:200]
            assert b"transfer-encoding: chunked" not in received.lower()


def test_a_huge_accept_header_is_cheap_and_correct(start_telltale):
    tt = start_telltale(NO_COLLECTORS)
    accept = "application/openmetrics-text;version=1.0.0;q=0.9," + ",".join(["x/y;q=0.1"] * 6000)
    assert len(accept) > 60_000
    started = time.monotonic()
    for _ in range(20):
        r = requests.get(tt.url + "/metrics", headers={"Accept": accept}, timeout=5)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert time.monotonic() - started < 10


def test_listen_is_checked_as_serve_binds_it(run_cli, tmp_path):
    config = tmp_path / "listen.yml"
    config.write_text('server: {listen: "[::1:9839"}\n')
    r = run_cli(["check-config", "--config", config])
    assert r.returncode == 2 and "server.listen" in r.stderr, r.stderr
    r = run_cli(["serve", "--listen", "[::1:9839"], timeout=20)
    assert r.returncode == 2 and "--listen" in r.stderr, r.stderr


def test_readyz_names_collectors_only_with_credentials(start_telltale):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts, never answers: the provider's first run stays pending
    port = silent.getsockname()[1]
    try:
        tt = start_telltale(f"""\
server: {{auth: {{bearer_token: "readyz-token-123"}}}}
collectors: {{host: {{enabled: false}}, process: {{enabled: false}}}}
providers:
  - {{name: secretive-provider, type: json, url: "http://127.0.0.1:{port}/b", interval: 30s, timeout: 20s,
      balances: [{{path: balance}}]}}
""")
        anonymous = requests.get(tt.url + "/readyz", timeout=5)
        assert anonymous.status_code == 503 and "secretive-provider" not in anonymous.text, anonymous.text
        authorized = requests.get(tt.url + "/readyz", headers={"Authorization": "Bearer readyz-token-123"}, timeout=5)
        assert authorized.status_code == 503 and "secretive-provider" in authorized.text, authorized.text
    finally:
        silent.close()
