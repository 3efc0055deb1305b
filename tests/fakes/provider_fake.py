"""A local fake of the third-party balance APIs Telltale's providers poll.

Stdlib only: a threaded ``http.server`` on 127.0.0.1, on a free port the OS picks.

Endpoints (any path prefix is accepted, so one fake can stand for many providers:
``base_url: http://127.0.0.1:PORT/k7`` makes the Kinguin preset ask ``/k7/esa/api/v1/balance``):

  GET  .../v1/balance           NOWPayments: needs header ``x-api-key: <np_key>``
  GET  .../esa/api/v1/balance   Kinguin: needs header ``X-Api-Key: <kg_key>``
  any  <path set by set_route>  a canned response (generic JSON providers, probes)
  POST /_mode                   control: {"mode": "...", "path": "/optional/exact/path"}
                                ({"mode": null, "path": ...} drops a per-path override)
  POST /_route                  control: {"path": ..., "body": "text" | "json": any, "status": 200}
  POST /_balances               control: {"np": {"btc": {"amount": 1, ...}}, "kg": 12.5}
  POST /_clear                  control: forget the recorded requests
  GET  /_requests               control: the recorded requests, as JSON (bodies as latin-1)

Modes (set_mode(mode) sets every provider endpoint's; set_mode(mode, path=...) one exact
path's, routes included — routes ignore the global mode):

  ok              the documented success body (string_numbers: amounts as "12.50")
  unauthorized    401 with the provider's error body
  unauthorized_echo  401 whose message quotes the key it was sent (redaction check)
  rate_limited    429 with ``Retry-After: 2``
  server_error    500
  hang            sleeps 5 s (or until the fake stops) before answering
  truncated       200, a JSON body cut in the middle (Content-Length matches the cut body)
  html            200, an HTML page
  huge            200, a 50 MB JSON body
  missing_field   200, valid JSON without the amount field
  bad_value       200, the amount is "abc"
  string_numbers  200, every number given as a string ("12.50")

A wrong or missing API key always gets the 401 body, whatever the mode.

Every request is recorded (monotonic time, method, path, lowercased headers, body,
and the status answered) — ``requests(path_suffix=...)`` filters them.

Use in-process::

    with ProviderFake(np_key="k1", kg_key="k2") as fake:
        fake.url              # http://127.0.0.1:PORT
        fake.set_mode("hang")                         # every provider path
        fake.set_mode("hang", path="/k7/esa/api/v1/balance")   # one path only
        fake.set_route("/health", body="ok", status=200)

or in a process of its own, with the same API (``FakeProcess(np_key, kg_key)``), when a test
measures latency; standalone, ``python tests/fakes/provider_fake.py --np-key K --kg-key K``
prints the URL on its first line, then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = (
    "ok", "unauthorized", "unauthorized_echo", "rate_limited", "server_error", "hang",
    "truncated", "html", "huge", "missing_field", "bad_value", "string_numbers",
)

HANG_SECONDS = 5.0
HUGE_BYTES = 50 * 1024 * 1024
NP_SUFFIX = "/v1/balance"
KG_SUFFIX = "/esa/api/v1/balance"

# Documented NOWPayments 401 body.
NP_UNAUTHORIZED = {"status": False, "statusCode": 401, "code": "INVALID_API_KEY", "message": "Invalid api key"}
# Kinguin answers problem+json style errors.
KG_UNAUTHORIZED = {"kind": "Authorization", "status": 401, "title": "Unauthorized", "detail": "Invalid API key"}

HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
             b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>\n")


@dataclass
class RecordedRequest:
    at: float  # time.monotonic() when the request line was read
    wall: float  # time.time() at the same moment
    method: str
    path: str
    headers: dict[str, str]  # names lowercased
    body: bytes
    status: int | None = None  # what the fake answered (None: no answer yet / aborted)
    mode: str = ""
    connection: int = 0  # the client's port: requests sharing it came over one connection


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class ProviderFake:
    def __init__(self, np_key: str = "np-test-key", kg_key: str = "kg-test-key",
                 np_balances: dict[str, dict[str, Any]] | None = None, kg_balance: float = 12.5,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.np_key = np_key
        self.kg_key = kg_key
        # {"btc": {"amount": 0.5, "pendingAmount": "0.25"}, ...} (the documented shape)
        self.np_balances = np_balances if np_balances is not None else {
            "btc": {"amount": 0.5, "pendingAmount": "0.25"},
            "eth": {"amount": 2, "pendingAmount": 0},
        }
        self.kg_balance = kg_balance
        self.mode = "ok"
        self.path_modes: dict[str, str] = {}
        self.routes: dict[str, Route] = {}
        self.records: list[RecordedRequest] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        fake = self

        class Handler(_Handler):
            owner = fake

        class Server(ThreadingHTTPServer):
            # Many providers polled at the same interval connect at once: the default
            # listen backlog of 5 drops SYNs, which look like a 1 s stall to the client.
            request_queue_size = 256

        self.handler = Handler
        self.server = Server((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="provider-fake", daemon=True)

    # -- lifecycle
    def start(self) -> "ProviderFake":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # wakes hanging handlers
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "ProviderFake":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control
    def set_mode(self, mode: str | None, path: str | None = None) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        with self.lock:
            if path is None:
                self.mode = mode or "ok"
            elif mode is None:
                self.path_modes.pop(path, None)
            else:
                self.path_modes[path] = mode

    def set_route(self, path: str, body: bytes | str | Any = b"", status: int = 200,
                  headers: dict[str, str] | None = None) -> None:
        """A canned answer at ``path`` (exact, query string ignored). A non-bytes, non-str
        body is sent as JSON."""
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        with self.lock:
            self.routes[path] = Route(status, body, dict(headers or {}))

    def set_balances(self, np: dict[str, dict[str, Any]] | None = None, kg: Any = None) -> None:
        """What the "ok" bodies report from now on (None leaves one unchanged)."""
        with self.lock:
            if np is not None:
                self.np_balances = np
            if kg is not None:
                self.kg_balance = kg

    def set_idle_timeout(self, seconds: float | None, farewell: bool = False) -> None:
        """Connections made from now on are closed once idle this long (None: kept until
        the client closes them), as servers drop idle keep-alives: without a word, or with
        farewell after a 408 answer no request asked for, as some servers do."""
        self.handler.timeout = seconds
        self.handler.farewell = farewell

    # -- inspection
    def requests(self, path_suffix: str | None = None, since: float | None = None) -> list[RecordedRequest]:
        with self.lock:
            records = list(self.records)
        return [r for r in records
                if (path_suffix is None or r.path.endswith(path_suffix)) and (since is None or r.at >= since)]

    def clear(self) -> None:
        with self.lock:
            self.records.clear()


class _Handler(BaseHTTPRequestHandler):
    owner: ProviderFake
    protocol_version = "HTTP/1.1"
    server_version = "provider-fake/1"

    farewell = False  # see ProviderFake.set_idle_timeout

    def log_message(self, format: str, *args) -> None:  # quiet
        pass

    def handle_one_request(self) -> None:
        if self.farewell and self.timeout is not None:
            try:
                self.rfile.peek(1)  # waits for the next request, at most self.timeout
            except TimeoutError:
                self.wfile.write(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                self.close_connection = True
                return
        super().handle_one_request()

    # Every method goes through one place.
    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def _handle(self) -> None:
        fake = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        path = self.path.split("?", 1)[0]
        if path.startswith("/_"):
            return self._control(path, body)
        record = RecordedRequest(time.monotonic(), time.time(), self.command, path,
                                 {k.lower(): v for k, v in self.headers.items()}, body,
                                 connection=self.client_address[1])
        with fake.lock:
            route = fake.routes.get(path)
            # The global mode is for the provider endpoints; routes only follow their own.
            record.mode = fake.path_modes.get(path, "ok" if route is not None else fake.mode)
            fake.records.append(record)
        try:
            if path.endswith(KG_SUFFIX) and route is None:
                status = self._provider(record, "kinguin")
            elif path.endswith(NP_SUFFIX) and route is None:
                status = self._provider(record, "nowpayments")
            elif route is not None:
                status = self._route(record, route)
            else:
                status = self._send(404, {"error": "not found"})
            record.status = status
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout, size cap): that is the point of some modes

    # -- control endpoints
    def _control(self, path: str, body: bytes) -> None:
        fake = self.owner
        try:
            request = json.loads(body or b"{}") if self.command == "POST" else {}
            if path == "/_mode" and self.command == "POST":
                fake.set_mode(request.get("mode"), request.get("path"))
            elif path == "/_route" and self.command == "POST":
                content = request["json"] if "json" in request else request.get("body", "")
                fake.set_route(request["path"], content, request.get("status", 200), request.get("headers"))
            elif path == "/_balances" and self.command == "POST":
                fake.set_balances(request.get("np"), request.get("kg"))
            elif path == "/_idle_timeout" and self.command == "POST":
                fake.set_idle_timeout(request.get("seconds"), bool(request.get("farewell")))
            elif path == "/_clear" and self.command == "POST":
                fake.clear()
            elif path == "/_requests":
                self._send(200, [{"at": r.at, "wall": r.wall, "method": r.method, "path": r.path,
                                  "headers": r.headers, "body": r.body.decode("latin-1"), "status": r.status,
                                  "mode": r.mode, "connection": r.connection} for r in fake.requests()])
                return
            else:
                self._send(404, {"error": "unknown control endpoint"})
                return
        except (ValueError, AttributeError, KeyError, TypeError) as e:
            self._send(400, {"error": f"{type(e).__name__}: {e}"})
            return
        self._send(200, {"mode": fake.mode, "paths": fake.path_modes})

    # -- responses
    def _send(self, status: int, body: bytes | Any, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> int:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(status)
        headers = dict(headers or {})
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def _hang(self) -> bool:
        """Sleeps HANG_SECONDS; False when the fake is stopping meanwhile."""
        return not self.owner.stopping.wait(HANG_SECONDS)

    def _send_huge(self, prefix: bytes, suffix: bytes) -> int:
        pad = HUGE_BYTES - len(prefix) - len(suffix)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(HUGE_BYTES))
        self.end_headers()
        self.wfile.write(prefix)
        chunk = b"x" * (1 << 20)
        while pad > 0:
            n = min(pad, len(chunk))
            self.wfile.write(chunk[:n])
            pad -= n
        self.wfile.write(suffix)
        return 200

    def _provider(self, record: RecordedRequest, kind: str) -> int:
        fake = self.owner
        header, key = ("x-api-key", fake.np_key) if kind == "nowpayments" else ("x-api-key", fake.kg_key)
        error_body = NP_UNAUTHORIZED if kind == "nowpayments" else KG_UNAUTHORIZED
        sent_key = record.headers.get(header)
        mode = record.mode
        if sent_key != key or mode == "unauthorized":
            return self._send(401, error_body)
        if mode == "unauthorized_echo":
            echoed = dict(error_body)
            echoed["message" if kind == "nowpayments" else "detail"] = f"Invalid api key {sent_key}"
            if kind == "kinguin":
                echoed["error"] = f"key {sent_key} is revoked"
            return self._send(401, echoed)
        if mode == "rate_limited":
            return self._send(429, {"message": "Too many requests"}, {"Retry-After": "2"})
        if mode == "server_error":
            return self._send(500, {"message": "Internal server error"})
        if mode == "hang":
            if not self._hang():
                return 0
            mode = "ok"
        if mode == "html":
            return self._send(200, HTML_PAGE, content_type="text/html; charset=utf-8")
        with fake.lock:
            np_balances, kg_balance = fake.np_balances, fake.kg_balance
        if kind == "nowpayments":
            doc: Any = {c: dict(v) for c, v in np_balances.items()}
            if mode == "missing_field":
                doc = {c: {k: v for k, v in b.items() if k != "amount"} for c, b in doc.items()}
            elif mode == "bad_value":
                first = next(iter(doc))
                doc[first]["amount"] = "abc"
            elif mode == "string_numbers":
                doc = {c: {k: _as_decimal_string(v) for k, v in b.items()} for c, b in doc.items()}
        else:
            doc = {"balance": kg_balance}
            if mode == "missing_field":
                doc = {"currency": "EUR"}
            elif mode == "bad_value":
                doc = {"balance": "abc"}
            elif mode == "string_numbers":
                doc = {"balance": _as_decimal_string(kg_balance)}
        body = json.dumps(doc).encode()
        if mode == "truncated":
            return self._send(200, body[: len(body) // 2])
        if mode == "huge":
            return self._send_huge(body[:-1] + b', "padding": "', b'"}')
        return self._send(200, body)

    def _route(self, record: RecordedRequest, route: Route) -> int:
        mode = record.mode
        if mode in ("unauthorized", "unauthorized_echo"):
            return self._send(401, {"error": "unauthorized"})
        if mode == "rate_limited":
            return self._send(429, {"error": "slow down"}, {"Retry-After": "2"})
        if mode == "server_error":
            return self._send(500, {"error": "internal"})
        if mode == "hang" and not self._hang():
            return 0
        if mode == "html":
            return self._send(200, HTML_PAGE, content_type="text/html; charset=utf-8")
        if mode == "truncated":
            return self._send(route.status, route.body[: len(route.body) // 2], route.headers)
        if mode == "huge":
            return self._send_huge(b'{"padding": "', b'"}')
        return self._send(route.status, route.body, route.headers, content_type="text/plain; charset=utf-8")


class FakeProcess:
    """The same fake in a process of its own, driven over its control endpoints, with the
    in-process API (set_mode, set_route, set_balances, requests, url, stop). Use it when the
    test measures latency: the fake's request handling then does not share the test's GIL
    (a 50 MB body or 50 providers' requests would otherwise slow the test's own HTTP client)."""

    def __init__(self, np_key: str = "np-test-key", kg_key: str = "kg-test-key") -> None:
        import subprocess
        import sys

        self._requests_lib = __import__("requests")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "FAKE_NP_KEY": np_key, "FAKE_KG_KEY": kg_key})
        self.url = (self.proc.stdout.readline() or "").strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"provider_fake.py printed {self.url!r} instead of its URL")

    def __enter__(self) -> "FakeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _post(self, endpoint: str, payload: dict) -> None:
        self._requests_lib.post(self.url + endpoint, json=payload, timeout=10).raise_for_status()

    def set_mode(self, mode: str | None, path: str | None = None) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self._post("/_mode", {"mode": mode, "path": path})

    def set_route(self, path: str, body: bytes | str | Any = b"", status: int = 200,
                  headers: dict[str, str] | None = None) -> None:
        payload: dict[str, Any] = {"path": path, "status": status, "headers": headers}
        if isinstance(body, bytes):
            payload["body"] = body.decode()
        elif isinstance(body, str):
            payload["body"] = body
        else:
            payload["json"] = body
        self._post("/_route", payload)

    def set_balances(self, np: dict[str, dict[str, Any]] | None = None, kg: Any = None) -> None:
        self._post("/_balances", {"np": np, "kg": kg})

    def set_idle_timeout(self, seconds: float | None, farewell: bool = False) -> None:
        self._post("/_idle_timeout", {"seconds": seconds, "farewell": farewell})

    def clear(self) -> None:
        self._post("/_clear", {})

    def requests(self, path_suffix: str | None = None, since: float | None = None) -> list[RecordedRequest]:
        r = self._requests_lib.get(self.url + "/_requests", timeout=10)
        r.raise_for_status()
        records = []
        for x in r.json():
            record = RecordedRequest(x["at"], x["wall"], x["method"], x["path"], x["headers"],
                                     x["body"].encode("latin-1"), x["status"], x["mode"], x["connection"])
            if (path_suffix is None or record.path.endswith(path_suffix)) and (since is None or record.at >= since):
                records.append(record)
        return records

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def _as_decimal_string(value: Any) -> Any:
    """12.5 -> "12.50" (two decimals, as payment APIs like to print money)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value
    return f"{float(value):.2f}"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--np-key", default=os.environ.get("FAKE_NP_KEY", "np-test-key"),
                        help="default: $FAKE_NP_KEY (keeps the key out of ps)")
    parser.add_argument("--kg-key", default=os.environ.get("FAKE_KG_KEY", "kg-test-key"),
                        help="default: $FAKE_KG_KEY")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", default="ok", choices=MODES)
    options = parser.parse_args()
    fake = ProviderFake(options.np_key, options.kg_key, port=options.port)
    fake.set_mode(options.mode)
    fake.start()
    print(fake.url, flush=True)

    def on_sigterm(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while fake.thread.is_alive():
            fake.thread.join(0.5)
    except KeyboardInterrupt:
        fake.stop()
