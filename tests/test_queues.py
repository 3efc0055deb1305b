"""End-to-end tests of Telltale's queue collector (BullMQ v5/v6 and Bull v3/v4 in Redis).

Real queues are made with the Python ``bullmq`` package in two venvs, driven by
tests/bullmq_fixtures/bullmq_tool.py:

  .venv-bullmq-v5   bullmq 2.x: the BullMQ v5 Redis layout (pause renames wait -> paused)
  .venv-bullmq-v6   bullmq 3.x: the v6 layout (pause only sets meta.paused)

scripts/setup.sh creates both.  Bull v3/v4 queues, legacy BullMQ <= 4 "0:<ts>" markers
and lock-less active jobs are written by hand with a tiny RESP client (no redis package
in the pytest venv).

Every test works in Redis database 5 (FLUSHDB before and after) so that the
default database of whoever shares the server is left alone; ACL users made by
the tests are named tt_q_* and deleted again.  One test stops and starts Redis
(``services`` fixture) and one freezes it (SIGSTOP/SIGCONT), so develop against a
Redis of your own:

    TELLTALE_RUN_DIR=/tmp/tt-qtests TELLTALE_PG_PORT=55632 TELLTALE_REDIS_PORT=56579 \\
        bash scripts/services.sh start
    TELLTALE_RUN_DIR=/tmp/tt-qtests .venv/bin/python -m pytest tests/test_queues.py -q

A few tests also start a private redis-server (unix socket, ::1) of their own.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

import helpers
from conftest import REPO, find_free_port, run_dir
from helpers import Samples, assert_not_hung, promtool_check, timed_scrapes

TOOL = Path(__file__).resolve().parent / "bullmq_fixtures" / "bullmq_tool.py"
VENVS = {"v5": REPO / ".venv-bullmq-v5", "v6": REPO / ".venv-bullmq-v6"}
BULLMQ_MAJOR = {"v5": "2.", "v6": "3."}  # python bullmq major of each layout
DB = 5
STATES = ["waiting", "paused", "active", "prioritized", "delayed", "waiting-children", "completed", "failed"]
INTERVAL = 1.0  # the collector interval the tests configure
QUEUE_FAMILIES = (
    "telltale_queue_jobs", "telltale_queue_paused", "telltale_queue_oldest_waiting_seconds",
    "telltale_queue_delayed_overdue", "telltale_queue_active_unlocked", "telltale_queue_workers",
    "telltale_queue_jobs_completed_total", "telltale_queue_jobs_failed_total",
    "telltale_queue_job_duration_seconds", "telltale_queue_job_wait_seconds", "telltale_queue_job_attempts",
)


# ------------------------------------------------------------------ a tiny RESP client


class RedisReplyError(Exception):
    pass


class Redis:
    """Just enough of RESP2 to set up and inspect keys by hand."""

    def __init__(self, port: int, db: int = DB, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.db = db
        self.cmd("SELECT", db)

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass

    def cmd(self, *args: Any) -> Any:
        parts = [str(a).encode() if not isinstance(a, bytes) else a for a in args]
        out = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        self.sock.sendall(out)
        return self._read()

    def _read(self) -> Any:
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisReplyError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ValueError(f"unexpected RESP line {line!r}")

    def delete_matching(self, pattern: str) -> int:
        deleted, cursor = 0, "0"
        while True:
            cursor, keys = self.cmd("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            if keys:
                deleted += self.cmd("DEL", *keys)
            if cursor == "0":
                return deleted


# ----------------------------------------------------------------------- helpers


class QueueSamples(Samples):
    """Samples, plus the queue collector's series by queue."""

    def jobs(self) -> dict[tuple[str, str, str], float]:
        """{(prefix, queue, state): value} of telltale_queue_jobs."""
        return {(lab["prefix"], lab["queue"], lab["state"]): val
                for lab, val in self.find("telltale_queue_jobs")}

    def queues(self, family: str = "telltale_queue_jobs") -> set[tuple[str, str]]:
        return {(lab["prefix"], lab["queue"]) for lab, _ in self.find(family)}


# helpers.scrape / helpers.wait_for, handing out QueueSamples.
scrape = functools.partial(helpers.scrape, parse=QueueSamples)
wait_for = functools.partial(helpers.wait_for, parse=QueueSamples)
wait_runs = functools.partial(helpers.wait_runs, parse=QueueSamples)


def up(s: QueueSamples) -> float | None:
    return s.get("telltale_collector_up", collector="queues:default")


def queue_config(url: str, collectors: dict | None = None, **queues: Any) -> str:
    """A config with the host/process collectors off and a 1 s queue collector on ``url``."""
    section = {
        "redis": {"url": url},
        "interval": "1s",
        "timeout": "1s",
        "prefixes": ["bull"],
        "discovery": {"enabled": True, "interval": "1s"},
    }
    section.update(queues)
    config = {"collectors": collectors or {"host": {"enabled": False}, "process": {"enabled": False}},
              "queues": section}
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def now_ms() -> float:
    return time.time() * 1000


class BullTool:
    """Runs tests/bullmq_fixtures/bullmq_tool.py with one of the bullmq venvs."""

    def __init__(self, layout: str, url: str) -> None:
        python = VENVS[layout] / "bin" / "python"
        if not python.exists():
            pytest.fail(f"{python} not found: run scripts/setup.sh (it creates the bullmq venvs)", pytrace=False)
        self.python, self.url, self.layout = python, url, layout

    def argv(self, *args: Any) -> list[str]:
        return [str(self.python), str(TOOL), self.url, *map(str, args)]

    def __call__(self, *args: Any, timeout: float = 60) -> Any:
        r = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"bullmq_tool {args} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
        return json.loads(r.stdout.strip().splitlines()[-1])

    def popen(self, *args: Any) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)


# ----------------------------------------------------------------------- fixtures


