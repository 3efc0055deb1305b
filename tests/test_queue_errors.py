"""Regressions of the hardening issue for job queues: a Redis error reply is never a healthy
zero, login problems say what is wrong, errors never quote a command's arguments, and a
queue whose keys are gone disappears.

Uses the tests' Redis (database DB of test_queues.py) and, for servers configured
differently (a password, a renamed AUTH, Sentinel), redis-server processes of its own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import find_free_port
from test_queues import DB, Redis, qredis, queue_config, scrape, up, wait_for  # noqa: F401  (fixture)


def own_redis(*arguments: str, config: str = "") -> Iterator[int]:
    """A redis-server on a free port with extra arguments (or a config file); yields the port."""
    workdir = Path(tempfile.mkdtemp(prefix="ttqe-"))
    port = find_free_port()
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


def make_queue(r: Redis, name: str, waiting: int = 2) -> None:
    r.cmd("HSET", f"bull:{name}:meta", "version", "bullmq:5.0.0")
    r.cmd("SET", f"bull:{name}:id", waiting)
    if waiting:
        r.cmd("LPUSH", f"bull:{name}:wait", *[str(i) for i in range(1, waiting + 1)])


def queue_up(s, name: str) -> float | None:
    return s.get("telltale_queue_up", queue=name, prefix="bull")


def test_an_acl_that_does_not_cover_a_queue_is_that_queues_error(qredis, start_telltale, run_cli, tmp_path):
    """NOPERM read as zeros with telltale_collector_up 1 and `once` exiting 0."""
    make_queue(qredis.r, "allowed", 3)
    make_queue(qredis.r, "denied", 5)
    user, password = "tt_partial", "partial-pw-0123"
    qredis.r.cmd("ACL", "SETUSER", user, "reset", "on", ">" + password, "~bull:allowed:*", "&*", "+@all")
    try:
        url = f"redis://{user}:{password}@{qredis.host}:{qredis.port}/{DB}"
        config = queue_config(url, queues=["allowed", "denied"], discovery={"enabled": False})
        tt = start_telltale(config)
        s, _ = wait_for(tt, lambda s: queue_up(s, "denied") == 0 and queue_up(s, "allowed") == 1, 10, "queue_up 1 and 0")
        assert s.get("telltale_queue_jobs", queue="allowed", prefix="bull", state="waiting") == 3
        assert not [labels for labels, _ in s.find("telltale_queue_jobs") if labels["queue"] == "denied"], \
            "the denied queue must have no series"
        assert up(s) == 0
        assert (s.get("telltale_collector_errors_total", collector="queues", reason="redis_error") or 0) >= 1
        page = tt.get("/").text
        assert "bull:denied" in page and "NOPERM" in page, page[-2000:]
        (tmp_path / "once.yml").write_text(config)
        r = run_cli(["once", "--config", tmp_path / "once.yml"], timeout=60)
        assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    finally:
        qredis.r.cmd("ACL", "DELUSER", user)


def test_a_key_of_the_wrong_type_is_that_queues_error(qredis, start_telltale):
    make_queue(qredis.r, "fine", 1)
    make_queue(qredis.r, "broken", 0)
    qredis.r.cmd("SET", "bull:broken:wait", "not a list")
    tt = start_telltale(queue_config(qredis.url))
    s, _ = wait_for(tt, lambda s: queue_up(s, "broken") == 0 and queue_up(s, "fine") == 1, 10, "broken down, fine up")
    assert ("bull", "broken") not in s.queues()
    assert "WRONGTYPE" in tt.get("/").text


def test_an_obliterated_queue_disappears_at_the_next_run(qredis, start_telltale):
    make_queue(qredis.r, "gone", 2)
    make_queue(qredis.r, "stays", 1)
    tt = start_telltale(queue_config(qredis.url, discovery={"enabled": True, "interval": "1h"}))
    wait_for(tt, lambda s: ("bull", "gone") in s.queues(), 10, "the queue discovered")
    qredis.r.delete_matching("bull:gone:*")
    s, _ = wait_for(tt, lambda s: ("bull", "gone") not in s.queues() and queue_up(s, "gone") is None, 10,
                 "the obliterated queue gone (discovery runs only hourly)")
    assert ("bull", "stays") in s.queues() and up(s) == 1


def test_a_missing_password_says_noauth(start_telltale):
    for port in own_redis("--requirepass", "needed-pw-123"):
        tt = start_telltale(queue_config(f"redis://127.0.0.1:{port}/0"))
        wait_for(tt, lambda s: up(s) == 0, 10, "the collector down")
        page = tt.get("/").text
        assert "NOAUTH" in page and "unexpected SCAN reply" not in page, page[-2000:]


def test_a_renamed_auth_never_shows_the_password(start_telltale):
    """The error quoted AUTH's arguments: the password reached the log and `/`."""
    password = "renamed-auth-secret-987"
    for port in own_redis("--rename-command", "AUTH", "", "--requirepass", "x"):
        tt = start_telltale(queue_config(f"redis://:{password}@127.0.0.1:{port}/0"))
        wait_for(tt, lambda s: up(s) == 0, 10, "the collector down")
        time.sleep(1.5)  # a second attempt, after the reconnect backoff
        for where, text in {"/": tt.get("/").text, "/metrics": tt.metrics(), "logs": tt.logs()}.items():
            assert password not in text, f"the password appears in {where}"
        assert "unknown command" in tt.get("/").text


def test_a_sentinel_port_is_named_as_such(start_telltale):
    config = "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel monitor mymaster 127.0.0.1 1 1\n"
    for port in own_redis(config=config):
        tt = start_telltale(queue_config(f"redis://127.0.0.1:{port}/0"))
        wait_for(tt, lambda s: up(s) == 0, 10, "the collector down")
        assert "Sentinel" in tt.get("/").text
