"""Helpers shared by the end-to-end tests in tests/test_*.py (plain functions and
classes; the pytest fixtures live in conftest.py).  Import what you use:
``from helpers import Samples, scrape, wait_for``.

Reading an exposition
  Samples(text, openmetrics=False)  one parse: .find() .get() .bucket() .excerpt(),
                                    .types {family: type}, .text, .samples
  samples(text)                     {(name, frozenset(labels)): value}, no duplicates;
                                    value() / series() look things up in it
Scraping a running telltale (conftest's Telltale)
  scrape(tt)                        Samples of one GET /metrics (parse=: a subclass)
  timed_scrape(tt) / timed_scrapes(tt, count)
                                    fresh GETs and how long each took
  assert_not_hung(times)            none of those took HUNG seconds (a hang, not speed)
  collector_runs(samples, name)     how many runs of a collector telltale has recorded
Waiting (never a bare sleep between an action and an assertion: wait for what shows it)
  wait_until(predicate, timeout, what)    poll predicate() until truthy, else fail
  poll(predicate, timeout)                the same, but None at the deadline
  wait_for(tt, predicate, timeout, what)  scrape until predicate(samples):
                                          (samples, seconds waited)
  wait_runs(tt, collectors, runs)   scrape until each collector has run `runs` more times
  holds_for(predicate, seconds, what)     predicate() stays truthy for that long: the one
                                          place a test lets time pass on purpose
Checking
  promtool_check(text)              `promtool check metrics` accepts the text
  assert_secrets_absent(secrets, **texts)
PostgreSQL as the superuser
  psql_binary(env), psql_argv(psql, dsn), run_psql(psql, dsn, sql)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest
import requests
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

OPENMETRICS = "application/openmetrics-text; version=1.0.0"  # an Accept header asking for OpenMetrics
# Tests do not time telltale: a scrape takes milliseconds, and how many is measured by
# scripts/bench (BENCHMARKS.md), on a quiet machine, as percentiles.  What tests check is
# that a request never waits for a collector or a hung backend.  Such a request takes about
# the collector's timeout (1 s in every test here) or as long as the backend hangs, so a
# request is called hung at HUNG seconds: that long is far beyond what scheduling on a busy
# 2-core CI machine adds to a fast answer.
HUNG = 1.0
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# The lines Samples.excerpt() shows by default (also in wait_for's timeout message).
EXCERPT_PREFIXES = (
    "telltale_pg_up", "telltale_queue", "telltale_collector_up", "telltale_collector_errors",
    "telltale_series_dropped", "telltale_redis", "tt_",
)


# ------------------------------------------------------------ reading an exposition


class Samples:
    """The samples of one scrape (text format, or OpenMetrics), looked up by sample
    name and labels."""

    def __init__(self, text: str, openmetrics: bool = False) -> None:
        self.text = text
        parse = parse_openmetrics if openmetrics else parse_text
        self.samples: list[tuple[str, dict[str, str], float]] = []
        self.types: dict[str, str] = {}
        for family in parse(text):
            self.types[family.name] = family.type
            for s in family.samples:
                self.samples.append((s.name, dict(s.labels), float(s.value)))

    def find(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """Every sample called ``name`` whose labels include ``labels``."""
        return [(lab, val) for n, lab, val in self.samples
                if n == name and all(lab.get(k) == v for k, v in labels.items())]

    def get(self, name: str, **labels: str) -> float | None:
        """The one matching sample's value, None if there is none."""
        found = self.find(name, **labels)
        if not found:
            return None
        assert len(found) == 1, f"{name}{labels} matches several samples: {found}"
        return found[0][1]

    def bucket(self, name: str, le: float, **labels: str) -> float | None:
        """The ``le`` bucket of histogram ``name`` (without _bucket)."""
        for lab, val in self.find(name + "_bucket", **labels):
            if float(lab["le"]) == le:
                return val
        return None

    def excerpt(self, *prefixes: str) -> str:
        """The exposition's lines that start with one of ``prefixes``."""
        return "\n".join(line for line in self.text.splitlines() if line.startswith(prefixes or EXCERPT_PREFIXES))

    def __repr__(self) -> str:  # shown by failing asserts
        return f"<{type(self).__name__} {len(self.samples)}>"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, frozenset of label items): value} of a text-format exposition;
    fails on a duplicate sample."""
    out: dict[tuple[str, frozenset], float] = {}
    for name, labels, val in Samples(text).samples:
        key = (name, frozenset(labels.items()))
        assert key not in out, f"duplicate sample {key}"
        out[key] = val
    return out


def value(table, metric: str, /, **labels) -> float | None:
    """The sample of ``metric`` with exactly ``labels``; ``table``: samples() or the text."""
    if isinstance(table, str):
        table = samples(table)
    return table.get((metric, frozenset(labels.items())))


def series(table, metric: str, /, **labels) -> dict[frozenset, float]:
    """Every sample of ``metric`` whose labels include ``labels``: {label items: value}."""
    if isinstance(table, str):
        table = samples(table)
    want = set(labels.items())
    return {lbls: v for (name, lbls), v in table.items() if name == metric and want <= lbls}


# ------------------------------------------------------------------------ scraping


def scrape(tt, openmetrics: bool = False, parse: type[Samples] = Samples) -> Samples:
    """GET /metrics (as OpenMetrics if asked) and parse it (``parse``: Samples or a subclass)."""
    headers = {"Accept": OPENMETRICS} if openmetrics else {}
    r = tt.get("/metrics", headers=headers)
    r.raise_for_status()
    return parse(r.text, openmetrics)


def timed_scrape(tt, path: str = "/metrics", timeout: float = 10,
                 parse: Callable[[str], Any] | None = None) -> tuple[Any, float]:
    """One GET of ``path`` on a fresh connection: (body, seconds until the whole answer was
    read).  With ``parse`` the body is ``parse(text)``, and the parsing is timed too.
    Fails on a non-200."""
    started = time.monotonic()
    r = requests.get(tt.url + path, timeout=timeout)
    body = parse(r.text) if parse is not None and r.status_code == 200 else r.text
    elapsed = time.monotonic() - started
    assert r.status_code == 200, f"{path} answered {r.status_code}: {r.text[:500]}"
    return body, elapsed


def timed_scrapes(tt, count: int = 5, path: str = "/metrics", timeout: float = 10, pause: float = 0,
                  parse: Callable[[str], Any] | None = None) -> tuple[list[float], Any]:
    """``count`` timed_scrape()s, with a ``pause`` (seconds) after each: (seconds each
    took, the last body)."""
    times = []
    body = None
    for _ in range(count):
        body, elapsed = timed_scrape(tt, path, timeout, parse)
        times.append(elapsed)
        if pause:
            time.sleep(pause)
    return times, body


def assert_not_hung(times: list[float], what: str = "/metrics") -> None:
    """None of the requests timed in ``times`` (seconds) took HUNG seconds or more."""
    assert max(times) < HUNG, (f"a request to {what} took {max(times):.2f}s (>= {HUNG}s: it waited for something); "
                               f"all, in ms: {[round(t * 1000, 1) for t in times]}")


def collector_runs(s: Samples, collector: str) -> float:
    """How many runs of ``collector`` telltale has recorded (the count of its
    telltale_collector_duration_seconds histogram); 0 before the first."""
    return s.get("telltale_collector_duration_seconds_count", collector=collector) or 0


# ------------------------------------------------------------------------- waiting


def _poll(predicate: Callable[[], Any], timeout: float, interval: float,
          ignore: tuple[type[BaseException], ...]) -> tuple[bool, Any]:
    """(True, the first truthy predicate() result), or (False, the last result or
    exception) once ``timeout`` seconds have passed.  Exceptions of the types in
    ``ignore`` count as "not yet"; any other propagates."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
            if last:
                return True, last
        except ignore as e:
            last = e
        if time.monotonic() > deadline:
            return False, last
        time.sleep(interval)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1, *,
               ignore: tuple[type[BaseException], ...] = (requests.RequestException,),
               details: Callable[[], str] | None = None) -> Any:
    """Call ``predicate()`` every ``interval`` seconds until it returns something truthy,
    and return that.  After ``timeout`` seconds fail with an AssertionError naming
    ``what``, the last result or error, and whatever ``details()`` adds.  Exceptions of
    the types in ``ignore`` (by default a failed HTTP request) mean "not yet"."""
    ok, last = _poll(predicate, timeout, interval, ignore)
    if ok:
        return last
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last: {last!r})" if last is not None else "")
                         + (details() if details is not None else ""))


