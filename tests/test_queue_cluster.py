"""End-to-end tests of Telltale's queue collector on a Redis Cluster (issue #12, point 4).

A three-master cluster is made with ``redis-cli --cluster create`` from redis-server
processes of the tests' own (free ports whose bus port, port + 10000, is free too), and
real queues are written with the python ``bullmq`` package (3.x, the BullMQ v6 layout)
through redis-py's ``RedisCluster`` under hash-tagged prefixes that land on different
masters (tests/bullmq_fixtures/bullmq_tool.py ``--cluster``).

- Telltale, given one seed address, discovers the queues on every master and its counts
  equal bullmq's getJobCounts().
- A slot is moved mid-run (SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE): Telltale
  follows ASK and MOVED, and no scrape across the move shows a queue at zero or missing.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from typing import Any, Iterator

import pytest
import yaml

from helpers import promtool_check
from test_queue_errors import own_redis
from test_queues import STATES, VENVS, QueueSamples, Redis, BullTool, scrape, wait_for, wait_runs

# The collector's name: one line to change when sources get names (`queues:<name>`).
COLLECTOR = "queues:default"
SLOTS = 16384


def collector_up(s: QueueSamples) -> float | None:
    return s.get("telltale_collector_up", collector=COLLECTOR)


def queue_up(s: QueueSamples, prefix: str, queue: str) -> float | None:
    return s.get("telltale_queue_up", prefix=prefix, queue=queue)


def cluster_config(ports: list[int], prefixes: list[str], **queues: Any) -> str:
    """Host and process collectors off; a 1 s queue collector on the cluster, by one seed."""
    section = {
        "redis": {"cluster": {"addresses": [f"127.0.0.1:{ports[0]}"]}},
        "interval": "1s",
        "timeout": "1s",
        "prefixes": prefixes,
        "discovery": {"enabled": True, "interval": "1s"},
    }
    section.update(queues)
    config = {"collectors": {"host": {"enabled": False}, "process": {"enabled": False}}, "queues": section}
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


class Cluster:
    """Three masters, each a RESP connection, with their ids and slot ranges."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.nodes = {port: Redis(port, 0) for port in ports}

    def close(self) -> None:
        for r in self.nodes.values():
            r.close()

    def node_id(self, port: int) -> str:
        return self.nodes[port].cmd("CLUSTER", "MYID")

    def slot(self, key: str) -> int:
        return self.nodes[self.ports[0]].cmd("CLUSTER", "KEYSLOT", key)

    def owners(self, port: int | None = None) -> dict[int, int]:
        """{slot: port of its master} as one node sees it."""
        owners = {}
        for first, last, master, *_ in self.nodes[port or self.ports[0]].cmd("CLUSTER", "SLOTS"):
            for slot in range(first, last + 1):
                owners[slot] = int(master[1])
        return owners

    def owner(self, key: str) -> int:
        return self.owners()[self.slot(key)]

    def consistent(self) -> bool:
        """Every node says the cluster is ok and sees the same slot map."""
        try:
            if any("cluster_state:ok" not in r.cmd("CLUSTER", "INFO") for r in self.nodes.values()):
                return False
            maps = [self.owners(port) for port in self.ports]
        except (OSError, ValueError):
            return False
        return all(m == maps[0] for m in maps) and len(maps[0]) == SLOTS

    def flush(self) -> None:
        for r in self.nodes.values():
            r.cmd("FLUSHALL")

    def wait_consistent(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.consistent():
            assert time.monotonic() < deadline, "the cluster did not settle"
            time.sleep(0.1)


@contextlib.contextmanager
def three_masters(*flags: str) -> Iterator[Cluster]:
    """Three cluster-enabled redis-servers joined by `redis-cli --cluster create`."""
    if not shutil.which("redis-cli"):
        pytest.fail("redis-cli not found (Debian's redis-tools)", pytrace=False)
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(own_redis("--cluster-enabled", "yes", *flags)) for _ in range(3)]
        r = subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-yes"],
                           capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"redis-cli --cluster create failed\n{r.stdout}\n{r.stderr}"
        c = Cluster(ports)
        stack.callback(c.close)
        c.wait_consistent()
        yield c


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with three_masters("--cluster-node-timeout", "5000") as c:
        yield c


@pytest.fixture
def fresh(cluster: Cluster) -> Iterator[Cluster]:
    cluster.wait_consistent()
    cluster.flush()
    yield cluster
    cluster.flush()


def spread_tags(c: Cluster, count: int) -> list[str]:
    """`count` hash-tagged prefixes, each on a different master, "{bull}" first if it can."""
    chosen: dict[int, str] = {}
    for tag in ["bull", "a", "b", "c", "x", "y", "z"] + [f"t{i}" for i in range(100)]:
        chosen.setdefault(c.owner("{" + tag + "}"), "{" + tag + "}")
        if len(chosen) == count:
            return sorted(chosen.values())
    raise AssertionError("no hash tags on every master")


