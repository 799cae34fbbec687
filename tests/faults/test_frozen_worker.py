"""A worker frozen (SIGSTOP, its pool too) for three leases while another one runs.

The other worker's sweep takes the frozen worker's messages over and runs them. When the
frozen worker wakes up it must not run the deliveries it was holding: only the tasks it was
executing when it froze may run twice (their process finishes them on waking).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.faults import app as fault_app
from tests.faults.harness import (
    Producer,
    Record,
    RedisServer,
    Workers,
    module_redis,
    point_at,
    wait_until,
)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

LEASE = 2.0
TASKS = 80


server = module_redis(aof=False)


def test_frozen_worker_runs_none_of_what_was_taken_over(
    server: RedisServer, tmp_path: Path
) -> None:
    record = Record(tmp_path / "record")
    env = point_at(server.url, server.url, record, lease=str(LEASE), prefetch="4")
    workers = Workers(tmp_path, env, "-c", "1")
    frozen, _other = workers.start(2)
    try:
        producer = Producer(lambda n: fault_app.record.delay(n, 0.2), pause=0.0)
        with producer.running(TASKS):
            wait_until(lambda: producer.calls >= TASKS, 30, "the producer")

        def started_there() -> int:  # (its pool process appears once it has started)
            pids = workers.pids(frozen)
            return sum(pid in pids for kind, _, pid in record.lines() if kind == "start")

        wait_until(lambda: started_there() >= 3, 30, "the first worker's third task")
        pids = workers.pids(frozen)
        workers.signal(frozen, signal.SIGSTOP)
        executing = record.interrupted(pids)
        time.sleep(LEASE * 3)
        workers.signal(frozen, signal.SIGCONT)
        sent = set(producer.sent)
        wait_until(lambda: sent <= set(record.ended()), 60, "every task to run")
        time.sleep(LEASE * 1.5)  # what the woken worker would run, it would run now
        ended = record.ended()
        twice = {n for n, c in ended.items() if c > 1}
        print(
            f"\nfrozen {LEASE * 3:.0f}s (lease {LEASE:.0f}s): {len(sent)} tasks, lost "
            f"{len(sent - set(ended))}, ran twice {len(twice)} (executing at the freeze: "
            f"{len(executing)})"
        )
        assert producer.unexpected == [] and producer.refused == []
        assert sent - set(ended) == set()
        assert twice <= executing
        log = workers.log(0)
        assert "was declared dead after" in log
        # Whether the stale lease is noticed before the first heartbeat after waking depends
        # on which the woken loop runs first: when it is, it is said once, not per delivery.
        assert log.count("starts none of the deliveries it holds") <= 1
    finally:
        workers.stop()
