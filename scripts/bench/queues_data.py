#!/usr/bin/env python3
"""Writes a synthetic BullMQ (v5/v6-style) layout into Redis, fast, with pipelines.

    queues_data.py --url redis://127.0.0.1:PORT/DB [--queues 1000] [--jobs 100000] [--seed 42]

Needs the `redis` package (it is in .venv-bullmq-v6). For each queue `bull:<name>:`:

  wait / paused     lists of job ids (LPUSH: the oldest at the right, where workers take)
  active            list, each job with a `<id>:lock` key (no expiry: the data is static)
  prioritized       zset, score priority * 2^32 + counter
  delayed           zset, score (due time in ms) * 4096 + counter, all due in the future
  waiting-children  zset, score timestamp
  completed/failed  zsets, score finishedOn
  meta              hash (opts.maxLenEvents, version; paused=1 on paused queues)
  id                the job-id counter
  marker            zset (BullMQ >= 5 wakes workers with it)
  events            stream with a few recent entries
  <id>              one hash per job: name, data, opts, timestamp, delay, priority, atm,
                    processedOn (active and finished jobs), finishedOn, returnvalue or
                    failedReason

Jobs are spread over the queues unevenly (seeded, reproducible) and over the states with
fixed weights; 5 % of the queues are paused (their waiting jobs sit in `paused`).
Prints one JSON document: totals per state (in getJobCounts() terms), keys, time taken.
"""
import argparse
import json
import random
import sys
import time

import redis

STATE_WEIGHTS = {"completed": 45, "failed": 10, "wait": 20, "delayed": 10,
                 "prioritized": 5, "active": 5, "waiting-children": 5}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", default="bull")
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--batch", type=int, default=20_000, help="commands per pipeline")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    client = redis.Redis.from_url(args.url)
    started = time.monotonic()
    now = int(time.time() * 1000)

    # Uneven queue sizes that sum exactly to --jobs.
    weights = [rng.paretovariate(1.5) for _ in range(args.queues)]
    total_weight = sum(weights)
    sizes = [int(args.jobs * w / total_weight) for w in weights]
    for index in rng.sample(range(args.queues), args.jobs - sum(sizes)):
        sizes[index] += 1
    paused_queues = set(rng.sample(range(args.queues), max(1, args.queues // 20)))

    states = list(STATE_WEIGHTS)
    state_weights = [STATE_WEIGHTS[s] for s in states]
    totals = {s: 0 for s in ["waiting", "paused", "active", "prioritized", "delayed",
                             "waiting-children", "completed", "failed"]}
    pipe = client.pipeline(transaction=False)
    pending = 0

    def flush(force=False):
        nonlocal pipe, pending
        if pending and (force or pending >= args.batch):
            pipe.execute()
            pipe = client.pipeline(transaction=False)
            pending = 0

    for q in range(args.queues):
        name = f"q{q:04d}"
        key = f"{args.prefix}:{name}:"
        paused = q in paused_queues
        meta = {"opts.maxLenEvents": "10000", "version": "bullmq:5.34.0"}
        if paused:
            meta["paused"] = "1"
        pipe.hset(key + "meta", mapping=meta)
        pipe.set(key + "id", sizes[q])
        pending += 2
        job_states = rng.choices(states, state_weights, k=sizes[q])
        wait_ids, active_ids = [], []
        zsets = {"prioritized": {}, "delayed": {}, "waiting-children": {}, "completed": {}, "failed": {}}
        for job_id, state in enumerate(job_states, start=1):
            jid = str(job_id)
            timestamp = now - rng.randint(60_000, 6 * 3_600_000)
            fields = {"name": f"task-{job_id % 7}", "data": json.dumps({"n": job_id, "payload": "x" * 40}),
                      "opts": json.dumps({"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}}),
                      "timestamp": timestamp, "delay": 0, "priority": 0, "atm": 0}
            if state == "wait":
                wait_ids.append(jid)
                totals["paused" if paused else "waiting"] += 1
            elif state == "active":
                fields["processedOn"] = now - rng.randint(100, 30_000)
                fields["atm"] = 0
                active_ids.append(jid)
                totals["active"] += 1
            elif state == "prioritized":
                priority = rng.randint(1, 10)
                fields["priority"] = priority
                zsets["prioritized"][jid] = priority * 2**32 + job_id
                totals["prioritized"] += 1
            elif state == "delayed":
                delay = rng.randint(60_000, 24 * 3_600_000)
                fields["delay"] = delay
                zsets["delayed"][jid] = (now + delay) * 4096 + (job_id & 0xFFF)
                totals["delayed"] += 1
            elif state == "waiting-children":
                zsets["waiting-children"][jid] = timestamp
                totals["waiting-children"] += 1
            else:  # completed / failed
                processed = timestamp + rng.randint(10, 60_000)
                finished = processed + rng.randint(5, 20_000)
                fields.update(processedOn=processed, finishedOn=finished, atm=1 if state == "completed" else 3)
                if state == "completed":
                    fields["returnvalue"] = json.dumps({"ok": True})
                else:
                    fields["failedReason"] = "boom"
                    fields["stacktrace"] = json.dumps(["Error: boom\n    at processor (worker.js:1:1)"])
                zsets[state][jid] = finished
                totals[state] += 1
            pipe.hset(key + jid, mapping=fields)
            pending += 1
        if wait_ids:
            pipe.lpush(key + ("paused" if paused else "wait"), *wait_ids)
            pending += 1
            if not paused:
                pipe.zadd(key + "marker", {"0": 0})
                pending += 1
        if active_ids:
            pipe.lpush(key + "active", *active_ids)
            pending += 1
            for jid in active_ids:
                pipe.set(f"{key}{jid}:lock", f"worker-token-{q}")
                pending += 1
        for zname, members in zsets.items():
            if members:
                pipe.zadd(key + zname, members)
                pending += 1
        for event in ("added", "waiting", "active", "completed")[: 1 + q % 4]:
            pipe.xadd(key + "events", {"event": event, "jobId": "1"}, maxlen=10000, approximate=True)
            pending += 1
        flush()
    flush(force=True)

    print(json.dumps({"queues": args.queues, "jobs": sum(sizes), "paused_queues": len(paused_queues),
                      "largest_queue": max(sizes), "smallest_queue": min(sizes),
                      "states": totals, "keys": client.dbsize(),
                      "used_memory_mb": round(client.info("memory")["used_memory"] / 2**20, 1),
                      "seconds": round(time.monotonic() - started, 2)}))


if __name__ == "__main__":
    sys.exit(main())