def tool(c: Cluster) -> BullTool:
    t = BullTool("v6", f"redis://127.0.0.1:{c.ports[0]}")
    if not (VENVS["v6"] / "bin" / "python").exists():
        pytest.fail("the bullmq v6 venv is missing: run scripts/setup.sh", pytrace=False)
    return t


def run_tools(t: BullTool, calls: list[tuple]) -> list[Any]:
    """Runs bullmq_tool calls in parallel (each its own process); their JSON outputs in order."""
    procs = [t.popen(*args, "--cluster") for args in calls]
    outs = []
    for args, p in zip(calls, procs):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"bullmq_tool {args} exited {p.returncode}\n{out}\n{err}"
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


def mismatches(s: QueueSamples, expected: dict[tuple[str, str], dict[str, int]]) -> list[str]:
    """Every way a scrape differs from the expected counts: collector or queue down, a
    queue missing, a count other than getJobCounts()'s."""
    problems = []
    if collector_up(s) != 1:
        problems.append(f"telltale_collector_up {collector_up(s)}")
    jobs = s.jobs()
    for (prefix, queue), counts in sorted(expected.items()):
        if queue_up(s, prefix, queue) != 1:
            problems.append(f"{prefix}:{queue} telltale_queue_up {queue_up(s, prefix, queue)}")
        for state in STATES:
            if jobs.get((prefix, queue, state)) != counts[state]:
                problems.append(f"{prefix}:{queue} {state}: telltale {jobs.get((prefix, queue, state))}, "
                                f"bullmq {counts[state]}")
    return problems


def test_counts_equal_get_job_counts_on_every_master(fresh, start_telltale):
    """Queues under three hash tags, one per master; Telltale is given one seed address,
    discovers them all and counts exactly what getJobCounts() does."""
    c = fresh
    prefixes = spread_tags(c, 3)
    assert len({c.owner(p) for p in prefixes}) == 3
    t = tool(c)
    results = run_tools(t, [("scenario", "--prefix", p) for p in prefixes])
    expected = {(e["prefix"], e["queue"]): e["all"] for result in results for e in result.values()}
    assert len(expected) == 9, expected
    # The queues really are on three masters.
    for prefix in prefixes:
        owner = c.owner(prefix)
        assert c.nodes[owner].cmd("EXISTS", f"{prefix}:mixed:meta") == 1

    tt = start_telltale(cluster_config(c.ports, prefixes))
    s, _ = wait_for(tt, lambda s: s.queues() == set(expected), 20, "queues on every master discovered")
    try:
        s, _ = wait_for(tt, lambda s: not mismatches(s, expected), 10, "counts equal to getJobCounts()")
    except AssertionError:
        pass  # the exact comparison below shows what differs
    problems = mismatches(s, expected)
    assert not problems, "\n".join(problems) + "\n--- scrape ---\n" + s.excerpt("telltale_queue_jobs{")
    for (prefix, queue) in expected:
        paused = s.get("telltale_queue_paused", prefix=prefix, queue=queue)
        assert paused == (1 if queue == "paused" else 0), (prefix, queue, paused)
    # One round trip per node and pipeline, nodes in parallel; never one per queue: per run
    # the counts and the follow-up (3 nodes each), discovery's SCANs (one per prefix per
    # master) and the slot map's first read.
    first = scrape(tt)
    s2 = wait_runs(tt, COLLECTOR, runs=3)
    runs = (s2.get("telltale_collector_duration_seconds_count", collector=COLLECTOR)
            - first.get("telltale_collector_duration_seconds_count", collector=COLLECTOR))
    trips = (s2.get("telltale_redis_round_trips_total", collector=COLLECTOR)
             - first.get("telltale_redis_round_trips_total", collector=COLLECTOR))
    assert trips / runs <= 3 + 3 + 9 + 1, (trips, runs)
    promtool_check(tt.metrics())