def poll(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, *,
         ignore: tuple[type[BaseException], ...] = (requests.RequestException,)) -> Any:
    """Like wait_until(), but returns None at the deadline instead of failing."""
    ok, last = _poll(predicate, timeout, interval, ignore)
    return last if ok else None


def wait_for(tt, predicate: Callable[[Samples], Any], timeout: float, what: str, poll: float = 0.1, *,
             parse: type[Samples] = Samples) -> tuple[Samples, float]:
    """Scrape until ``predicate(samples)`` is truthy; return (samples, seconds waited).
    Fails (with the last scrape's interesting lines and telltale's stderr) after
    ``timeout`` seconds, or at once if telltale exits."""
    start = time.monotonic()
    last: Samples | None = None

    def matched() -> Samples | None:
        nonlocal last
        assert tt.running, f"telltale exited while waiting for {what}\n{tt.describe()}"
        last = scrape(tt, parse=parse)
        return last if predicate(last) else None

    def details() -> str:
        return (f"\n--- last scrape (excerpt) ---\n{last.excerpt() if last else ''}"
                f"\n--- telltale stderr (tail) ---\n{tt.stderr()[-3000:]}")

    found = wait_until(matched, timeout, what, poll, details=details)
    return found, time.monotonic() - start


def wait_runs(tt, collectors: str | tuple[str, ...] | list[str], runs: int = 3, timeout: float = 15, *,
              parse: type[Samples] = Samples) -> Samples:
    """Scrape until each of ``collectors`` has recorded ``runs`` more runs than at the call,
    and return that scrape: the positive sign that time has passed for telltale, where a
    test checks that something did *not* change.  A collector's runs follow one another
    (the next starts once the last one's results are published) and a run's count reaches
    /metrics no sooner than its results, so with the default 3 the scrape shows the
    results of at least one run that started after the call."""
    names = (collectors,) if isinstance(collectors, str) else tuple(collectors)
    first = scrape(tt, parse=parse)
    want = {name: collector_runs(first, name) + runs for name in names}
    found, _ = wait_for(tt, lambda s: all(collector_runs(s, n) >= want[n] for n in names), timeout,
                        f"{runs} more runs of {', '.join(names)} (to reach {want})", parse=parse)
    return found