class QueueRedis:
    """The tests' Redis database: URL, port and a RESP connection."""

    def __init__(self, env: dict[str, str]) -> None:
        self.host = env.get("TELLTALE_REDIS_HOST", "127.0.0.1")
        self.port = int(env["TELLTALE_REDIS_PORT"])
        self.url = f"redis://{self.host}:{self.port}/{DB}"
        self.r = Redis(self.port, DB, self.host)

    def tool(self, layout: str) -> BullTool:
        return BullTool(layout, self.url)


@pytest.fixture
def qredis(redis_env: dict[str, str]) -> Iterator[QueueRedis]:
    q = QueueRedis(redis_env)
    q.r.cmd("FLUSHDB")
    yield q
    try:
        q.r.close()
        # A fresh connection: the test may have restarted Redis.
        r = Redis(q.port, DB, q.host)
        r.cmd("FLUSHDB")
        r.close()
    except OSError:
        pass


# ===================================================== counts equal getJobCounts()


@pytest.mark.parametrize("layout", ["v5", "v6"])
def test_counts_equal_bullmq_get_job_counts(qredis, start_telltale, layout):
    """Real queues in every state; Telltale's counts equal bullmq's getJobCounts()
    exactly, and telltale_queue_paused equals isPaused()."""
    tool = qredis.tool(layout)
    assert tool("version")["bullmq"].startswith(BULLMQ_MAJOR[layout])
    expected = tool("scenario", "--tagged-prefix", "{bull}")
    queues = {(e["prefix"], e["queue"]) for e in expected.values()}
    assert len(queues) == 6, expected

    def matches(s: QueueSamples) -> bool:
        jobs = s.jobs()
        return s.queues() == queues and all(
            jobs.get((e["prefix"], e["queue"], state)) == e["all"][state]
            for e in expected.values() for state in STATES)

    tt = start_telltale(queue_config(qredis.url, prefixes=["bull", "{bull}"]))
    s, _ = wait_for(tt, lambda s: up(s) == 1 and s.queues() == queues, 10, "all queues discovered")
    try:
        s, _ = wait_for(tt, matches, 10, "counts equal to getJobCounts()")
    except AssertionError:
        pass  # the exact comparison below shows what differs
    jobs = s.jobs()
    assert s.queues() == queues
    problems = []
    for e in expected.values():
        p, q = e["prefix"], e["queue"]
        assert {st for (pp, qq, st) in jobs if (pp, qq) == (p, q)} == set(STATES), f"{p}:{q} lacks states"
        # Every state bullmq's default getJobCounts() returns, and all eight asked explicitly.
        for state, n in list(e["default"].items()) + list(e["all"].items()):
            if jobs.get((p, q, state)) != n:
                problems.append(f"{p}:{q} {state}: telltale {jobs.get((p, q, state))}, bullmq {n}")
        paused = s.get("telltale_queue_paused", prefix=p, queue=q)
        if paused != (1 if e["is_paused"] else 0):
            problems.append(f"{p}:{q} paused: telltale {paused}, bullmq isPaused() {e['is_paused']}")
        # Something waits (in wait, or in v5's paused list) <=> an oldest-waiting age.
        oldest = s.get("telltale_queue_oldest_waiting_seconds", prefix=p, queue=q)
        if (e["all"]["waiting"] + e["all"]["paused"] > 0) != (oldest > 0):
            problems.append(f"{p}:{q} oldest_waiting_seconds {oldest} with counts {e['all']}")
        for family in ("telltale_queue_delayed_overdue", "telltale_queue_active_unlocked"):
            if s.get(family, prefix=p, queue=q) != 0:
                problems.append(f"{p}:{q} {family} = {s.get(family, prefix=p, queue=q)}, expected 0")
    assert not problems, "\n".join(problems) + "\n--- scrape ---\n" + s.excerpt("telltale_queue_jobs{")
    # The layouts really differ where they should.
    paused_q = expected["bull|paused"]["all"]
    if layout == "v5":
        assert (paused_q["waiting"], paused_q["paused"]) == (0, 5)
    else:
        assert (paused_q["waiting"], paused_q["paused"]) == (5, 0)
    assert expected["bull|flowparent"]["all"]["waiting-children"] == 1
    assert expected["bull|mixed"]["all"]["prioritized"] == 3
    # One pipelined round trip for all counts, one for what they point at, plus one
    # SCAN per prefix per discovery pass (every run here): never one per queue.
    def trips_and_runs(s: QueueSamples) -> tuple[float, float]:
        return (s.get("telltale_redis_round_trips_total", collector="queues:default"),
                s.get("telltale_collector_duration_seconds_count", collector="queues:default"))

    t1, r1 = trips_and_runs(scrape(tt))
    s2, _ = wait_for(tt, lambda s: trips_and_runs(s)[1] >= r1 + 3, 6, "three more runs")
    t2, r2 = trips_and_runs(s2)
    assert (t2 - t1) / (r2 - r1) <= 2 + 2 + 0.5, (t2 - t1, r2 - r1)
    promtool_check(tt.metrics())


# ============================================================== Bull v3/v4 by hand


