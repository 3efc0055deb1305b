"""A local fake of the chat webhooks Telltale's alerting posts to (Slack, Discord, Teams
Workflows, generic Alertmanager-style webhooks).

Stdlib only: a threaded ``http.server`` on 127.0.0.1, on a free port the OS picks, run in
a background thread of the test process so tests inspect what arrived directly.

Every request is recorded (method, path, parsed query, lowercased headers, raw and JSON
body, arrival time both as ``time.time()`` and ``time.monotonic()``, and what was answered).

How a path answers is set per exact path (the query string is ignored):

  ok            200 (a Discord-like message object as JSON when the query has wait=true,
                "ok" otherwise) — the default for every path
  no_content    204
  rate_limited  429 with ``Retry-After: N``; on paths containing "discord" also the JSON
                body ``{"retry_after": N, "global": false, "message": ...}`` as Discord sends
  error         500
  not_found     404 (what Slack/Discord/Teams answer for a deleted webhook)
  hang          read the request, then sleep ``hang_seconds`` (or until the fake stops)
                and close the connection without answering

``set_mode(path, mode, times=N)`` applies the mode to the next N requests of that path
only, then the path is back to ``ok``; without ``times`` until ``set_mode(path, "ok")`` or
``reset(path)``.

Use::

    with ChatReceiver() as rx:
        url = rx.url_for("/hooks/slack/SECRET")
        rx.set_mode("/hooks/slack/SECRET", "rate_limited", retry_after=2, times=1)
        ...
        rx.accepted("/hooks/slack/SECRET")      # requests answered 2xx
        rx.wait_for(lambda r: len(r.accepted()) >= 2, timeout=10)

or standalone: ``python tests/fakes/chat_receiver.py`` (prints the URL, logs requests).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

MODES = ("ok", "no_content", "rate_limited", "error", "not_found", "hang")


@dataclass
class Recorded:
    """One request as it arrived, and what the fake answered (``status``: an int, or
    ``"hang"`` for a request left without an answer)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    time: float
    mono: float
    status: int | str | None = None
    json: Any = None

    @property
    def accepted(self) -> bool:
        return isinstance(self.status, int) and 200 <= self.status < 300

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class _Rule:
    mode: str = "ok"
    times: int | None = None  # None: until changed
    retry_after: float = 2
    hang_seconds: float = 5


@dataclass
class _Shared:
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: list[Recorded] = field(default_factory=list)
    rules: dict[str, _Rule] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition | None = None


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so that ``Expect: 100-continue`` (libcurl sends it for larger POST bodies)
    # is answered at once instead of costing the client a one-second wait.
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def _handle(self) -> None:
        shared = self.server.shared
        arrived, arrived_mono = time.time(), time.monotonic()
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            parsed_json = json.loads(body) if body else None
        except ValueError:
            parsed_json = None
        record = Recorded(
            method=self.command,
            path=parsed.path,
            query=urllib.parse.parse_qs(parsed.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            time=arrived,
            mono=arrived_mono,
            json=parsed_json,
        )
        with shared.lock:
            rule = shared.rules.get(parsed.path) or _Rule()
            mode, retry_after, hang_seconds = rule.mode, rule.retry_after, rule.hang_seconds
            if rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    shared.rules.pop(parsed.path, None)
            shared.records.append(record)

        if mode == "hang":
            record.status = "hang"
            self._notify()
            shared.stopping.wait(hang_seconds)
            self.close_connection = True
            return

        headers: dict[str, str] = {}
        if mode == "ok":
            status = 200
            if record.query.get("wait") == ["true"]:
                payload: bytes = json.dumps({"id": str(len(shared.records)), "type": 0, "content": ""}).encode()
                headers["Content-Type"] = "application/json"
            else:
                payload = b"ok"
                headers["Content-Type"] = "text/plain"
        elif mode == "no_content":
            status, payload = 204, b""
        elif mode == "rate_limited":
            status = 429
            headers["Retry-After"] = _number(retry_after)
            if "discord" in parsed.path:
                payload = json.dumps({"message": "You are being rate limited.", "retry_after": retry_after,
                                      "global": False}).encode()
                headers["Content-Type"] = "application/json"
            else:
                payload = b"rate_limited"
                headers["Content-Type"] = "text/plain"
        elif mode == "error":
            status, payload = 500, b"internal error"
        elif mode == "not_found":
            status, payload = 404, b"no_service"
        else:  # pragma: no cover - set_mode validates
            status, payload = 500, f"unknown mode {mode}".encode()
        record.status = status
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Connection", "close")
            if status != 204:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if status != 204 and payload:
                self.wfile.write(payload)
        except OSError:
            pass  # the client gave up (timeout); the request stays recorded with its status
        self.close_connection = True
        self._notify()

    def _notify(self) -> None:
        cond = self.server.shared.changed
        if cond is not None:
            with cond:
                cond.notify_all()

    do_POST = _handle
    do_GET = _handle
    do_PUT = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, shared: _Shared, verbose: bool) -> None:
        self.shared = shared
        self.verbose = verbose
        super().__init__(("127.0.0.1", 0), _Handler)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class ChatReceiver:
    """The fake, serving from a daemon thread once started."""

    def __init__(self, verbose: bool = False) -> None:
        self._shared = _Shared()
        self._shared.changed = threading.Condition()
        self._server = _Server(self._shared, verbose)
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> "ChatReceiver":
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="chat-receiver", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._shared.stopping.set()  # releases hanging handlers
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "ChatReceiver":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- addresses
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, path: str) -> str:
        return self.url + path

    # -- behaviour
    def set_mode(self, path: str, mode: str, *, times: int | None = None, retry_after: float = 2,
                 hang_seconds: float = 5) -> None:
        """How ``path`` answers from now on (``times``: for that many requests only)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        with self._shared.lock:
            if mode == "ok" and times is None:
                self._shared.rules.pop(path, None)
            else:
                self._shared.rules[path] = _Rule(mode=mode, times=times, retry_after=retry_after,
                                                 hang_seconds=hang_seconds)

    def reset(self, path: str | None = None) -> None:
        """Back to normal (200) for one path, or every path."""
        with self._shared.lock:
            if path is None:
                self._shared.rules.clear()
            else:
                self._shared.rules.pop(path, None)

    # -- inspection
    def requests(self, path: str | None = None) -> list[Recorded]:
        """Requests received so far (optionally of one exact path), in arrival order."""
        with self._shared.lock:
            records = list(self._shared.records)
        return [r for r in records if path is None or r.path == path]

    def accepted(self, path: str | None = None) -> list[Recorded]:
        """Requests answered 2xx: the messages that reached the chat."""
        return [r for r in self.requests(path) if r.accepted]

    def clear(self) -> None:
        with self._shared.lock:
            self._shared.records.clear()

    def wait_for(self, predicate: Callable[["ChatReceiver"], Any], timeout: float = 10, what: str = "") -> Any:
        """Wait until ``predicate(self)`` is truthy; returns its value, or raises
        AssertionError (listing the requests received) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        cond = self._shared.changed
        assert cond is not None
        while True:
            value = predicate(self)
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                summary = "\n".join(f"  {r.time:.3f} {r.method} {r.path} -> {r.status} "
                                    f"key={r.idempotency_key}" for r in self.requests())
                raise AssertionError(f"chat receiver: timed out after {timeout}s waiting for "
                                     f"{what or predicate}; requests:\n{summary or '  (none)'}")
            with cond:
                cond.wait(min(remaining, 0.1))


if __name__ == "__main__":  # pragma: no cover - manual use
    rx = ChatReceiver(verbose=True).start()
    print(rx.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        rx.stop()
