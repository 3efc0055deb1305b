#!/usr/bin/env python3
"""Sequential HTTP scrapes with latency statistics (standard library only).

    scrape.py [--n N] [--interval S] [--gap S] [--header 'K: V']... NAME=URL [NAME=URL ...]

Each round scrapes every URL once, in the order given (so several targets see the same
conditions), over one keep-alive connection per target, reading the whole body. Latency
is from sending the request to the last body byte. With --interval, rounds start every S
seconds (a Prometheus-like schedule); --gap pauses before every scrape, so that one
target's aftermath (GC, database work) does not land on the next target's scrape on a
small machine; --max-seconds bounds the whole run.
Prints JSON: {name: {n, errors, p50_ms, p90_ms, p99_ms, max_ms, mean_ms, bytes}}.
"""
import argparse
import http.client
import json
import sys
import time
import urllib.parse


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    # Nearest-rank: the smallest value with at least q of the samples at or below it.
    rank = max(1, int(-(-q * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Target:
    def __init__(self, name, url, headers, timeout):
        self.name, self.headers, self.timeout = name, headers, timeout
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.path = parsed.path or "/"
        if parsed.query:
            self.path += "?" + parsed.query
        self.conn = None
        self.latencies, self.errors, self.bytes = [], 0, 0

    def scrape(self):
        for attempt in (1, 2):  # a kept-alive connection closed by the server: retry once
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                start = time.perf_counter()
                self.conn.request("GET", self.path, headers=self.headers)
                response = self.conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - start
                if response.status != 200:
                    self.errors += 1
                    return
                self.latencies.append(elapsed * 1000)
                self.bytes = len(body)
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    self.errors += 1

    def stats(self):
        values = sorted(self.latencies)
        return {
            "n": len(values),
            "errors": self.errors,
            "p50_ms": percentile(values, 0.50),
            "p90_ms": percentile(values, 0.90),
            "p99_ms": percentile(values, 0.99),
            "max_ms": values[-1] if values else float("nan"),
            "mean_ms": sum(values) / len(values) if values else float("nan"),
            "bytes": self.bytes,
        }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--gap", type=float, default=0.0, help="pause before each scrape (seconds)")
    parser.add_argument("--max-seconds", type=float, default=0.0, help="stop starting rounds after this long")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("targets", nargs="+")
    args = parser.parse_args()
    headers = {}
    for header in args.header:
        key, _, value = header.partition(":")
        headers[key.strip()] = value.strip()
    targets = []
    for spec in args.targets:
        name, _, url = spec.partition("=")
        targets.append(Target(name, url, headers, args.timeout))
    start = time.monotonic()
    for index in range(args.n):
        if args.max_seconds and time.monotonic() - start > args.max_seconds:
            break
        if args.interval:
            delay = start + index * args.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        for target in targets:
            if args.gap:
                time.sleep(args.gap)
            target.scrape()
    json.dump({t.name: t.stats() for t in targets}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