def make_bull_queue(r: Redis, q: str, *, wait: list[str] = (), paused: list[str] = (),
                    active: list[str] = (), delayed: dict[str, float] = {}, completed: int = 0,
                    failed: int = 0, priority: dict[str, int] = {}, paused_flag: str | None = None,
                    job_ts: dict[str, float] = {}) -> None:
    """Writes a queue as Bull 3/4 lays it out (lib/queue.js, lib/scripts.js)."""
    k = f"bull:{q}:"
    ids = list(wait) + list(paused) + list(active) + list(delayed)
    ids += [f"c{i}" for i in range(completed)] + [f"f{i}" for i in range(failed)]
    now = now_ms()
    for job_id in ids:
        r.cmd("HSET", k + job_id, "name", "__default__", "data", "{}", "opts", '{"attempts":1}',
              "timestamp", int(job_ts.get(job_id, now - 5000)), "delay", 0, "priority", priority.get(job_id, 0),
              "attemptsMade", 0)
    r.cmd("SET", k + "id", len(ids))
    for job_id in wait:  # LPUSH: the first added is at the tail, next to run
        r.cmd("LPUSH", k + "wait", job_id)
    for job_id in paused:
        r.cmd("LPUSH", k + "paused", job_id)
    for job_id in active:
        r.cmd("LPUSH", k + "active", job_id)
        r.cmd("SET", k + job_id + ":lock", "some-token", "PX", 60000)
    for n, (job_id, due_ms) in enumerate(delayed.items(), start=1):
        r.cmd("ZADD", k + "delayed", int(due_ms) * 0x1000 + (n & 0xFFF), job_id)
    for i in range(completed):
        r.cmd("ZADD", k + "completed", int(now) - i, f"c{i}")
        r.cmd("HSET", k + f"c{i}", "finishedOn", int(now) - i, "processedOn", int(now) - i - 10)
    for i in range(failed):
        r.cmd("ZADD", k + "failed", int(now) - i, f"f{i}")
    for job_id, prio in priority.items():  # Bull: an index of prioritized jobs that are also in wait
        r.cmd("ZADD", k + "priority", prio, job_id)
    if paused_flag == "bull3":
        r.cmd("SET", k + "meta-paused", 1)
    elif paused_flag == "bull4":
        r.cmd("SET", k + "meta-paused", 1)
        r.cmd("HSET", k + "meta", "paused", 1)


def bull_get_job_counts(r: Redis, q: str) -> dict[str, int]:
    """What Bull's Queue#getJobCounts() returns (lib/getters.js), plus zeros for the
    BullMQ-only states."""
    k = f"bull:{q}:"
    return {
        "waiting": r.cmd("LLEN", k + "wait"), "paused": r.cmd("LLEN", k + "paused"),
        "active": r.cmd("LLEN", k + "active"), "delayed": r.cmd("ZCARD", k + "delayed"),
        "completed": r.cmd("ZCARD", k + "completed"), "failed": r.cmd("ZCARD", k + "failed"),
        "prioritized": 0, "waiting-children": 0,
    }


def test_bull_v3_layout(qredis, start_telltale):
    r = qredis.r
    now = now_ms()
    make_bull_queue(r, "b3", wait=["1", "2", "3", "4"], active=["5"], priority={"3": 2, "4": 1},
                    delayed={"6": now - 60_000, "7": now + 3_600_000, "8": now + 7_200_000},
                    completed=4, failed=2, job_ts={"1": now - 30_000})
    make_bull_queue(r, "b3paused", paused=["1", "2", "3"], delayed={"4": now + 3_600_000},
                    paused_flag="bull3", job_ts={"1": now - 90_000})
    make_bull_queue(r, "b4paused", paused=["1"], active=["2"], paused_flag="bull4", completed=1)
    expected = {q: bull_get_job_counts(r, q) for q in ("b3", "b3paused", "b4paused")}
    assert expected["b3"]["waiting"] == 4 and expected["b3paused"]["paused"] == 3

    tt = start_telltale(queue_config(qredis.url))
    want = {("bull", q, st): n for q, c in expected.items() for st, n in c.items()}
    s, _ = wait_for(tt, lambda s: s.jobs() == want, 8, "Bull counts")
    assert s.get("telltale_queue_paused", queue="b3") == 0
    assert s.get("telltale_queue_paused", queue="b3paused") == 1
    assert s.get("telltale_queue_paused", queue="b4paused") == 1
    assert s.get("telltale_queue_delayed_overdue", queue="b3") == 1
    assert s.get("telltale_queue_delayed_overdue", queue="b3paused") == 0
    assert s.get("telltale_queue_active_unlocked", queue="b3") == 0
    # Head of line: job 1 (tail of wait, resp. of paused while paused).
    # Measured at collection, between the queues' creation and this scrape.
    age = time.time() - now / 1000
    assert 30 <= s.get("telltale_queue_oldest_waiting_seconds", queue="b3") <= 30 + age
    assert 90 <= s.get("telltale_queue_oldest_waiting_seconds", queue="b3paused") <= 90 + age
    # Bull has no events stream: counters exist at 0.
    assert s.get("telltale_queue_jobs_completed_total", queue="b3") == 0


# ====================================================== legacy BullMQ <= 4 marker


def test_legacy_zero_marker_is_not_counted(qredis, start_telltale):
    """A BullMQ <= 4 "0:<ts>" marker at the tail of wait is neither counted nor taken
    as the head job, exactly like bullmq's own getCounts script."""
    tool, r = qredis.tool("v5"), qredis.r
    ids = tool("add", "legacy", json.dumps([{"data": {"n": i}} for i in range(3)]))["ids"]
    # The oldest job (tail of wait) is made 100 s old; the marker goes behind it.
    oldest_ms = int(now_ms() - 100_000)
    r.cmd("HSET", f"bull:legacy:{ids[0]}", "timestamp", oldest_ms)
    r.cmd("RPUSH", "bull:legacy:wait", f"0:{int(now_ms())}")
    # A queue whose wait holds nothing but a marker.
    tool("add", "onlymarker", json.dumps([{"data": {}, "opts": {"delay": 3_600_000}}]))
    r.cmd("RPUSH", "bull:onlymarker:wait", "0:0")
    # And a v5 paused list with a marker at its tail.
    tool("add", "pausedmarker", json.dumps([{"data": {}}, {"data": {}}]))
    r.cmd("HSET", "bull:pausedmarker:meta", "paused", 1)
    r.cmd("RENAME", "bull:pausedmarker:wait", "bull:pausedmarker:paused")
    r.cmd("RPUSH", "bull:pausedmarker:paused", "0:1")
    assert r.cmd("LLEN", "bull:legacy:wait") == 4

    tt = start_telltale(queue_config(qredis.url))
    wait_for(tt, lambda s: len(s.queues()) == 3, 8, "three queues")
    s = wait_runs(tt, "queues:default", 2)  # a run after the first too: the marker is still not counted
    got = s.jobs()
    # bullmq's getJobCounts (it also pops the marker, so read it after Telltale did).
    counts = {q: tool("counts", q)["all"] for q in ("legacy", "onlymarker", "pausedmarker")}
    assert counts["legacy"]["waiting"] == 3 and counts["onlymarker"]["waiting"] == 0
    assert counts["pausedmarker"]["paused"] == 2
    for q, c in counts.items():
        for state in STATES:
            assert got[("bull", q, state)] == c[state], (q, state, s.excerpt("telltale_queue_jobs{"))
    # Measured at collection, which lies between the edit above and this scrape.
    oldest = s.get("telltale_queue_oldest_waiting_seconds", queue="legacy")
    assert 100 <= oldest <= (now_ms() - oldest_ms) / 1000, oldest
    assert s.get("telltale_queue_oldest_waiting_seconds", queue="onlymarker") == 0
    assert s.get("telltale_queue_oldest_waiting_seconds", queue="pausedmarker") > 0


