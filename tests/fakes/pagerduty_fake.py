"""A local fake of PagerDuty's Events API v2 (``POST /v2/enqueue``), answering as the
documentation says the real one does:

  202  ``{"status": "success", "message": "Event processed", "dedup_key": ...}`` for a
       valid event (the dedup_key is the one sent, or a new one for a trigger without)
  400  ``{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}``
       when the event breaks the documented rules: a 32-character ``routing_key``;
       ``event_action`` trigger, acknowledge or resolve; a ``dedup_key`` of at most 255
       characters, required to acknowledge or resolve; for a trigger a ``payload`` with
       ``summary`` (at most 1024 characters), ``source`` and ``severity`` (critical, error,
       warning or info)
  429  ``{"status": "throttle event", ...}`` while ``throttle(times=N)`` is in force
  500  while ``fail(times=N)`` is in force

Stdlib only, on 127.0.0.1 and a port the OS picks, in a background thread; every request
is recorded (path, JSON body, status answered). Use::

    with PagerDutyFake() as pd:
        endpoint = pd.endpoint            # http://127.0.0.1:PORT/v2/enqueue
        pd.throttle(times=1)
        pd.wait_for(lambda events: len(events) >= 2, timeout=10)
        pd.accepted()                     # events answered 202
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")


@dataclass
class Event:
    """One request as it arrived and what the fake answered."""

    path: str
    body: Any
    status: int
    time: float

    @property
    def accepted(self) -> bool:
        return self.status == 202


def problems(event: Any) -> list[str]:
    """The documented validation rules an event breaks (empty: valid)."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is required to acknowledge or resolve")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or not an object")
        else:
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary or len(summary) > 1024:
                errors.append("'payload.summary' is missing or longer than 1024 characters")
            if not isinstance(payload.get("source"), str) or not payload["source"]:
                errors.append("'payload.source' is missing")
            if payload.get("severity") not in SEVERITIES:
                errors.append("'payload.severity' must be one of critical, error, warning, info")
    return errors


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        status, answer = fake._answer(self.path, body)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: "PagerDutyFake") -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class PagerDutyFake:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._events: list[Event] = []
        self._throttled = 0
        self._failing = 0
        self._server = _Server(self)
        self._thread: threading.Thread | None = None

    def _answer(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if path != "/v2/enqueue":
                status, answer = 404, {"status": "not found"}
            elif self._throttled > 0:
                self._throttled -= 1
                status, answer = 429, {"status": "throttle event",
                                       "message": "Requests for this service are arriving too quickly. Please retry later."}
            elif self._failing > 0:
                self._failing -= 1
                status, answer = 500, {"status": "error"}
            elif errors := problems(body):
                status, answer = 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
            else:
                dedup = body.get("dedup_key") or uuid.uuid4().hex
                status, answer = 202, {"status": "success", "message": "Event processed", "dedup_key": dedup}
            self._events.append(Event(path, body, status, time.time()))
            self._lock.notify_all()
        return status, answer

    # -- lifecycle
    def start(self) -> "PagerDutyFake":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="pagerduty-fake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> "PagerDutyFake":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v2/enqueue"

    # -- behaviour
    def throttle(self, times: int) -> None:
        """Answer the next ``times`` requests 429."""
        with self._lock:
            self._throttled = times

    def fail(self, times: int) -> None:
        """Answer the next ``times`` requests 500."""
        with self._lock:
            self._failing = times

    # -- inspection
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def accepted(self) -> list[Event]:
        return [e for e in self.events() if e.accepted]

    def wait_for(self, predicate: Callable[[list[Event]], Any], timeout: float = 10, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                value = predicate(list(self._events))
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = "\n".join(f"  {e.status} {json.dumps(e.body)[:300]}" for e in self._events)
                    raise AssertionError(f"pagerduty fake: timed out after {timeout}s waiting for {what or predicate}; "
                                         f"events:\n{seen or '  (none)'}")
                self._lock.wait(min(remaining, 0.2))
