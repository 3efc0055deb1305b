"""The demo's BullMQ workload: queues named as in the ops roadmap (``payments``,
``fulfillment``, ``emails``), written and worked by real Python ``bullmq`` workers.

Runs under a bullmq venv made by scripts/setup.sh (``.venv-bullmq-v6/bin/python``), never
under the pytest venv.

    python scripts/demo/queues.py [--redis URL] [--prefix bull] run
        Forever (until SIGINT/SIGTERM): a producer adds jobs to every queue, some delayed,
        some prioritised, some bound to fail and retried with backoff; a worker per queue
        completes or fails them. ``fulfillment`` is paused for PAUSE_SECONDS every
        PAUSE_EVERY_SECONDS, then resumed. Every BURST_EVERY_SECONDS a few e-mails bounce for
        good and stay in ``emails``' failed set for BURST_KEEP_SECONDS (the "failed jobs"
        alert fires, then resolves once they are cleaned).
    python scripts/demo/queues.py [--redis URL] [--prefix bull] fail N [--queue Q]
        Adds N jobs to Q (default payments) that fail for good and are kept in its failed
        set; prints their ids as JSON. Used by tests/test_demo_stack.py.

Ordinary jobs fail some attempts and are retried with backoff, but their last attempt always
succeeds: only the deliberate bursts (and `fail`) fail for good and sit in a failed set.
removeOnComplete keeps the completed sets small.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys

from bullmq import Queue, Worker

QUEUES = ("payments", "fulfillment", "emails")
PAUSED_QUEUE = "fulfillment"
PAUSE_EVERY_SECONDS = float(os.environ.get("TELLTALE_DEMO_PAUSE_EVERY", "240"))
PAUSE_SECONDS = float(os.environ.get("TELLTALE_DEMO_PAUSE_SECONDS", "60"))
BURST_EVERY_SECONDS = float(os.environ.get("TELLTALE_DEMO_BURST_EVERY", "600"))
BURST_KEEP_SECONDS = float(os.environ.get("TELLTALE_DEMO_BURST_KEEP", "300"))
PRODUCE_EVERY_SECONDS = 0.5

# Per queue: job names, share of attempts that fail, attempts, concurrency, work time range.
PROFILES = {
    "payments": {"names": ["capture", "refund", "ipn"], "fail": 0.15, "attempts": 3, "concurrency": 2,
                 "work": (0.05, 0.8)},
    "fulfillment": {"names": ["deliver-key", "reserve-stock"], "fail": 0.08, "attempts": 2, "concurrency": 2,
                    "work": (0.2, 1.5)},
    "emails": {"names": ["receipt", "welcome", "password-reset"], "fail": 0.10, "attempts": 2, "concurrency": 3,
               "work": (0.02, 0.3)},
}
KEEP = {"removeOnComplete": {"count": 500}, "removeOnFail": True}


def say(message: str) -> None:
    print(f"[queues] {message}", flush=True)


async def processor(job, token):
    """Ordinary jobs fail some attempts but never their last, so a retry always rescues them:
    only poison jobs fail for good (and then fire the "jobs failed" alerts)."""
    data = job.data or {}
    await asyncio.sleep(float(data.get("work", 0.1)))
    last_attempt = job.attemptsMade + 1 >= int((job.opts or {}).get("attempts", 1))
    if data.get("poison") or (not last_attempt and random.random() < float(data.get("fail", 0))):
        raise Exception(data.get("error", "upstream said no"))
    return "ok"


def ordinary_job(queue: str) -> tuple[str, dict, dict]:
    """One job of the queue's profile, with a mix of options: delayed, prioritised, retried."""
    profile = PROFILES[queue]
    lo, hi = profile["work"]
    data = {"work": round(random.uniform(lo, hi), 3), "fail": profile["fail"]}
    opts = {**KEEP, "attempts": profile["attempts"], "backoff": {"type": "exponential", "delay": 1000}}
    roll = random.random()
    if roll < 0.15:
        opts["delay"] = random.randint(2_000, 30_000)
    elif roll < 0.40:
        opts["priority"] = random.choice((1, 2, 5, 10))
    return random.choice(profile["names"]), data, opts


async def produce(queues: dict[str, Queue], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for name, queue in queues.items():
            await queue.add(*ordinary_job(name))
        await wait_or_stop(stop, PRODUCE_EVERY_SECONDS * random.uniform(0.5, 1.5))


async def pause_cycle(queue: Queue, stop: asyncio.Event) -> None:
    while not await wait_or_stop(stop, PAUSE_EVERY_SECONDS):
        say(f"pausing {PAUSED_QUEUE} for {PAUSE_SECONDS:.0f}s")
        await queue.pause()
        await wait_or_stop(stop, PAUSE_SECONDS)
        await queue.resume()
        say(f"resumed {PAUSED_QUEUE}")


async def add_poison(queue: Queue, count: int, error: str) -> list[str]:
    """Jobs that fail on their only attempt and stay in the failed set."""
    ids = []
    for _ in range(count):
        job = await queue.add("poison", {"work": 0.01, "poison": True, "error": error},
                              {"attempts": 1, "removeOnFail": False})
        ids.append(job.id)
    return ids


async def bounce_bursts(queue: Queue, stop: asyncio.Event) -> None:
    while not await wait_or_stop(stop, BURST_EVERY_SECONDS):
        say("3 e-mails bounce for good (failed set of emails)")
        await add_poison(queue, 3, "550 mailbox unavailable")
        if await wait_or_stop(stop, BURST_KEEP_SECONDS):
            return
        removed = await queue.clean(0, 1000, "failed")
        say(f"cleaned {len(removed)} failed e-mails")


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleeps; True when told to stop meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except asyncio.TimeoutError:
        return False


async def run(url: str, prefix: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    queues = {name: Queue(name, {"connection": url, "prefix": prefix}) for name in QUEUES}
    await queues[PAUSED_QUEUE].resume()  # a previous run may have stopped while it was paused
    workers = [Worker(name, processor, {"connection": url, "prefix": prefix, "drainDelay": 1,
                                        "concurrency": PROFILES[name]["concurrency"], "name": "demo"})
               for name in QUEUES]
    say(f"working {', '.join(QUEUES)} on {url} (prefix {prefix})")
    tasks = [asyncio.create_task(coro) for coro in (
        produce(queues, stop), pause_cycle(queues[PAUSED_QUEUE], stop), bounce_bursts(queues["emails"], stop))]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
    await asyncio.gather(*(q.close() for q in queues.values()), return_exceptions=True)
    say("stopped")


async def fail(url: str, prefix: str, queue_name: str, count: int) -> None:
    queue = Queue(queue_name, {"connection": url, "prefix": prefix})
    try:
        print(json.dumps({"queue": queue_name, "ids": await add_poison(queue, count, "told to fail")}))
    finally:
        await queue.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("TELLTALE_DEMO_REDIS_URL")
                        or os.environ.get("TELLTALE_REDIS_URL", "redis://127.0.0.1:25379"))
    parser.add_argument("--prefix", default="bull")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run")
    failing = commands.add_parser("fail")
    failing.add_argument("count", type=int)
    failing.add_argument("--queue", default="payments", choices=QUEUES)
    args = parser.parse_args()
    if args.command == "run":
        asyncio.run(run(args.redis, args.prefix))
    else:
        asyncio.run(fail(args.redis, args.prefix, args.queue, args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