# ================================================ durations and finished counters


@pytest.mark.parametrize("layout", ["v5", "v6"])
def test_durations_and_finished_counters(qredis, start_telltale, layout):
    """Counters count exactly the jobs finished after Telltale first saw the events
    stream (removeOnComplete/removeOnFail on); durations land in the right buckets."""
    tool = qredis.tool(layout)
    remove = {"removeOnComplete": True, "removeOnFail": True}
    # History before Telltale starts: must not be counted.
    tool("process", "ev", json.dumps([{"data": {}}, {"data": {"fail": True}}, {"data": {}, "opts": remove}]))
    tool("process", "kept", json.dumps([{"data": {}}]))

    # Bucket bounds well above each job's sleep (30 ms, 300 ms, 1.5 s): a job is timed by the
    # worker from start to finish, which a busy machine stretches by more than its sleep.
    tt = start_telltale(queue_config(qredis.url, duration_buckets=[0.25, 1, 5]))
    wait_for(tt, lambda s: {("bull", "ev"), ("bull", "kept")} <= s.queues(), 8, "queues seen")
    # The run that published the queues has also marked the end of their streams.
    jobs = [
        {"name": "fast", "data": {"sleep": 0.03}, "opts": remove},
        {"name": "medium", "data": {"sleep": 0.3}, "opts": remove},
        {"name": "slow", "data": {"sleep": 1.5}, "opts": remove},
        {"name": "bad", "data": {"fail": True}, "opts": remove},
        {"name": "bad", "data": {"fail": True}, "opts": remove},
        {"name": "retried", "data": {"fail": True}, "opts": {**remove, "attempts": 2}},
    ]
    t0 = time.monotonic()
    out = tool("process", "ev", json.dumps(jobs), "--concurrency", 6)
    assert out["attempts"] == {"completed": 3, "failed": 4}, out
    # Kept jobs: their hashes stay, so attempts come from the hash (atm).
    tool("process", "kept", json.dumps([{"data": {}}, {"data": {"fail": True}, "opts": {"attempts": 2}}]),
         "--concurrency", 2)

    def done(s: QueueSamples) -> bool:
        return (s.get("telltale_queue_jobs_completed_total", queue="ev") == 3
                and s.get("telltale_queue_jobs_failed_total", queue="ev") == 3
                and s.get("telltale_queue_jobs_completed_total", queue="kept") == 1
                and s.get("telltale_queue_jobs_failed_total", queue="kept") == 1)

    s, waited = wait_for(tt, done, 10, "finished counters")
    print(f"[{layout}] counters complete {time.monotonic() - t0:.2f}s after the workers started")
    s = wait_runs(tt, "queues:default", 3)  # more runs over the same events: nothing is counted twice
    assert done(s), s.excerpt()
    d = "telltale_queue_job_duration_seconds"
    buckets = {le: s.bucket(d, le, queue="ev") for le in (0.25, 1, 5, float("inf"))}
    # 30 ms + three immediate failures <= 0.25; 300 ms <= 1; 1.5 s <= 5 (and > 1).
    assert buckets == {0.25: 4, 1: 5, 5: 6, float("inf"): 6}, (buckets, s.excerpt(d))
    assert s.get(d + "_count", queue="ev") == 6
    # The sleeps add up to 1.83 s (seconds, not milliseconds); the upper bound leaves room for
    # what a busy machine adds to six jobs.
    assert 1.8 <= s.get(d + "_sum", queue="ev") <= 5, s.get(d + "_sum", queue="ev")
    assert s.get("telltale_queue_job_wait_seconds_count", queue="ev") == 6, s.excerpt("telltale_queue_job_wait")
    a = "telltale_queue_job_attempts"
    assert s.bucket(a, 1, queue="kept") == 1 and s.bucket(a, 2, queue="kept") == 2, s.excerpt(a)
    assert s.get(d + "_count", queue="kept") == 2
    # bullmq's own view of ev: only the two jobs finished before Telltale started are kept.
    counts = tool("counts", "ev")["all"]
    assert counts["completed"] == 1 and counts["failed"] == 1, counts
    promtool_check(tt.metrics())


