"""Several `queues:` sources in one configuration, and what Telltale reads of each Redis
itself (INFO): each source is its own collector `queues:<name>`, labelled `redis=<name>`,
and fails alone."""
from __future__ import annotations

import os
import signal

import yaml

from test_queue_errors import make_queue, own_redis
from test_queues import DB, QueueSamples, Redis, wait_for


def two_sources(port_a: int, port_b: int) -> str:
    source = {"interval": "1s", "timeout": "1s", "discovery": {"enabled": True, "interval": "1s"}}
    return yaml.safe_dump({
        "collectors": {"host": {"enabled": False}, "process": {"enabled": False}},
        "queues": [{"name": "app", "redis": {"url": f"redis://127.0.0.1:{port_a}/{DB}"}, **source},
                   {"name": "billing", "redis": {"url": f"redis://127.0.0.1:{port_b}/{DB}"}, **source}],
    }, sort_keys=False)


def source_up(s: QueueSamples, name: str) -> float | None:
    return s.get("telltale_collector_up", collector=f"queues:{name}")


def waiting(s: QueueSamples, redis: str, queue: str) -> float | None:
    return s.get("telltale_queue_jobs", redis=redis, queue=queue, state="waiting")


def test_two_redis_instances_are_two_sources_that_fail_alone(start_telltale):
    with own_redis("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru") as port_a, own_redis() as port_b:
        a, b = Redis(port_a, DB), Redis(port_b, DB)
        make_queue(a, "emails", waiting=3)
        make_queue(b, "emails", waiting=5)  # the same queue name in the other Redis
        make_queue(b, "invoices", waiting=1)
        tt = start_telltale(two_sources(port_a, port_b))
        s, _ = wait_for(tt, lambda s: waiting(s, "app", "emails") == 3 and waiting(s, "billing", "emails") == 5
                        and waiting(s, "billing", "invoices") == 1, 15, "both sources' queues")
        assert waiting(s, "app", "invoices") is None
        assert source_up(s, "app") == 1 and source_up(s, "billing") == 1

        # The Redis itself, per source and server.
        node_a = {"redis": "app", "node": f"127.0.0.1:{port_a}"}
        info = s.find("telltale_redis_info", **node_a)
        assert len(info) == 1, s.excerpt("telltale_redis_")
        labels = info[0][0]
        assert labels["role"] == "master" and labels["maxmemory_policy"] == "allkeys-lru"
        assert labels["version"] == a.cmd("INFO", "server").split("redis_version:")[1].split("\r\n")[0]
        assert s.get("telltale_redis_memory_max_bytes", **node_a) == 64 * 1024 * 1024
        assert 0 < s.get("telltale_redis_memory_used_ratio", **node_a) < 1
        assert s.get("telltale_redis_memory_used_bytes", **node_a) > 0
        assert s.get("telltale_redis_connected_clients", **node_a) >= 2  # ours and Telltale's
        assert s.get("telltale_redis_evicted_keys_total", **node_a) == 0
        assert s.get("telltale_redis_rejected_connections_total", **node_a) == 0
        node_b = {"redis": "billing", "node": f"127.0.0.1:{port_b}"}
        assert s.get("telltale_redis_memory_max_bytes", **node_b) == 0
        assert s.get("telltale_redis_memory_used_ratio", **node_b) is None  # no limit, no ratio
        assert s.get("telltale_redis_up", redis="app") == 1 and s.get("telltale_redis_up", redis="billing") == 1

        # One Redis frozen: its source goes down, the other keeps reporting.
        pid = int(b.cmd("INFO", "server").split("process_id:")[1].split("\r\n")[0])
        os.kill(pid, signal.SIGSTOP)
        try:
            s, _ = wait_for(tt, lambda s: source_up(s, "billing") == 0 and s.get("telltale_redis_up", redis="billing") == 0,
                            30, "billing down")
            make_queue(a, "sms", waiting=2)
            s, _ = wait_for(tt, lambda s: waiting(s, "app", "sms") == 2, 30, "app still collected")
            assert source_up(s, "app") == 1 and s.get("telltale_redis_up", redis="app") == 1
            assert s.get("telltale_queue_up", redis="billing", queue="emails") == 0
            assert waiting(s, "billing", "emails") is None  # down: absent, never 0
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(tt, lambda s: source_up(s, "billing") == 1 and waiting(s, "billing", "emails") == 5, 45, "billing back")
        a.close()
        b.close()


def test_a_cluster_prefix_without_a_hash_tag_is_a_warning(run_cli, tmp_path):
    """Valid (exit 0) but named: BullMQ on a cluster needs a hash tag in the prefix."""
    path = tmp_path / "cluster.yml"
    path.write_text(yaml.safe_dump({"queues": [
        {"name": "big", "redis": {"cluster": {"addresses": ["127.0.0.1:7000"]}}, "prefixes": ["bull", "{tagged}"]},
        {"name": "plain", "redis": {"url": "redis://127.0.0.1:6379"}, "prefixes": ["bull"]}]}))
    result = run_cli(["check-config", "--config", path])
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and 'prefix "bull" has no hash tag' in warnings[0], result.stderr
