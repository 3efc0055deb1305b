"""Regressions of the hardening issue for job queues: a Redis error reply is never a healthy
zero, login problems say what is wrong, errors never quote a command's arguments, and a
queue whose keys are gone disappears.

Uses the tests' Redis (database DB of test_queues.py) and, for servers configured
differently (a password, a renamed AUTH, Sentinel, cluster nodes), redis-server processes
of its own on free ports.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import find_free_port
from test_queues import DB, QUEUE_FAMILIES, STATES, QueueSamples, Redis, qredis, queue_config, up, wait_for  # noqa: F401


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, which CLUSTER MEET assumes) is free
    and valid: the OS hands out ports up to 60999, whose bus port would not exist, and
    redis-server then fails to start."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


@contextlib.contextmanager
def own_redis(*arguments: str, config: str = "") -> Iterator[int]:
    """A redis-server on a free port with extra arguments (or a config file); yields the port."""
    workdir = Path(tempfile.mkdtemp(prefix="ttqe-"))
    port = cluster_port() if "--cluster-enabled" in arguments else find_free_port()
    argv = [shutil.which("redis-server") or "redis-server"]
    if config:
        (workdir / "redis.conf").write_text(config.format(port=port, dir=workdir))
        argv += [str(workdir / "redis.conf")]
        if "sentinel" in config:
            argv += ["--sentinel"]
    else:
        argv += ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir),
                 *arguments]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def make_queue(r: Redis, name: str, waiting: int = 2, prefix: str = "bull") -> None:
    """A BullMQ-like queue: meta, id, `waiting` jobs in wait with their hashes."""
    r.cmd("HSET", f"{prefix}:{name}:meta", "version", "bullmq:5.0.0")
    r.cmd("SET", f"{prefix}:{name}:id", waiting)
    if waiting:
        r.cmd("LPUSH", f"{prefix}:{name}:wait", *[str(i) for i in range(1, waiting + 1)])
        for i in range(1, waiting + 1):
            r.cmd("HSET", f"{prefix}:{name}:{i}", "name", "job", "timestamp", int(time.time() * 1000) - 1000)


def queue_up(s, name: str, prefix: str = "bull") -> float | None:
    return s.get("telltale_queue_up", queue=name, prefix=prefix)


def redis_errors(s) -> float:
    return s.get("telltale_collector_errors_total", collector="queues:default", reason="redis_error") or 0


def series_of(s: QueueSamples, name: str, prefix: str = "bull") -> list[str]:
    """The families that still have a series of the queue (telltale_queue_up aside)."""
    return sorted({n for n, lab, _ in s.samples
                   if lab.get("queue") == name and lab.get("prefix") == prefix and n != "telltale_queue_up"})


def assert_healthy(s: QueueSamples, name: str, prefix: str = "bull") -> None:
    """Every gauge family of a queue read cleanly is there."""
    for family in QUEUE_FAMILIES[:5]:
        assert s.find(family, queue=name, prefix=prefix), \
            f"{family} of {prefix}:{name} missing\n{s.excerpt('telltale_queue_')}"


def test_an_acl_that_does_not_cover_a_queue_is_that_queues_error(qredis, start_telltale, run_cli, tmp_path):
    """NOPERM read as zeros with telltale_collector_up 1 and `once` exiting 0."""
    make_queue(qredis.r, "allowed", 3)
    make_queue(qredis.r, "denied", 5)
    user, password = "tt_q_partial", "partial-pw-0123"
    qredis.r.cmd("ACL", "SETUSER", user, "reset", "on", ">" + password, "~bull:allowed:*", "&*", "+@all")
    try:
        url = f"redis://{user}:{password}@{qredis.host}:{qredis.port}/{DB}"
        config = queue_config(url, queues=["allowed", "denied"], discovery={"enabled": False})
        tt = start_telltale(config)
        s, _ = wait_for(tt, lambda s: queue_up(s, "denied") == 0 and queue_up(s, "allowed") == 1
                        and redis_errors(s) >= 1, 10, "queue_up 1 and 0")
        assert s.get("telltale_queue_jobs", queue="allowed", prefix="bull", state="waiting") == 3
        assert_healthy(s, "allowed")
        assert series_of(s, "denied") == [], "the denied queue must have no series"
        assert up(s) == 0
        page = tt.get("/").text
        assert "queue bull:denied: NOPERM" in page, page[-2000:]
        wait_for(tt, lambda s: "queue bull:denied: NOPERM" in tt.logs(), 10, "the problem in the log")
        (tmp_path / "once.yml").write_text(config)
        r = run_cli(["once", "--config", tmp_path / "once.yml"], timeout=60)
        assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
        once = QueueSamples(r.stdout)
        assert queue_up(once, "denied") == 0 and queue_up(once, "allowed") == 1, r.stdout[-2000:]
        assert "NOPERM" in r.stderr, r.stderr[-2000:]
        for text in (page, tt.metrics(), tt.logs(), r.stdout, r.stderr):
            assert password not in text
    finally:
        qredis.r.cmd("ACL", "DELUSER", user)


def test_a_key_of_the_wrong_type_is_that_queues_error(qredis, start_telltale):
    make_queue(qredis.r, "fine", 1)
    make_queue(qredis.r, "broken", 0)
    qredis.r.cmd("SET", "bull:broken:wait", "not a list")
    tt = start_telltale(queue_config(qredis.url))
    s, _ = wait_for(tt, lambda s: queue_up(s, "broken") == 0 and queue_up(s, "fine") == 1 and redis_errors(s) >= 1,
                    10, "broken down, fine up")
    assert series_of(s, "broken") == []
    assert_healthy(s, "fine")
    assert up(s) == 0
    assert "queue bull:broken: WRONGTYPE" in tt.get("/").text
    # Repaired: the queue reads cleanly again, and so does the collector.
    qredis.r.cmd("DEL", "bull:broken:wait")
    s, _ = wait_for(tt, lambda s: queue_up(s, "broken") == 1 and up(s) == 1, 10, "broken repaired")
    assert s.get("telltale_queue_jobs", queue="broken", state="waiting") == 0


def test_an_error_in_the_follow_up_is_that_queues_error(qredis, start_telltale):
    """The head job's hash of the wrong type: HGET in the second round trip answers WRONGTYPE."""
    make_queue(qredis.r, "fine", 1)
    make_queue(qredis.r, "oddhead", 2)
    qredis.r.cmd("DEL", "bull:oddhead:1")
    qredis.r.cmd("LPUSH", "bull:oddhead:1", "not a hash")  # job 1 is the head: first pushed, at the tail
    tt = start_telltale(queue_config(qredis.url))
    s, _ = wait_for(tt, lambda s: queue_up(s, "oddhead") == 0 and queue_up(s, "fine") == 1 and redis_errors(s) >= 1,
                    10, "oddhead down, fine up")
    assert series_of(s, "oddhead") == []
    assert_healthy(s, "fine")
    assert "queue bull:oddhead: WRONGTYPE" in tt.get("/").text