def test_workers_count_connection_names(qredis, start_telltale):
    """telltale_queue_workers counts CLIENT LIST names as BullMQ does: Node/Bull use
    base64(queue) (``bull:<b64>``, ``bull:<b64>:w:<name>``), Python the plain name;
    QueueEvents (``:qe``) and other queues do not count.  With a real Python worker
    the count equals bullmq's own get_workers_count()."""
    tool, port = qredis.tool("v6"), qredis.port
    tool("add", "wq", json.dumps([{"data": {}}]))
    tool("add", "wq2", json.dumps([{"data": {}}]))
    tt = start_telltale(queue_config(qredis.url))
    wait_for(tt, lambda s: s.get("telltale_queue_workers", queue="wq") == 0, 8, "no workers yet")
    b64 = base64.b64encode(b"wq").decode()
    names = {f"bull:{b64}": True, f"bull:{b64}:w:node-1": True, f"bull:{b64}:qe": False,
             "bull:wq2": False, "bull:wq2:w:x": False, f"bull:{b64}x": False}
    conns = []
    try:
        for name in names:
            c = Redis(port, 0)
            c.cmd("CLIENT", "SETNAME", name)
            conns.append(c)
        wait_for(tt, lambda s: s.get("telltale_queue_workers", queue="wq") == 2
                 and s.get("telltale_queue_workers", queue="wq2") == 2, 10, "node-style workers")
    finally:
        for c in conns:
            c.close()
    wait_for(tt, lambda s: s.get("telltale_queue_workers", queue="wq") == 0, 10, "named connections closed")

    proc = tool.popen("process", "wq", json.dumps([{"data": {"sleep": 3}}]))
    try:
        s, _ = wait_for(tt, lambda s: (s.get("telltale_queue_workers", queue="wq") or 0) > 0, 8, "a python worker")
        seen = s.get("telltale_queue_workers", queue="wq")
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    bullmq_count = json.loads(out.strip().splitlines()[-1])["workers_seen"][0]
    assert seen == bullmq_count, (seen, bullmq_count)
    wait_for(tt, lambda s: s.get("telltale_queue_workers", queue="wq") == 0, 10, "workers gone after close")


# ============================================= oldest waiting, overdue, unlocked


def test_oldest_waiting_overdue_and_unlocked(qredis, start_telltale):
    tool, r = qredis.tool("v6"), qredis.r
    added = tool("add", "age", json.dumps([{"data": {}}]))["now_ms"]
    tool("add", "age", json.dumps([{"data": {}}]))  # newer: the oldest stays the first
    tool("add", "late", json.dumps([{"data": {}, "opts": {"delay": 100}},
                                    {"data": {}, "opts": {"delay": 3_600_000}}]))
    # Two active jobs, only one with a lock (as moveToActive with token "0" leaves them).
    ids = tool("add", "stuck", json.dumps([{"data": {}}, {"data": {}}, {"data": {}}]))["ids"]
    for _ in range(2):
        r.cmd("RPOPLPUSH", "bull:stuck:wait", "bull:stuck:active")
    r.cmd("SET", f"bull:stuck:{ids[1]}:lock", "token", "PX", 60_000)
    assert r.cmd("LRANGE", "bull:stuck:active", 0, -1) == [ids[1], ids[0]]

    tt = start_telltale(queue_config(qredis.url))

    def ready(s: QueueSamples) -> bool:
        # An age of 1.5 s: collected well after the 100 ms delay of the "late" job had passed.
        return (len(s.queues()) == 3 and (s.get("telltale_queue_oldest_waiting_seconds", queue="age") or 0) >= 1.5
                and s.get("telltale_queue_delayed_overdue", queue="late") == 1)

    s, _ = wait_for(tt, ready, 10, "queues with an aged job")
    real_age = time.time() - added / 1000
    oldest = s.get("telltale_queue_oldest_waiting_seconds", queue="age")
    # The value is computed at collection time, up to one interval before the scrape.
    assert real_age - INTERVAL - 0.5 <= oldest <= real_age + 0.2, (oldest, real_age)
    assert s.get("telltale_queue_delayed_overdue", queue="late") == 1
    assert s.get("telltale_queue_jobs", queue="late", state="delayed") == 2
    assert s.get("telltale_queue_oldest_waiting_seconds", queue="late") == 0
    assert s.get("telltale_queue_active_unlocked", queue="stuck") == 1
    assert s.get("telltale_queue_jobs", queue="stuck", state="active") == 2
    assert s.get("telltale_queue_jobs", queue="stuck", state="waiting") == 1
    assert s.get("telltale_queue_active_unlocked", queue="age") == 0
    # The lock expires: both unlocked.
    r.cmd("DEL", f"bull:stuck:{ids[1]}:lock")
    wait_for(tt, lambda s: s.get("telltale_queue_active_unlocked", queue="stuck") == 2, 10, "both unlocked")


# ========================================================= Redis outage / recovery


