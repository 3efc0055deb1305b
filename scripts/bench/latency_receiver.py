#!/usr/bin/env python3
"""scripts/bench/latency_receiver.py — the webhook receiver of scripts/bench/alert-latency.sh.

Accepts POSTs of Alertmanager's webhook format (version 4, which Telltale's webhook channel
follows too) on any path, answers 200, and remembers when each alert was first seen in each
status, keyed by (path, the alert's `trial` label, status). It takes the arrival time as
soon as the request's body has been read, before parsing it.

    GET /first?path=/telltale&trial=3&status=firing
        200 "<arrival unix seconds> <the alert's startsAt as unix seconds, or nan>", or 404
    GET /log
        every request received: [{"path", "received", "alerts": [[trial, status], …]}, …]

Usage: latency_receiver.py --listen 127.0.0.1:PORT  (runs until SIGTERM; stdlib only)
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
import urllib.parse
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 4 << 20

lock = threading.Lock()
first_seen: dict[tuple[str, str, str], tuple[float, float]] = {}
requests_log: list[dict] = []


def unix_seconds(rfc3339: str) -> float:
    """RFC 3339 (Prometheus sends nanoseconds, Telltale whole seconds) → Unix seconds."""
    try:
        text = rfc3339.replace("Z", "+00:00")
        if "." in text:  # fromisoformat takes at most microseconds
            head, rest = text.split(".", 1)
            digits = "".join(c for c in rest if c.isdigit())
            zone = rest[len(digits):]
            text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
        return datetime.fromisoformat(text).timestamp()
    except (ValueError, AttributeError):
        return math.nan


def record(path: str, received: float, body: bytes) -> None:
    try:
        alerts = json.loads(body).get("alerts") or []
    except (ValueError, AttributeError):
        alerts = []
    seen = []
    with lock:
        for alert in alerts:
            if not isinstance(alert, dict):
                continue
            trial = str((alert.get("labels") or {}).get("trial", ""))
            status = str(alert.get("status", ""))
            seen.append([trial, status])
            first_seen.setdefault((path, trial, status), (received, unix_seconds(str(alert.get("startsAt", "")))))
        requests_log.append({"path": path, "received": received, "alerts": seen})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
        body = self.rfile.read(length)
        received = time.time()
        record(urllib.parse.urlsplit(self.path).path, received, body)
        self.answer(200, b"ok\n")

    def do_GET(self) -> None:  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/first":
            q = dict(urllib.parse.parse_qsl(url.query))
            with lock:
                hit = first_seen.get((q.get("path", ""), q.get("trial", ""), q.get("status", "")))
            if hit is None:
                self.answer(404, b"")
            else:
                self.answer(200, f"{hit[0]:.6f} {hit[1]:.6f}\n".encode())
        elif url.path == "/log":
            with lock:
                self.answer(200, json.dumps(requests_log).encode())
        else:
            self.answer(404, b"")

    def answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # quiet
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    host, port = parser.parse_args().listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
