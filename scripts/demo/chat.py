"""The demo's chat: a local receiver for the messages Telltale's alerting sends (its `slack`
channel) and for Alertmanager's webhook. Each message is printed in the terminal as one
line; the last KEEP are kept for a small page.

    python scripts/demo/chat.py [--port 29101]

    POST <any path>     a message: Slack's JSON (`text`), or Alertmanager's webhook JSON
                        (`status`, `alerts[]`); answered 200 "ok"
    GET  /              the last messages, newest first (HTML, refreshes itself)
    GET  /messages      the same as JSON: [{"time", "path", "summary", "json"}], oldest first

(tests/fakes/chat_receiver.py records for tests on a port of the OS's choosing and
neither prints nor shows a page, hence this small one with a fixed port.)
"""

from __future__ import annotations

import argparse
import collections
import html
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEEP = 200
MAX_BODY = 1 << 20


def summarize(path: str, doc) -> str:
    """One line: Slack's title, or Alertmanager's `[STATUS] alertname labels` per alert."""
    if not isinstance(doc, dict):
        return "(not JSON)"
    if isinstance(doc.get("alerts"), list):
        parts = []
        for alert in doc["alerts"][:10]:
            labels = dict(alert.get("labels") or {})
            name = labels.pop("alertname", "?")
            shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("job", "instance"))
            parts.append(f"[{str(alert.get('status', '?')).upper()}] {name} {{{shown}}}")
        more = len(doc["alerts"]) - 10
        return "; ".join(parts) + (f"; … and {more} more" if more > 0 else "")
    return str(doc.get("text") or doc.get("title") or json.dumps(doc)[:300])


class Messages:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: collections.deque = collections.deque(maxlen=KEEP)

    def add(self, path: str, doc) -> None:
        item = {"time": time.time(), "path": path, "summary": summarize(path, doc), "json": doc}
        with self.lock:
            self.items.append(item)
        print(f"[chat] {time.strftime('%H:%M:%S')} {path}: {item['summary']}", flush=True)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.items)


def page(messages: list[dict]) -> bytes:
    rows = "".join(
        f"<tr><td>{time.strftime('%H:%M:%S', time.localtime(m['time']))}</td><td>{html.escape(m['path'])}</td>"
        f"<td>{html.escape(m['summary'])}</td></tr>" for m in reversed(messages))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='5'>"
            f"<meta name='viewport' content='width=device-width'><title>Telltale demo chat</title>"
            f"<style>body{{font-family:sans-serif}}td{{padding:2px 8px;vertical-align:top}}</style></head>"
            f"<body><h1>Telltale demo chat</h1><p>{len(messages)} messages (last {KEEP} kept)</p>"
            f"<table>{rows}</table></body></html>").encode()


class Handler(BaseHTTPRequestHandler):
    server: "Server"

    def log_message(self, format: str, *args) -> None:  # quiet: messages are printed instead
        pass

    def do_POST(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        self.server.messages.add(self.path.split("?", 1)[0], doc)
        self.answer(200, b"ok", "text/plain")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/messages":
            self.answer(200, json.dumps(self.server.messages.snapshot()).encode(), "application/json")
        elif path == "/":
            self.answer(200, page(self.server.messages.snapshot()), "text/html; charset=utf-8")
        else:
            self.answer(404, b"not found", "text/plain")

    def answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int) -> None:
        self.messages = Messages()
        super().__init__((host, port), Handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("TELLTALE_DEMO_CHAT_PORT", "29101")))
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    args = parser.parse_args()
    server = Server(args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"[chat] receiving on http://{args.host}:{args.port}/ (Telltale: /slack, Alertmanager: /alertmanager)",
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