def test_redis_outage_and_recovery(qredis, start_telltale, services):
    """Redis stopped: collector_up 0 within ~2 intervals, the rest of /metrics unaffected
    and fast; after start-redis it recovers, and the counters neither reset nor count
    old events twice."""
    tool = qredis.tool("v6")
    tool("add", "out", json.dumps([{"data": {}}, {"data": {}}]))
    config = queue_config(qredis.url, collectors={"host": {"enabled": False},
                                                  "process": {"enabled": True, "interval": "1s", "timeout": "1s"}})
    tt = start_telltale(config)
    wait_for(tt, lambda s: up(s) == 1 and s.get("telltale_queue_jobs", queue="out", state="waiting") == 2
             and s.get("telltale_collector_up", collector="process") == 1, 8, "queue seen")
    tool("process", "out", json.dumps([{"data": {}}]), "--concurrency", 3)  # 3 jobs complete
    wait_for(tt, lambda s: s.get("telltale_queue_jobs_completed_total", queue="out") == 3, 10, "3 completed")

    services.stop_redis()
    t0 = time.monotonic()
    s, waited = wait_for(tt, lambda s: up(s) == 0, 30, "collector_up 0 after Redis stopped")
    print(f"queues collector_up went 0 {waited:.2f}s after stop-redis returned")
    errors = {lab["reason"]: v for lab, v in s.find("telltale_collector_errors_total", collector="queues:default")}
    assert errors and set(errors) <= {"connect", "connection", "timeout"}, errors
    # The rest of /metrics is unaffected (the process collector keeps running), and answers.
    wait_runs(tt, ("process", "queues:default"), 2)
    times, s = timed_scrapes(tt, 5, parse=QueueSamples)
    assert_not_hung(times)
    assert s.get("telltale_collector_up", collector="process") == 1
    assert s.get("telltale_build_info") is not None
    assert s.get("process_resident_memory_bytes") is not None
    assert up(s) == 0
    print(f"while down: queue series present: {bool(s.find('telltale_queue_jobs'))}, "
          f"errors {dict((l['reason'], v) for l, v in s.find('telltale_collector_errors_total', collector='queues:default'))}")
    down_for = time.monotonic() - t0

    services.start_redis()
    s, waited = wait_for(tt, lambda s: up(s) == 1, 45, "recovery after start-redis", poll=0.2)
    print(f"Redis down {down_for:.1f}s; queues collector recovered {waited:.2f}s after start-redis returned")
    s, _ = wait_for(tt, lambda s: s.get("telltale_queue_jobs", queue="out", state="completed") == 3, 10, "counts back")
    # Further runs after the reconnect: the counter neither reset nor counted old events twice.
    assert wait_runs(tt, "queues:default", 3).get("telltale_queue_jobs_completed_total", queue="out") == 3
    tool("process", "out", json.dumps([{"data": {}}]))
    wait_for(tt, lambda s: s.get("telltale_queue_jobs_completed_total", queue="out") == 4, 10, "counting again")