def test_an_obliterated_queue_disappears_at_the_next_run(qredis, start_telltale):
    """Discovered queues whose keys are all gone vanish without waiting for discovery (hourly
    here); a listed queue keeps being exported, with zeros."""
    make_queue(qredis.r, "gone", 2)
    make_queue(qredis.r, "stays", 1)
    make_queue(qredis.r, "listed", 1)
    tt = start_telltale(queue_config(qredis.url, queues=["listed"], discovery={"enabled": True, "interval": "1h"}))
    wait_for(tt, lambda s: {("bull", "gone"), ("bull", "stays"), ("bull", "listed")} <= s.queues(), 10,
             "the queues discovered")
    qredis.r.delete_matching("bull:gone:*")
    qredis.r.delete_matching("bull:listed:*")
    s, _ = wait_for(tt, lambda s: not any(lab.get("queue") == "gone" for _, lab, _ in s.samples)
                    and s.get("telltale_queue_jobs", queue="listed", state="waiting") == 0, 10,
                    "the obliterated queue gone (discovery runs only hourly)")
    assert ("bull", "stays") in s.queues() and up(s) == 1
    assert queue_up(s, "listed") == 1 and queue_up(s, "gone") is None
    assert all(s.get("telltale_queue_jobs", queue="listed", state=st) == 0 for st in STATES)


