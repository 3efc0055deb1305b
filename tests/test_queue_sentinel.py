"""Queues through Redis Sentinel (issue #12, point 3), end to end.

Each test starts its own master, replica (``--replicaof``) and one Sentinel on free
loopback ports (``own_redis`` of test_queue_errors.py), with a password on the data servers
and another one on the Sentinel, so that the two sets of credentials are kept apart.  Jobs
are written with the Python ``bullmq`` package (.venv-bullmq-v6, see test_queues.py) through
whichever server is the master.

Telltale's own connection to a server is told apart in ``CLIENT LIST TYPE normal`` by having
no name: the test's connections are named ``tt-test``, the Sentinel's ``sentinel-…``, and
the bullmq tool's are gone once it exits.
"""

from __future__ import annotations

import contextlib
import html
import json
import socket
import time
from typing import Any, Iterator

import pytest
import yaml

from helpers import collector_runs, wait_until
from test_queue_errors import own_redis
from test_queues import STATES, BullTool, QueueSamples, Redis, scrape, wait_for, wait_runs

SERVER_PASSWORD = "server-pw-5517"
SENTINEL_PASSWORD = "sentinel-pw-8823"
MASTER = "mymaster"


def collector() -> str:
    """The queue collector's name (becomes ``queues:default`` with several sources)."""
    return "queues:default"


def collector_up(s: QueueSamples) -> float | None:
    return s.get("telltale_collector_up", collector=collector())


