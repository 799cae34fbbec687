"""Redis killed (SIGKILL) and restarted on the same port while two workers run tasks.

With an append-only file nothing that Redis acknowledged is lost; the outage is shorter
than the lease, so the workers keep their finished tasks' acks and results, write them once
Redis is back, and no task runs twice. Producers calling ``delay()`` during the outage wait
for Redis (the publish retry policy) or raise OperationalError.
"""

from __future__ import annotations

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

pytestmark = [pytest.mark.redis, pytest.mark.timeout(150)]

OUTAGE = 5.0
TASKS = 400


server = module_redis(aof=True)


def test_outage_shorter_than_lease_loses_nothing_and_runs_nothing_twice(
    server: RedisServer, tmp_path: Path
) -> None:
    record = Record(tmp_path / "record")
    env = point_at(server.url, server.url, record)
    workers = Workers(tmp_path, env, "-c", "2")
    workers.start(2)
    try:
        producer = Producer(lambda n: fault_app.record.delay(n, 0.02), pause=0.01)
        with producer.running(TASKS):
            wait_until(lambda: len(record.ended()) >= 50, 60, "the first 50 tasks")
            server.kill()
            killed = time.monotonic()
            time.sleep(OUTAGE)
            server.start()
            back = time.monotonic()
            before = sum(record.ended().values())
            wait_until(lambda: sum(record.ended().values()) > before, 60, "a task after restart")
            recovered = time.monotonic() - back
            wait_until(lambda: producer.calls >= TASKS, 120, "the producer")
        sent = set(producer.sent)
        wait_until(lambda: sent <= set(record.ended()), 90, "every sent task to run")
        # A worker giving back acks it failed to write would show now: its warm shutdown
        # puts them back and the other worker runs them again.
        workers.procs[0].terminate()
        workers.procs[0].wait(30)
        time.sleep(2.0)
        assert [(type(e), str(e)) for e in producer.unexpected] == []
        ended = record.ended()
        lost = sent - set(ended)
        twice = {n: c for n, c in ended.items() if c > 1 and n not in producer.resent}
        print(
            f"\nredis outage {OUTAGE:.0f}s (AOF): sent {len(sent)}, refused "
            f"{len(producer.refused)}, lost {len(lost)}, ran twice {len(twice)} (+ "
            f"{sum(ended[n] > 1 for n in producer.resent)} of {len(producer.resent)} "
            "publishes sent again after a lost reply), "
            f"first task {recovered:.2f}s after restart, outage began {killed:.0f}"
        )
        assert lost == set()
        assert twice == {}
        logs = workers.logs()
        assert "will be redelivered" not in logs
        assert "storing results failed" not in logs
        assert "was declared dead" not in logs
        last = max(sent)
        assert fault_app.record.AsyncResult(producer.results[last].id).get(timeout=30) == last
    finally:
        workers.stop()