def test_redis_hang_times_out_and_recovers(qredis, start_telltale):
    """Redis frozen (SIGSTOP): the run times out, /metrics stays fast, and Telltale
    recovers once Redis answers again."""
    tool = qredis.tool("v6")
    tool("add", "hang", json.dumps([{"data": {}}]))
    tt = start_telltale(queue_config(qredis.url))
    wait_for(tt, lambda s: up(s) == 1 and s.get("telltale_queue_jobs", queue="hang", state="waiting") == 1, 8, "seen")
    pid = int((run_dir() / "redis.pid").read_text().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        s, waited = wait_for(tt, lambda s: up(s) == 0, 30, "collector_up 0 while Redis hangs")
        assert (s.get("telltale_collector_errors_total", collector="queues:default", reason="timeout") or 0) >= 1, s.excerpt()
        times, _ = timed_scrapes(tt, 10, pause=0.2, parse=QueueSamples)
        assert_not_hung(times)
    finally:
        os.kill(pid, signal.SIGCONT)
    s, waited = wait_for(tt, lambda s: up(s) == 1, 45, "recovery after SIGCONT", poll=0.2)
    print(f"recovered {waited:.2f}s after Redis resumed")
    assert s.get("telltale_queue_jobs", queue="hang", state="waiting") == 1


# ================================================================ ACL and secrets


def test_read_only_acl_user_and_secrets(qredis, start_telltale, tmp_path):
    r, port = qredis.r, qredis.port
    user, password, wrong = "tt_q_ro", "ro-pass-Zq81xv", "wrong-pass-Kp27"
    r.cmd("ACL", "SETUSER", user, "reset", "on", ">" + password, "~*", "&*", "+@read", "+@connection", "-@write")
    try:
        tool = qredis.tool("v6")
        tool("add", "acl", json.dumps([{"data": {}}, {"data": {}, "opts": {"delay": 3_600_000}}]))
        # The user really is read-only.
        ro = Redis(port, 0)
        ro.cmd("AUTH", user, password)
        with pytest.raises(RedisReplyError, match="NOPERM"):
            ro.cmd("SET", "tt_q_probe", 1)
        ro.close()

        good_url = f"redis://{user}:{password}@127.0.0.1:{port}/{DB}"
        tt = start_telltale(queue_config(good_url))
        s, _ = wait_for(tt, lambda s: up(s) == 1 and s.get("telltale_queue_jobs", queue="acl", state="waiting") == 1,
                        8, "counts as the read-only user")
        assert s.get("telltale_queue_jobs", queue="acl", state="delayed") == 1
        s = wait_runs(tt, "queues:default", 2)  # and it stays up, run after run
        assert up(s) == 1, s.excerpt()
        assert not s.find("telltale_collector_errors_total", collector="queues:default") or all(
            v == 0 for _, v in s.find("telltale_collector_errors_total", collector="queues:default")), s.excerpt()

        # The same user, with username/password_file keys instead of a URL.
        secret = tmp_path / "redis-pass"
        secret.write_text(password + "\n")
        tt2 = start_telltale(queue_config(qredis.url, redis={
            "host": "127.0.0.1", "port": port, "db": DB, "username": user, "password_file": str(secret)}))
        wait_for(tt2, lambda s: up(s) == 1 and s.get("telltale_queue_jobs", queue="acl", state="waiting") == 1,
                 8, "counts with password_file")
        url_file = tmp_path / "redis-url"
        url_file.write_text(good_url + "\n")
        tt3 = start_telltale(queue_config(qredis.url, redis={"url_file": str(url_file)}))
        wait_for(tt3, lambda s: up(s) == 1 and s.get("telltale_queue_jobs", queue="acl", state="waiting") == 1,
                 8, "counts with url_file")

        # A user that may not run CLIENT LIST: counts still work, only the workers gauge is absent.
        r.cmd("ACL", "SETUSER", user + "_nc", "reset", "on", ">" + password, "~*", "&*", "+@read", "+select")
        tt4 = start_telltale(queue_config(f"redis://{user}_nc:{password}@127.0.0.1:{port}/{DB}"))
        s4, _ = wait_for(tt4, lambda s: up(s) == 1 and s.get("telltale_queue_jobs", queue="acl", state="waiting") == 1,
                         8, "counts without CLIENT LIST")
        s4 = wait_runs(tt4, "queues:default", 2)
        assert up(s4) == 1 and not s4.find("telltale_queue_workers"), s4.excerpt()
        assert s.get("telltale_queue_workers", queue="acl") == 0  # the first user may

        bad = start_telltale(queue_config(f"redis://{user}:{wrong}@127.0.0.1:{port}/{DB}"))
        s_bad, _ = wait_for(bad, lambda s: up(s) == 0, 8, "collector_up 0 with a wrong password")
        wait_for(bad, lambda s: (s.get("telltale_collector_errors_total", collector="queues:default", reason="connect") or 0) >= 1,
                 10, "errors_total{reason=connect}")
        assert not s_bad.find("telltale_queue_jobs")

        for t, secrets in ((tt, [password]), (tt2, [password]), (tt3, [password]), (tt4, [password]),
                           (bad, [password, wrong])):
            texts = {"/metrics": t.metrics(), "/": t.get("/").text}
            t.stop()
            texts["logs"] = t.logs()
            for where, text in texts.items():
                for sec in secrets:
                    assert sec not in text, f"the password appears in {where}:\n{text}"
    finally:
        r.cmd("ACL", "DELUSER", user, user + "_nc")


def test_percent_encoded_password_in_url(qredis, start_telltale):
    """Characters such as @ : / % in a password are percent-encoded in a redis:// URL
    (RFC 3986); redis-py (so bullmq) and ioredis decode them.  Telltale must too."""
    r, port = qredis.r, qredis.port
    user, password = "tt_q_enc", "p@ss:w/rd%41#1"
    encoded = urllib.parse.quote(password, safe="")
    r.cmd("ACL", "SETUSER", user, "reset", "on", ">" + password, "~*", "&*", "+@all")
    try:
        url = f"redis://{user}:{encoded}@127.0.0.1:{port}/{DB}"
        tool = BullTool("v6", url)  # bullmq itself accepts this URL
        tool("add", "enc", json.dumps([{"data": {}}]))
        assert tool("counts", "enc")["all"]["waiting"] == 1
        tt = start_telltale(queue_config(url))
        try:
            wait_for(tt, lambda s: up(s) == 1 and s.get("telltale_queue_jobs", queue="enc", state="waiting") == 1,
                     15, "counts with a percent-encoded password")
        finally:
            logs = tt.logs()
            assert password not in logs and encoded not in logs
    finally:
        r.cmd("ACL", "DELUSER", user)


# ================================================================= discovery


def test_discovery_drops_vanished_queues_and_caps(qredis, start_telltale):
    tool, r = qredis.tool("v6"), qredis.r
    for q in ("alpha", "gone", "omega", "zeta"):
        tool("add", q, json.dumps([{"data": {}}]))
    # A queue that only has its meta hash (Node's Queue constructor writes it before any add).
    r.cmd("HSET", "bull:metaonly:meta", "opts.maxLenEvents", 10000, "version", "bullmq:5.34.0")
    tt = start_telltale(queue_config(qredis.url))
    wait_for(tt, lambda s: len(s.queues()) == 5, 8, "five queues")
    # "gone" also gets finished jobs, so its counters and histograms exist.
    tool("process", "gone", json.dumps([{"data": {}}]))
    wait_for(tt, lambda s: (s.get("telltale_queue_jobs_completed_total", queue="gone") or 0) >= 1, 10,
             "gone's counter")

    assert r.delete_matching("bull:gone:*") > 0
    t0 = time.monotonic()

    def vanished(s: QueueSamples) -> bool:
        return not any(lab.get("queue") == "gone" for _, lab, _ in s.samples)

    s, waited = wait_for(tt, vanished, 30, "gone to drop out of /metrics")
    print(f"vanished queue dropped out {waited:.2f}s after its keys were deleted")
    rest = {("bull", "alpha"), ("bull", "metaonly"), ("bull", "omega"), ("bull", "zeta")}
    assert s.queues() == rest
    for family in QUEUE_FAMILIES[:6]:
        assert s.queues(family) == rest, family
    assert all(s.get("telltale_queue_jobs", queue="metaonly", state=st) == 0 for st in STATES)

    # max_queues: the first two (sorted) stay; the dropped count goes up.
    capped = start_telltale(queue_config(qredis.url, max_queues=2))
    dropped = lambda s: s.get("telltale_series_dropped_total", collector="queues:default", metric="telltale_queue_jobs") or 0
    s, _ = wait_for(capped, lambda s: len(s.queues()) == 2 and dropped(s) >= 1, 8, "capped queues")
    assert s.queues() == {("bull", "alpha"), ("bull", "metaonly")}
    first = dropped(s)
    s, _ = wait_for(capped, lambda s: dropped(s) > first, 10, "dropped to grow")
    # Uncapped: nothing dropped.
    assert dropped(scrape(tt)) == 0


def test_explicit_queues_without_discovery(qredis, start_telltale):
    tool = qredis.tool("v6")
    tool("add", "listed", json.dumps([{"data": {}}, {"data": {}}]))
    tool("add", "unlisted", json.dumps([{"data": {}}]))
    tool("add", "tagged", json.dumps([{"data": {}, "opts": {"priority": 4}}]), "--prefix", "{bull}")
    tt = start_telltale(queue_config(qredis.url, discovery={"enabled": False},
                                     queues=["listed", {"name": "tagged", "prefix": "{bull}"}]))
    s, _ = wait_for(tt, lambda s: up(s) == 1 and len(s.queues()) == 2, 8, "two listed queues")
    assert s.queues() == {("bull", "listed"), ("{bull}", "tagged")}
    assert s.get("telltale_queue_jobs", queue="listed", state="waiting") == 2
    assert s.get("telltale_queue_jobs", queue="tagged", prefix="{bull}", state="prioritized") == 1


def test_job_names_label_with_cap(qredis, start_telltale):
    """job_names: finished-job counters and durations get a job_name label, at most
    ``max`` distinct names, the rest as _other; names come from the hash or, for
    removed jobs, from the "added" event."""
    tool = qredis.tool("v6")
    tool("add", "named", json.dumps([{"name": "warmup", "data": {}}]))
    tt = start_telltale(queue_config(qredis.url, job_names={"enabled": True, "max": 2}))
    wait_for(tt, lambda s: ("bull", "named") in s.queues(), 8, "queue seen")
    jobs = [{"name": "a", "data": {}, "opts": {"removeOnComplete": True}}, {"name": "b", "data": {"fail": True}},
            {"name": "c", "data": {}}, {"name": "a", "data": {}}, {"name": "d", "data": {"fail": True}}]
    tool("process", "named", json.dumps(jobs))  # concurrency 1: warmup, a, b, c, a, d in order

    def total(s: QueueSamples, metric: str) -> float:
        return sum(v for _, v in s.find(metric, queue="named"))

    s, _ = wait_for(tt, lambda s: total(s, "telltale_queue_jobs_completed_total") == 4
                    and total(s, "telltale_queue_jobs_failed_total") == 2, 8, "six finished jobs")
    completed = {lab["job_name"]: v for lab, v in s.find("telltale_queue_jobs_completed_total", queue="named")}
    failed = {lab["job_name"]: v for lab, v in s.find("telltale_queue_jobs_failed_total", queue="named")}
    assert completed == {"warmup": 1, "a": 2, "_other": 1}, completed
    assert failed == {"_other": 2}, failed
    durations = {lab["job_name"]: v for lab, v in s.find("telltale_queue_job_duration_seconds_count", queue="named")}
    assert durations == {"warmup": 1, "a": 2, "_other": 3}, durations
    promtool_check(s.text)


# ============================================================ other endpoints


@pytest.fixture
def private_redis() -> Iterator[dict[str, Any]]:
    """A redis-server of this test's own on a unix socket (and ::1 when IPv6 works)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server not found (scripts/setup.sh installs it)", pytrace=False)
    workdir = Path(tempfile.mkdtemp(prefix="ttq-"))  # short: unix socket paths are limited
    sock = workdir / "redis.sock"
    ipv6 = True
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        ipv6 = False
    port = find_free_port()
    bind = "127.0.0.1 ::1" if ipv6 else "127.0.0.1"
    proc = subprocess.Popen([server, "--bind", *bind.split(), "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", str(workdir), "--unixsocket", str(sock), "--unixsocketperm", "700"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)
        r = Redis(port, 3)
        r.cmd("SET", "bull:sockq:id", 3)
        r.cmd("LPUSH", "bull:sockq:wait", "3", "2", "1")
        r.close()
        yield {"port": port, "socket": str(sock), "ipv6": ipv6}
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("endpoint", ["unix_url", "socket_key", "ipv6_host_key", "ipv6_url"])
def test_other_endpoints(private_redis, start_telltale, endpoint):
    p = private_redis
    if endpoint.startswith("ipv6") and not p["ipv6"]:
        pytest.skip("no IPv6 loopback here")
    redis = {
        "unix_url": {"url": f"unix://{p['socket']}?db=3"},
        "socket_key": {"socket": p["socket"], "db": 3},
        "ipv6_host_key": {"host": "::1", "port": p["port"], "db": 3},
        "ipv6_url": {"url": f"redis://[::1]:{p['port']}/3"},  # as redis-py and ioredis write it
    }[endpoint]
    tt = start_telltale(queue_config("unused", redis=redis))
    wait_for(tt, lambda s: up(s) == 1 and s.get("telltale_queue_jobs", queue="sockq", state="waiting") == 3,
             15, f"counts over {endpoint}")


def test_stalled_events_exhausted_attempts_and_names_of_jobs_queued_before(qredis, start_telltale):
    """Events as BullMQ's scripts write them (moveStalledJobsToWait, moveToFinished): stalled
    jobs are counted; a failed job removed at once has its attempts from `retries-exhausted`;
    a job queued before Telltale saw the queue keeps its name when its hash is gone by the
    time it completes."""
    tool, r = qredis.tool("v6"), qredis.r
    old = tool("add", "ev", json.dumps([{"name": "report", "data": {}}]))["ids"][0]
    config = queue_config(qredis.url, job_names={"enabled": True})
    tt = start_telltale(config)
    wait_for(tt, lambda s: s.get("telltale_queue_jobs_stalled_total", queue="ev") == 0, 15, "first sight of ev")
    # The old job starts (its `added` event was before Telltale's cursor): its name is read.
    r.cmd("XADD", "bull:ev:events", "*", "event", "active", "jobId", old, "prev", "waiting")
    wait_runs(tt, "queues:default", 2)
    r.cmd("XADD", "bull:ev:events", "*", "event", "stalled", "jobId", old)
    r.cmd("DEL", f"bull:ev:{old}")  # removeOnComplete
    r.cmd("XADD", "bull:ev:events", "*", "event", "completed", "jobId", old, "returnvalue", "null", "prev", "active")
    r.cmd("XADD", "bull:ev:events", "*", "event", "failed", "jobId", "gone1", "failedReason", "x", "prev", "active")
    r.cmd("XADD", "bull:ev:events", "*", "event", "retries-exhausted", "jobId", "gone1", "attemptsMade", 4)
    s, _ = wait_for(tt, lambda s: s.get("telltale_queue_jobs_failed_total", queue="ev", job_name="") == 1, 15, "failure")
    assert s.get("telltale_queue_jobs_stalled_total", queue="ev") == 1
    assert s.get("telltale_queue_jobs_completed_total", queue="ev", job_name="report") == 1, s.excerpt("completed")
    assert s.get("telltale_queue_job_attempts_sum", queue="ev") == 4
