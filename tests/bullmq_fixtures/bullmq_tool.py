"""Drive real BullMQ queues for tests/test_queues.py.

Runs under one of the bullmq venvs (.venv-bullmq-v5: python bullmq 2.x, the BullMQ v5
Redis layout; .venv-bullmq-v6: python bullmq 3.x, the v6 layout), never under the
pytest venv.  Every subcommand prints exactly one JSON document on stdout.

    python bullmq_tool.py URL version
    python bullmq_tool.py URL scenario [--prefix P] [--tagged-prefix P2]
        Builds the standard set of queues (see SCENARIO below), quiesces them and
        prints, for each queue, bullmq's own getJobCounts() (default states and all
        eight states asked explicitly) and isPaused(), read after every worker closed.
    python bullmq_tool.py URL add QUEUE JOBS_JSON [--prefix P]
        Adds jobs ([{"name", "data", "opts"}]) and prints their ids.
    python bullmq_tool.py URL process QUEUE JOBS_JSON [--prefix P] [--concurrency N]
        Adds the jobs, runs one worker until every attempt of every job has finished,
        closes it, and prints timings plus get_workers_count() seen while it ran.
        Job data: {"sleep": seconds, "fail": bool}.
    python bullmq_tool.py URL counts QUEUE [--prefix P]
        Prints getJobCounts() (default and all eight states) and isPaused().
    python bullmq_tool.py URL flow PARENT_QUEUE CHILD_QUEUE N_CHILDREN [--prefix P]

    --cluster: URL is one node of a Redis Cluster, reached through redis-py's RedisCluster
    (bullmq 3.x works on a cluster, with hash-tagged prefixes; its addBulk does not, so jobs
    are added one by one, as everywhere here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import bullmq
from bullmq import FlowProducer, Queue, Worker

ALL_STATES = ["waiting", "paused", "active", "prioritized", "delayed",
              "waiting-children", "completed", "failed"]
HOUR_MS = 3_600_000
CLUSTER = False  # --cluster: connections are RedisCluster clients


def connection(url: str):
    if not CLUSTER:
        return url
    from redis.asyncio.cluster import RedisCluster
    return RedisCluster.from_url(url, decode_responses=True)


def queue_opts(url: str, prefix: str) -> dict:
    return {"connection": connection(url), "prefix": prefix}


def worker_opts(url: str, prefix: str, concurrency: int = 1) -> dict:
    # A short drainDelay: bullmq 2.x's close() otherwise waits out a 5 s BZPOPMIN.
    return {"connection": connection(url), "prefix": prefix, "concurrency": concurrency,
            "drainDelay": 0.2, "name": "tt-test"}


async def processor(job, token):
    data = job.data or {}
    if data.get("sleep"):
        await asyncio.sleep(float(data["sleep"]))
    if data.get("fail"):
        raise Exception("told to fail")
    return "done"


async def counts_of(queue: Queue) -> dict:
    return {
        "default": await queue.getJobCounts(),
        "all": await queue.getJobCounts(*ALL_STATES),
        "is_paused": bool(await queue.isPaused()),
    }


async def run_worker(url: str, prefix: str, name: str, expected_attempts: int,
                     concurrency: int = 1, timeout: float = 30.0) -> dict:
    """Runs a worker until ``expected_attempts`` attempts ended (completed or failed)."""
    finished = {"completed": 0, "failed": 0}
    done = asyncio.Event()
    workers_seen: list[int] = []

    def on(kind):
        def handler(*_args):
            finished[kind] += 1
            if finished["completed"] + finished["failed"] >= expected_attempts:
                done.set()
        return handler

    started = time.time()
    worker = Worker(name, processor, worker_opts(url, prefix, concurrency))
    worker.on("completed", on("completed"))
    worker.on("failed", on("failed"))
    probe = Queue(name, queue_opts(url, prefix))
    try:
        if expected_attempts > 0:
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except asyncio.TimeoutError:
                raise SystemExit(f"worker on {name}: only {finished} of {expected_attempts} attempts in {timeout}s")
        workers_seen.append(await probe.get_workers_count())
    finally:
        await worker.close()
        await probe.close()
    return {"attempts": finished, "seconds": time.time() - started, "workers_seen": workers_seen}


def attempts_of(jobs: list[dict]) -> int:
    total = 0
    for job in jobs:
        data, opts = job.get("data") or {}, job.get("opts") or {}
        total += int(opts.get("attempts", 1)) if data.get("fail") else 1
    return total


async def add_jobs(queue: Queue, jobs: list[dict]) -> list[str]:
    ids = []
    for job in jobs:
        added = await queue.add(job.get("name", "job"), job.get("data") or {}, job.get("opts") or {})
        ids.append(added.id)
    return ids


# ------------------------------------------------------------------ scenario
#
#   mixed      10 jobs run by a worker (6 complete, 4 fail), then with no worker:
#              3 waiting, 2 delayed (1 h), 3 prioritized (priority 1, 3, 7)
#   paused     3 jobs, pause(), 2 more jobs, 1 delayed job: paused, nothing processed
#   removed    5 jobs with removeOnComplete (completed stays 0), 2 failing ones kept
#   flowparent 1 parent (waiting-children) of 2 children waiting in flowchild (not with --cluster)
#   tagged     under the hash-tag prefix: 2 waiting, 1 completed, 1 prioritized


async def scenario(url: str, prefix: str, tagged: str | None) -> dict:
    queues: dict[tuple[str, str], Queue] = {}

    def q(name: str, pfx: str = prefix) -> Queue:
        if (pfx, name) not in queues:
            queues[(pfx, name)] = Queue(name, queue_opts(url, pfx))
        return queues[(pfx, name)]

    # mixed
    jobs = [{"data": {"n": i, "fail": i % 5 in (1, 3)}} for i in range(10)]
    await add_jobs(q("mixed"), jobs)
    await run_worker(url, prefix, "mixed", attempts_of(jobs), concurrency=4)
    await add_jobs(q("mixed"), [{"data": {"n": i}} for i in range(3)])
    await add_jobs(q("mixed"), [{"data": {}, "opts": {"delay": HOUR_MS}} for _ in range(2)])
    await add_jobs(q("mixed"), [{"data": {}, "opts": {"priority": p}} for p in (1, 3, 7)])

    # paused
    await add_jobs(q("paused"), [{"data": {"n": i}} for i in range(3)])
    await q("paused").pause()
    await add_jobs(q("paused"), [{"data": {"n": i}} for i in range(2)])
    await add_jobs(q("paused"), [{"data": {}, "opts": {"delay": HOUR_MS}}])

    # removed
    jobs = [{"data": {"n": i}, "opts": {"removeOnComplete": True}} for i in range(5)]
    jobs += [{"data": {"fail": True}} for _ in range(2)]
    await add_jobs(q("removed"), jobs)
    await run_worker(url, prefix, "removed", attempts_of(jobs), concurrency=3)

    # flow (not on a cluster: python bullmq adds a flow with a pipelined EVALSHA, which
    # redis-py's RedisCluster refuses)
    if not CLUSTER:
        flow = FlowProducer(connection(url), {"prefix": prefix})
        try:
            await flow.add({
                "name": "parent", "queueName": "flowparent", "data": {},
                "children": [{"name": "child", "queueName": "flowchild", "data": {"c": i}} for i in range(2)],
            })
        finally:
            await flow.close()
        q("flowparent"), q("flowchild")

    if tagged:
        jobs = [{"data": {"n": 0}}]
        await add_jobs(q("tagged", tagged), jobs)
        await run_worker(url, tagged, "tagged", 1)
        await add_jobs(q("tagged", tagged), [{"data": {"n": i}} for i in range(2)])
        await add_jobs(q("tagged", tagged), [{"data": {}, "opts": {"priority": 2}}])

    # Every worker is closed: nothing moves any more, so these are "the same moment".
    result = {}
    for (pfx, name), queue in sorted(queues.items()):
        result[f"{pfx}|{name}"] = {"prefix": pfx, "queue": name, **await counts_of(queue)}
    for queue in queues.values():
        await queue.close()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("command")
    parser.add_argument("args", nargs="*")
    parser.add_argument("--prefix", default="bull")
    parser.add_argument("--tagged-prefix")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--cluster", action="store_true")
    a = parser.parse_args()
    global CLUSTER
    CLUSTER = a.cluster
    if a.command == "version":
        out = {"bullmq": bullmq.__version__}
    elif a.command == "scenario":
        out = await scenario(a.url, a.prefix, a.tagged_prefix)
    elif a.command == "add":
        queue = Queue(a.args[0], queue_opts(a.url, a.prefix))
        out = {"ids": await add_jobs(queue, json.loads(a.args[1])), "now_ms": time.time() * 1000}
        await queue.close()
    elif a.command == "process":
        name, jobs = a.args[0], json.loads(a.args[1])
        queue = Queue(name, queue_opts(a.url, a.prefix))
        ids = await add_jobs(queue, jobs)
        await queue.close()
        out = {"ids": ids, **await run_worker(a.url, a.prefix, name, attempts_of(jobs), a.concurrency)}
    elif a.command == "counts":
        queue = Queue(a.args[0], queue_opts(a.url, a.prefix))
        out = await counts_of(queue)
        await queue.close()
    elif a.command == "flow":
        flow = FlowProducer(connection(a.url), {"prefix": a.prefix})
        await flow.add({
            "name": "parent", "queueName": a.args[0], "data": {},
            "children": [{"name": "child", "queueName": a.args[1], "data": {"c": i}} for i in range(int(a.args[2]))],
        })
        await flow.close()
        out = {}
    else:
        raise SystemExit(f"unknown command {a.command}")
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    asyncio.run(main())