class Conn(Redis):
    """A RESP connection that logs in first and names itself, so that it is not taken for
    Telltale's."""

    def __init__(self, port: int, password: str | None = SERVER_PASSWORD, name: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        self.db = 0
        if password:
            self.cmd("AUTH", password)
        if name:
            self.cmd("CLIENT", "SETNAME", "tt-test")


def command(port: int, *args: Any, password: str | None = SERVER_PASSWORD, name: bool = True) -> Any:
    c = Conn(port, password, name)
    try:
        return c.cmd(*args)
    finally:
        c.close()


def sentinel_command(port: int, *args: Any) -> Any:
    return command(port, *args, password=SENTINEL_PASSWORD, name=False)


def role(port: int) -> str | None:
    try:
        return command(port, "ROLE")[0]
    except OSError:
        return None


def telltale_connections(port: int) -> list[dict[str, str]]:
    """The unnamed normal clients of a server: Telltale's."""
    text = command(port, "CLIENT", "LIST", "TYPE", "normal")
    clients = [dict(field.split("=", 1) for field in line.split(" ") if "=" in field) for line in text.splitlines()]
    return [c for c in clients if c.get("name") == ""]


class Trio:
    """A master, its replica and a Sentinel that monitors them as ``mymaster``."""

    def __init__(self, master: int, replica: int, sentinel: int) -> None:
        self.master, self.replica, self.sentinel = master, replica, sentinel

    def tool(self, port: int) -> BullTool:
        return BullTool("v6", f"redis://:{SERVER_PASSWORD}@127.0.0.1:{port}/0")

    def sentinel_knows_a_healthy_replica(self) -> bool:
        replicas = sentinel_command(self.sentinel, "SENTINEL", "REPLICAS", MASTER) or []
        for entry in replicas:
            fields = dict(zip(entry[::2], entry[1::2]))
            flags = fields.get("flags", "").split(",")
            if fields.get("master-link-status") == "ok" and not {"s_down", "o_down", "disconnected"} & set(flags):
                return True
        return False


@contextlib.contextmanager
def sentinel_trio() -> Iterator[Trio]:
    auth = ("--requirepass", SERVER_PASSWORD, "--masterauth", SERVER_PASSWORD)
    with own_redis(*auth) as master:
        with own_redis(*auth, "--replicaof", "127.0.0.1", str(master)) as replica:
            config = "\n".join([
                "port {port}", "bind 127.0.0.1", "dir {dir}",
                f"requirepass {SENTINEL_PASSWORD}",
                f"sentinel monitor {MASTER} 127.0.0.1 {master} 1",
                f"sentinel auth-pass {MASTER} {SERVER_PASSWORD}",
                f"sentinel down-after-milliseconds {MASTER} 1000",
                f"sentinel failover-timeout {MASTER} 5000",
                "",
            ])
            with own_redis(config=config) as sentinel:
                trio = Trio(master, replica, sentinel)
                wait_until(lambda: command(replica, "ROLE")[3] == "connected", 20, "the replica in sync")
                wait_until(trio.sentinel_knows_a_healthy_replica, 30, "the Sentinel to know the replica")
                yield trio


def sentinel_config(trio: Trio, **sentinel: Any) -> str:
    block = {"master": MASTER, "addresses": [f"127.0.0.1:{trio.sentinel}"], "password": SENTINEL_PASSWORD}
    block.update(sentinel)
    config = {
        "collectors": {"host": {"enabled": False}, "process": {"enabled": False}},
        "queues": {
            "redis": {"sentinel": block, "password": SERVER_PASSWORD, "db": 0},
            "interval": "1s",
            "timeout": "1s",
            "prefixes": ["bull"],
            "discovery": {"enabled": True, "interval": "1s"},
        },
    }
    return yaml.safe_dump(config, sort_keys=False)


def add_jobs(tool: BullTool, queue: str, jobs: list[dict]) -> None:
    tool("add", queue, json.dumps(jobs))


def expected_counts(tool: BullTool, queues: list[str]) -> dict[tuple[str, str], float]:
    """{(queue, state): n} from getJobCounts() of every state."""
    out = {}
    for queue in queues:
        counts = tool("counts", queue)["all"]
        out.update({(queue, state): counts[state] for state in STATES})
    return out


def counts_equal(s: QueueSamples, expected: dict[tuple[str, str], float]) -> bool:
    jobs = s.jobs()
    return collector_up(s) == 1 and all(jobs.get(("bull", q, st)) == n for (q, st), n in expected.items())


def assert_no_secret(tt) -> None:
    texts = {"/": tt.get("/").text, "/metrics": tt.metrics(), "log": tt.logs()}
    for where, text in texts.items():
        for secret in (SERVER_PASSWORD, SENTINEL_PASSWORD):
            assert secret not in text, f"a password appears in {where}"


# ============================================================================ tests


def test_telltale_follows_a_failover(start_telltale):
    with sentinel_trio() as trio:
        old, new = trio.master, trio.replica
        tool = trio.tool(old)
        add_jobs(tool, "emails", [{"data": {"n": i}} for i in range(3)])
        add_jobs(tool, "reports", [{"data": {}, "opts": {"delay": 3_600_000}} for _ in range(2)])
        queues = ["emails", "reports"]
        expected = expected_counts(tool, queues)
        assert expected[("emails", "waiting")] == 3 and expected[("reports", "delayed")] == 2

        tt = start_telltale(sentinel_config(trio))
        wait_for(tt, lambda s: counts_equal(s, expected), 20, "counts equal to getJobCounts() before the failover")
        assert [c["addr"] for c in telltale_connections(old)], "Telltale reads the master"
        assert telltale_connections(new) == []
        # Everything written has reached the replica before it is promoted.
        assert command(old, "WAIT", 1, 10_000) == 1

        started = time.monotonic()
        assert sentinel_command(trio.sentinel, "SENTINEL", "FAILOVER", MASTER) == "OK"
        wait_until(lambda: role(new) == "master", 30, "the replica promoted")
        swapped, runs_at_swap = time.monotonic(), collector_runs(scrape(tt), collector())
        # The old master answers as a master until the Sentinel reconfigures it (up to 10 s
        # later): Telltale learns of the switch from the Sentinel itself.
        wait_until(lambda: telltale_connections(new) != [] and telltale_connections(old) == [], 30,
                   "Telltale connected to the new master, and no longer to the old one")
        followed, runs_at_follow = time.monotonic(), collector_runs(scrape(tt), collector())
        print(f"\nfailover: roles swapped {swapped - started:.1f} s after SENTINEL FAILOVER, Telltale followed "
              f"{followed - swapped:.1f} s ({runs_at_follow - runs_at_swap:.0f} runs) later")
        # Within two intervals (one more for a run under way when the roles swapped).
        assert runs_at_follow - runs_at_swap <= 3

        tool = trio.tool(new)
        add_jobs(tool, "emails", [{"data": {"n": 99}}])
        expected = expected_counts(tool, queues)
        assert expected[("emails", "waiting")] == 4
        s, _ = wait_for(tt, lambda s: counts_equal(s, expected), 20, "the new job counted")
        assert s.get("telltale_queue_up", queue="emails", prefix="bull") == 1
        # And it stays there, with the counts of the new master.
        wait_for(tt, lambda s: counts_equal(s, expected_counts(tool, queues)) and telltale_connections(new) != [],
                 10, "the counts still equal getJobCounts() of the new master")
        assert_no_secret(tt)


def test_read_from_replica_reads_the_replica(start_telltale):
    with sentinel_trio() as trio:
        tool = trio.tool(trio.master)
        add_jobs(tool, "emails", [{"data": {"n": i}} for i in range(2)])
        assert command(trio.master, "WAIT", 1, 10_000) == 1
        expected = expected_counts(tool, ["emails"])
        tt = start_telltale(sentinel_config(trio, read_from="replica"))
        s, _ = wait_for(tt, lambda s: counts_equal(s, expected), 20, "counts equal to getJobCounts(), read from the replica")
        # Workers connect to the master: the replica cannot count them, so no value at all.
        assert not s.find("telltale_queue_workers"), s.excerpt("telltale_queue_workers")
        connections = telltale_connections(trio.replica)
        assert connections, "Telltale's connection is on the replica"
        assert telltale_connections(trio.master) == [], "and not on the master"
        # Its reads are served there: the replica's command count grows with every run.
        calls = int(command(trio.replica, "INFO", "commandstats").split("cmdstat_llen:calls=")[1].split(",")[0])
        wait_until(lambda: int(command(trio.replica, "INFO", "commandstats")
                               .split("cmdstat_llen:calls=")[1].split(",")[0]) > calls, 10, "LLEN served by the replica")
        assert_no_secret(tt)


def test_reads_go_on_while_the_sentinel_is_away(start_telltale):
    """Once the server is known, a Sentinel that stops answering does not stop the reads."""
    with sentinel_trio() as trio:
        tool = trio.tool(trio.master)
        add_jobs(tool, "emails", [{"data": {"n": i}} for i in range(2)])
        expected = expected_counts(tool, ["emails"])
        tt = start_telltale(sentinel_config(trio))
        wait_for(tt, lambda s: counts_equal(s, expected), 20, "counts equal to getJobCounts()")
        with contextlib.suppress(OSError):  # the Sentinel closes the connection as it goes
            sentinel_command(trio.sentinel, "SHUTDOWN", "NOSAVE")
        wait_until(lambda: not can_connect(trio.sentinel), 10, "the Sentinel gone")
        s = wait_runs(tt, collector(), 4)
        assert counts_equal(s, expected), s.excerpt()
        assert telltale_connections(trio.master) != []


def can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("case", ["unknown master", "wrong sentinel password"])
def test_sentinel_problems_are_clear(start_telltale, case):
    with sentinel_trio() as trio:
        if case == "unknown master":
            config = sentinel_config(trio, master="nosuchmaster")
            wanted = f"sentinel 127.0.0.1:{trio.sentinel} does not know master 'nosuchmaster'"
        else:
            config = sentinel_config(trio, password="not-the-sentinel-pw")
            wanted = f"sentinel 127.0.0.1:{trio.sentinel} refused the login"
        tt = start_telltale(config)
        wait_for(tt, lambda s: collector_up(s) == 0, 15, "the collector down")
        page = html.unescape(tt.get("/").text)
        assert wanted in page, page[-2000:]
        if case == "wrong sentinel password":
            assert "WRONGPASS" in page and "not-the-sentinel-pw" not in page + tt.logs()
        assert telltale_connections(trio.master) == [] and telltale_connections(trio.replica) == []
        assert_no_secret(tt)
