"""RabbitMQ closes every connection of the test's vhost (``rabbitmqctl
close_all_connections``), twice, while two workers run tasks and a producer publishes.

Consumers and the publisher reconnect. What was unacked on a closed connection goes back to
the queue and runs once more only if it was running when the connection closed: a worker
does not start a delivery from a channel that died (another worker may have it already).
Publisher confirms keep ``delay()`` honest: it returns only once the broker has the message,
or raises OperationalError.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults import app as fault_app
from tests.faults.harness import (
    Producer,
    RabbitVhost,
    Record,
    RedisServer,
    Workers,
    module_redis,
    point_at,
    wait_until,
)

pytestmark = [pytest.mark.amqp, pytest.mark.timeout(150)]

TASKS = 900
CLOSES = 2
SETTLE_WINDOW = 0.1
START_LAG = 0.05


@pytest.fixture(scope="module")
def vhost() -> RabbitVhost:
    found = RabbitVhost("h-faults")
    found.purge("celery")
    return found


store = module_redis(aof=False)


def test_connections_closed_by_the_server(
    vhost: RabbitVhost, store: RedisServer, tmp_path: Path
) -> None:
    record = Record(tmp_path / "record")
    env = point_at(vhost.url, store.url, record)
    workers = Workers(tmp_path, env, "-c", "2")
    workers.start(2)
    allowed: set[int] = set()
    closed = 0
    spans: list[float] = []
    pids_of: dict[int, set[int]] = {0: set(), 1: set()}
    try:
        producer = Producer(lambda n: fault_app.record.delay(n, 0.005), pause=0.002)
        with producer.running(TASKS):
            for round_ in range(CLOSES):
                wait_until(
                    lambda r=round_: len(record.ended()) >= (r + 1) * TASKS // (CLOSES + 1),
                    90,
                    "tasks to run before closing",
                )
                for index, proc in enumerate(workers.procs):
                    pids_of[index] |= workers.pids(proc)
                began = time.time()
                closed += vhost.close_connections()
                spans.append(time.time() - began)
                time.sleep(0.5)
            wait_until(lambda: producer.calls >= TASKS, 90, "the producer")
        sent = set(producer.sent)
        wait_until(lambda: sent <= set(record.ended()), 90, "every sent task to run")
        time.sleep(2.0)
        # rabbitmqctl takes up to a second: each worker's own log says when its consuming
        # connection closed, and only what it was running then may run again, or had handed
        # to a pool process just before it read the close (START_LAG: the pipe's latency)
        closing = r"Unexpected connection close from remote .*name=celeriac-\d"
        for index, pids in pids_of.items():
            for at in workers.logged_at(index, closing):
                allowed |= record.running_at(pids, at, SETTLE_WINDOW, START_LAG)
        ended = record.ended()
        # a publish resent after its confirm was lost may be queued twice: at least once
        twice = {n for n, c in ended.items() if c > 1 and n not in producer.resent}
        print(
            f"\nrabbitmq: {closed} connections closed in {CLOSES} rounds (each within "
            f"{max(spans):.2f} s) under {len(sent)} "
            f"tasks ({len(producer.refused)} publishes refused): lost "
            f"{len(sent - set(ended))}, ran twice {len(twice)} ({len(twice - allowed)} of "
            f"them not among the {len(allowed)} running or just finished at a close)"
        )
        assert producer.unexpected == []
        assert closed >= 2 * CLOSES
        assert sent - set(ended) == set()
        assert twice <= allowed
        last = max(sent)
        assert fault_app.record.AsyncResult(producer.results[last].id).get(timeout=30) == last
    finally:
        workers.stop()