def holds_for(predicate: Callable[[], Any], seconds: float, what: str, interval: float = 0.1) -> Any:
    """Checks ``predicate()`` every ``interval`` seconds for ``seconds``: it must be truthy
    every time (fails at the first falsy result).  For the checks that really are about
    time passing ("nothing happens for N s"): say why N in a comment at the call.
    Returns the last result."""
    deadline = time.monotonic() + seconds
    while True:
        result = predicate()
        assert result, f"no longer true after {seconds - (deadline - time.monotonic()):.2f}s: {what} (got {result!r})"
        if time.monotonic() >= deadline:
            return result
        time.sleep(interval)


# ------------------------------------------------------------------------ checking


def promtool_check(text: str) -> None:
    """`promtool check metrics` accepts the exposition ``text``."""
    if not os.access(PROMTOOL, os.X_OK):
        pytest.fail(f"promtool not found at {PROMTOOL} (scripts/setup.sh installs the prometheus package)",
                    pytrace=False)
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, (
        f"promtool check metrics exited {p.returncode}\n{p.stdout}{p.stderr}\n--- exposition ---\n{text}"
    )


def assert_secrets_absent(secrets: list[str], **texts: str) -> None:
    """No secret appears in any of ``texts`` (keyword: where the text comes from)."""
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"a secret ({secret[:6]}...) appears in {where}:\n{text[-3000:]}"


# ------------------------------------------------------------ PostgreSQL (superuser)


def psql_binary(env: Mapping[str, str]) -> str:
    """The psql of $TELLTALE_PG_BIN (scripts/services.sh's env), else psql on PATH."""
    pg_bin = env.get("TELLTALE_PG_BIN", "")
    return str(Path(pg_bin) / "psql") if pg_bin and (Path(pg_bin) / "psql").exists() else "psql"


def psql_argv(psql: str, dsn: str) -> list[str]:
    """psql reading SQL from stdin: unaligned, tuples only, stop at the first error."""
    return [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn]


def run_psql(psql: str, dsn: str, sql: str, timeout: float = 30, appname: str | None = None) -> str:
    """Run ``sql`` through psql; its output, stripped.  Fails if psql does."""
    env = {**os.environ, "PGAPPNAME": appname} if appname else None
    r = subprocess.run(psql_argv(psql, dsn), input=sql, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"psql failed ({r.returncode}):\n{sql}\n{r.stderr}"
    return r.stdout.strip()


# ------------------------------------------------------------------------ faults


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``within`` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except (TimeoutError, socket.timeout):
        return False


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (PostgreSQL's postmaster and its backends, say)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found