class Poller:
    """Scrapes /metrics in a loop on a thread, keeping every scrape's problems."""

    def __init__(self, tt, expected: dict[tuple[str, str], dict[str, int]]) -> None:
        self.tt, self.expected = tt, expected
        self.scrapes = 0
        self.bad: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                s = scrape(self.tt, parse=QueueSamples)
            except Exception as error:  # noqa: BLE001 - a failed scrape is a finding
                self.bad.append(f"scrape {self.scrapes}: {error!r}")
                continue
            self.scrapes += 1
            problems = mismatches(s, self.expected)
            if problems:
                self.bad.append(f"scrape {self.scrapes}: " + "; ".join(problems[:5]))
            time.sleep(0.05)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_a_slot_moved_mid_run_leaves_no_gap(fresh, start_telltale):
    """While Telltale collects every second, the slot of one hash tag moves to another
    master, key by key as redis-cli --cluster reshard does: the queues on it are read
    through ASK while the slot is half-moved and through MOVED once it is moved; every
    scrape across the move shows every queue with its exact counts."""
    c = fresh
    moving, staying = spread_tags(c, 2)
    t = tool(c)
    jobs = json.dumps([{"data": {"n": i}} for i in range(3)] + [{"data": {}, "opts": {"delay": 3_600_000}}]
                      + [{"data": {}, "opts": {"priority": 2}} for _ in range(2)])
    calls = [("add", q, jobs, "--prefix", p) for p in (moving, staying) for q in ("one", "two")]
    run_tools(t, calls)
    counts = run_tools(t, [("counts", q, "--prefix", p) for p in (moving, staying) for q in ("one", "two")])
    expected = {(p, q): out["all"] for (_, q, _, _, p), out in zip(calls, counts)}
    assert all(e["waiting"] == 3 and e["delayed"] == 1 and e["prioritized"] == 2 for e in expected.values()), expected

    slot = c.slot(moving)
    source = c.owner(moving)
    target = next(p for p in c.ports if p not in (source, c.owner(staying)))
    src, dst = c.nodes[source], c.nodes[target]
    src_id, dst_id = c.node_id(source), c.node_id(target)

    # The queues listed, discovery off: a discovery pass scans the masters one after another,
    # and one that scans the target before the keys arrive and the source after they left
    # would not see them (until the next pass).
    tt = start_telltale(cluster_config(c.ports, [moving, staying], discovery={"enabled": False},
                                       queues=[{"name": q, "prefix": p} for (p, q) in expected]))
    wait_for(tt, lambda s: not mismatches(s, expected), 20, "counts before the move")
    poller = Poller(tt, expected)
    try:
        # Half-moved: the slot is migrating, its keys still on the source.
        dst.cmd("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.cmd("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        wait_runs(tt, COLLECTOR, runs=2)
        # Every key moved, the slot still the source's: the source answers ASK.
        keys = src.cmd("CLUSTER", "GETKEYSINSLOT", slot, 10_000)
        assert len(keys) > 10, keys
        assert src.cmd("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys) == "OK"
        assert src.cmd("CLUSTER", "GETKEYSINSLOT", slot, 10) == []
        wait_runs(tt, COLLECTOR, runs=2)
        # The target owns the slot (the source still migrating: ASK), then every node knows
        # it: the source answers MOVED to Telltale's old map.
        dst.cmd("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        wait_runs(tt, COLLECTOR, runs=2)
        for port in c.ports:
            if port != target:
                c.nodes[port].cmd("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        c.wait_consistent()
        assert c.owner(moving) == target
        wait_runs(tt, COLLECTOR, runs=3)
    finally:
        poller.finish()
    assert poller.scrapes >= 10, poller.scrapes
    assert not poller.bad, "\n".join(poller.bad[:20])
    s = scrape(tt)
    assert not mismatches(s, expected)
    status = tt.get("/").text
    assert "MOVED" not in status and "TRYAGAIN" not in status, status


def test_an_unreachable_master_fails_only_its_queues(start_telltale):
    """A master shut down (on a cluster that serves the other slots without it): its queues
    read telltale_queue_up 0, the queues on the other masters keep their exact counts, and
    discovery goes on scanning the masters that answer."""
    with three_masters("--cluster-node-timeout", "2000", "--cluster-require-full-coverage", "no") as c:
        prefixes = spread_tags(c, 3)
        t = tool(c)
        jobs = json.dumps([{"data": {"n": i}} for i in range(2)])
        calls = [("add", "q", jobs, "--prefix", p) for p in prefixes]
        run_tools(t, calls)
        expected = {(p, "q"): {s: (2 if s == "waiting" else 0) for s in STATES} for p in prefixes}
        tt = start_telltale(cluster_config(c.ports, prefixes))
        wait_for(tt, lambda s: not mismatches(s, expected), 20, "counts on every master")

        down = prefixes[1]
        port = c.owner(down)
        with contextlib.suppress(Exception):
            c.nodes[port].cmd("SHUTDOWN", "NOSAVE")
        alive = {k: v for k, v in expected.items() if k[0] != down}

        def others_fine_and_down_is_down(s: QueueSamples) -> bool:
            fine = not [p for p in mismatches(s, alive) if "telltale_collector_up" not in p]
            return fine and queue_up(s, down, "q") == 0
        wait_for(tt, others_fine_and_down_is_down, 20, "the other masters' queues read, the stopped one's down")
        # And it stays so, run after run (discovery included: it runs every second here).
        for _ in range(3):
            s = wait_runs(tt, COLLECTOR, runs=1)
            assert others_fine_and_down_is_down(s), s.excerpt("telltale_queue_up", "telltale_queue_jobs{")
            assert s.get("telltale_queue_jobs", prefix=down, queue="q", state="waiting") is None
        assert "unreachable" in tt.get("/").text