@pytest.mark.parametrize("discovery", [True, False])
def test_a_missing_password_says_noauth(start_telltale, discovery):
    with own_redis("--requirepass", "needed-pw-123") as port:
        tt = start_telltale(queue_config(f"redis://127.0.0.1:{port}/0", queues=["q"], discovery={"enabled": discovery}))
        wait_for(tt, lambda s: up(s) == 0 and queue_up(s, "q") == 0, 10, "the collector down")
        page = tt.get("/").text
        assert "NOAUTH" in page and "queues.redis.password" in page, page[-2000:]
        assert "unexpected SCAN reply" not in page + tt.logs()
        wait_for(tt, lambda s: "NOAUTH" in tt.logs(), 10, "NOAUTH in the log")


def test_a_renamed_auth_never_shows_the_password(start_telltale):
    """The error quoted AUTH's arguments: the password reached the log and `/`."""
    password = "renamed-auth-secret-987"
    with own_redis("--rename-command", "AUTH", "", "--requirepass", "x") as port:
        tt = start_telltale(queue_config(f"redis://:{password}@127.0.0.1:{port}/0"))

        def errors(s) -> float:
            return s.get("telltale_collector_errors_total", collector="queues:default", reason="connect") or 0

        # Several runs: the first login, the runs during the backoff, a second login.
        wait_for(tt, lambda s: up(s) == 0 and errors(s) >= 4, 20, "a few failed logins")
        page = tt.get("/").text
        assert "unknown command" in page and "AUTH" in page, page[-2000:]
        for where, text in {"/": page, "/metrics": tt.metrics(), "logs": tt.logs()}.items():
            assert password not in text, f"the password appears in {where}"
            assert "with args beginning with" not in text, where


def test_a_sentinel_port_is_named_as_such(start_telltale):
    config = "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel monitor mymaster 127.0.0.1 1 1\n"
    with own_redis(config=config) as port:
        tt = start_telltale(queue_config(f"redis://127.0.0.1:{port}/0"))
        wait_for(tt, lambda s: up(s) == 0, 10, "the collector down")
        assert "Redis Sentinel" in tt.get("/").text


def test_cluster_errors_are_the_queues_error(start_telltale):
    """A cluster node answers CLUSTERDOWN while the cluster is incomplete, then MOVED for the
    slots another node serves: never zeros."""
    cluster = ("--cluster-enabled", "yes", "--cluster-node-timeout", "2000")
    with own_redis(*cluster) as port_a, own_redis(*cluster) as port_b:
        a, b = Redis(port_a, 0), Redis(port_b, 0)
        try:
            # Two hash tags, one in each half of the slots.
            tags = {a.cmd("CLUSTER", "KEYSLOT", f"{{t{i}}}") < 8192: f"{{t{i}}}" for i in range(50)}
            mine, theirs = tags[True], tags[False]
            a.cmd("CLUSTER", "ADDSLOTSRANGE", 0, 8191)
            b.cmd("CLUSTER", "ADDSLOTSRANGE", 8192, 16383)
            tt = start_telltale(queue_config(f"redis://127.0.0.1:{port_a}/0", discovery={"enabled": False},
                                             queues=[{"name": "q", "prefix": mine}, {"name": "q", "prefix": theirs}]))
            s, _ = wait_for(tt, lambda s: queue_up(s, "q", mine) == 0 and queue_up(s, "q", theirs) == 0, 10,
                            "both down while the cluster is down")
            assert "CLUSTERDOWN" in tt.get("/").text
            assert series_of(s, "q", mine) == [] and series_of(s, "q", theirs) == []

            a.cmd("CLUSTER", "MEET", "127.0.0.1", port_b)

            def served(s) -> bool:
                return queue_up(s, "q", mine) == 1 and queue_up(s, "q", theirs) == 0
            wait_for(tt, served, 30, "the node's own slots served, the other's MOVED")
            make_queue(a, "q", 2, prefix=mine)
            s, _ = wait_for(tt, lambda s: served(s) and s.get("telltale_queue_jobs", queue="q", prefix=mine,
                                                                state="waiting") == 2, 10, "counts of the served queue")
            assert series_of(s, "q", theirs) == []
            assert f"queue {theirs}:q: MOVED" in tt.get("/").text
            assert up(s) == 0
        finally:
            a.close()
            b.close()
