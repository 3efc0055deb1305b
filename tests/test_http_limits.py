"""Regressions of the hardening issue for the HTTP server: a connection cap, idle and
request-head timeouts, HEAD on every GET route, HTTP/1.0, bounded Accept parsing, a
`listen` address checked as `serve` binds it, and `/readyz` that names collectors only to
whoever may see `/`."""

from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest
import requests

from helpers import closed_by_server, samples, value, wait_until

NO_COLLECTORS = "collectors: {host: {enabled: false}, process: {enabled: true, interval: 1s, timeout: 1s}}"


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


def read_response(sock: socket.socket, head_only: bool = False) -> tuple[str, dict[str, str], bytes]:
    """One response framed by Content-Length: status line, headers (lower-case names), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a complete head: {data[:200]!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status, *lines = head.decode().split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    while not head_only and len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "closed before the whole body"
        body += chunk
    return status, headers, body


def test_http_1_0_without_keep_alive_is_answered_and_closed(start_telltale):
    """Through the event-loop fast path (/metrics) and the router (the others) alike."""
    tt = start_telltale(NO_COLLECTORS)
    port = int(tt.url.rsplit(":", 1)[1])
    for method, path in (("GET", "/metrics"), ("GET", "/healthz"), ("HEAD", "/metrics"), ("GET", "/nowhere")):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(f"{method} {path} HTTP/1.0\r\n\r\n".encode())
            status, headers, body = read_response(sock, head_only=method == "HEAD")
            assert status.startswith("HTTP/1.0 "), (path, status)
            assert int(status.split()[1]) == (404 if path == "/nowhere" else 200), (path, status)
            assert headers.get("connection") == "close" and "transfer-encoding" not in headers, (path, headers)
            assert method == "GET" or (body == b"" and int(headers["content-length"]) > 0), (path, headers, body)
            assert closed_by_server(sock, 5), f"{method} {path}: the connection stayed open after an HTTP/1.0 response"


def test_http_1_0_with_keep_alive_keeps_the_connection(start_telltale):
    tt = start_telltale(NO_COLLECTORS)
    port = int(tt.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for path in ("/metrics", "/healthz", "/metrics"):
            sock.sendall(f"GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode())
            status, headers, body = read_response(sock)
            assert status.startswith("HTTP/1.0 200"), (path, status)
            assert headers.get("connection") == "keep-alive", (path, headers)
            assert body
        # The last request of the connection, without keep-alive, closes it.
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        status, headers, body = read_response(sock)
        assert body == b"ok\n" and headers.get("connection") == "close"
        assert closed_by_server(sock, 5)


def test_a_huge_accept_header_is_cheap_and_correct(start_telltale):
    tt = start_telltale(NO_COLLECTORS)
    accept = "application/openmetrics-text;version=1.0.0;q=0.9," + ",".join(["x/y;q=0.1"] * 6000)
    assert len(accept) > 60_000
    started = time.monotonic()
    for _ in range(20):
        r = requests.get(tt.url + "/metrics", headers={"Accept": accept}, timeout=5)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("listen", ["[::1:9839", "::1:9839", "[]:9839", "[not-v6]:9839", "bad_host:9839",
                                    "999.1.1.1:9839", "1.2.3:9839", "-dash:9839", "localhost:0"])
def test_listen_is_checked_as_serve_binds_it(run_cli, tmp_path, listen):
    """These passed check-config, then serve failed with a raw socket error."""
    config = tmp_path / "listen.yml"
    config.write_text(f'server: {{listen: "{listen}"}}\n')
    r = run_cli(["check-config", "--config", config])
    assert r.returncode == 2 and "server.listen: expected" in r.stderr and listen in r.stderr, r.stderr
    r = run_cli(["serve", f"--listen={listen}"], timeout=20)  # one argument: "-dash…" is no option
    assert r.returncode == 2 and "--listen: expected" in r.stderr, r.stderr


@pytest.mark.parametrize("listen", ["127.0.0.1:9839", "[::1]:9839", ":9839", "localhost:9839", "metrics-1.example.com:9839"])
def test_listen_accepts_what_serve_binds(run_cli, tmp_path, listen):
    config = tmp_path / "listen.yml"
    config.write_text(f'server: {{listen: "{listen}"}}\n')
    r = run_cli(["check-config", "--config", config])
    assert r.returncode == 0, r.stderr


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
