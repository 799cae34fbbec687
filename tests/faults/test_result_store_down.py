"""The result store (a Redis of its own) killed and restarted while tasks finish.

The broker stays up. The workers keep the results they could not write, with their acks,
and write them when the store is back: no task runs twice, none is lost, and every result
can be read afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import app as fault_app
from tests.faults.harness import Producer, Record, RedisServer, Workers, point_at, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.timeout(150)]

OUTAGE = 5.0
TASKS = 300


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, RedisServer]]:
    broker = RedisServer(tmp_path_factory.mktemp("broker"), aof=True).start()
    store = RedisServer(tmp_path_factory.mktemp("store"), aof=True).start()
    yield broker, store
    broker.kill()
    store.kill()


def test_results_written_after_the_store_comes_back(
    servers: tuple[RedisServer, RedisServer], tmp_path: Path
) -> None:
    broker, store = servers
    record = Record(tmp_path / "record")
    env = point_at(broker.url, store.url, record)
    workers = Workers(tmp_path, env, "-c", "2")
    workers.start(2)
    try:
        producer = Producer(lambda n: fault_app.record.delay(n, 0.02), pause=0.01)
        with producer.running(TASKS):
            wait_until(lambda: len(record.ended()) >= 30, 60, "the first 30 tasks")
            store.kill()
            time.sleep(OUTAGE)
            ended_during = sum(record.ended().values())
            store.start()
            wait_until(lambda: producer.calls >= TASKS, 120, "the producer")
        sent = set(producer.sent)
        wait_until(lambda: sent <= set(record.ended()), 90, "every task to run")
        started = time.monotonic()
        results = [fault_app.record.AsyncResult(producer.results[n].id) for n in sorted(sent)]
        values = [r.get(timeout=60) for r in results]
        read_in = time.monotonic() - started
        workers.procs[0].terminate()  # a held-back result it gave up on would come back now
        workers.procs[0].wait(30)
        time.sleep(2.0)
        ended = record.ended()
        twice = {n for n, c in ended.items() if c > 1}
        print(
            f"\nresult store down {OUTAGE:.0f}s: {len(sent)} tasks ({ended_during} finished "
            f"by the end of the outage), lost {len(sent - set(ended))}, ran twice "
            f"{len(twice)}; all {len(values)} results read in {read_in:.1f}s"
        )
        assert producer.unexpected == [] and producer.refused == []
        assert values == sorted(sent)
        assert sent - set(ended) == set()
        assert twice == set()
        logs = workers.logs()
        assert "storing results failed" not in logs
        assert "will be redelivered" not in logs
    finally:
        workers.stop()
