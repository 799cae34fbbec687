"""A worker with task events (``-E``) and remote control across a broker outage: Redis
killed and restarted, and RabbitMQ stopped and started as its clients see it (a proxy of
the test's own in front of the shared server cuts every connection and refuses new ones).

The worker keeps running: what it held finishes, tasks sent after the outage run, and its
mailbox answers ``inspect ping`` again, and an event receiver running through the outage
gets the worker's heartbeats and task events again. Events sent while the broker is away are dropped
(they are not durable, as in Celery), said once in the log; each connection logs its
outage once, not once per attempt.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults import app as fault_app
from tests.faults.harness import (
    Producer,
    RabbitVhost,
    Record,
    RedisServer,
    TcpProxy,
    Workers,
    module_redis,
    point_at,
    wait_until,
)

pytestmark = pytest.mark.timeout(150)

OUTAGE = 4.0
BEFORE = 40
AFTER = 40

server = module_redis(aof=True)


def _pings() -> dict[str, Any]:
    return fault_app.app.control.inspect(timeout=1.0).ping() or {}


class Monitor:
    """An event receiver in a thread of the test (as ``celeriac events`` would run),
    noting when each event it got was sent."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []
        self.errors: list[BaseException] = []
        self.receiver = fault_app.app.events.Receiver(handlers={"*": self._on})
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on(self, event: dict[str, Any]) -> None:
        self.seen.append((event["type"], float(event["timestamp"])))

    def _run(self) -> None:
        try:
            self.receiver.capture(timeout=None)
        except BaseException as exc:  # the test fails on it
            self.errors.append(exc)

    def since(self, kind: str, when: float) -> int:
        return sum(1 for k, at in self.seen if k == kind and at > when)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.receiver.should_stop = True
        self._thread.join(30)
        assert not self._thread.is_alive(), "the event receiver hung"


def _ride_out(workers: Workers, record: Record, outage: Any) -> None:
    """Run tasks, break the broker with ``outage()``, then check the worker came back."""
    workers.start(1)
    with Monitor() as monitor:
        _check(workers, record, outage, monitor)
    assert monitor.errors == []


def _check(workers: Workers, record: Record, outage: Any, monitor: Monitor) -> None:
    try:
        wait_until(lambda: bool(_pings()), 60, "the worker to answer ping")
        producer = Producer(lambda n: fault_app.record.delay(n, 0.01), pause=0.02)
        with producer.running(BEFORE):
            wait_until(lambda: producer.calls >= BEFORE, 60, "the first tasks")
        outage()
        back = time.time()
        wait_until(lambda: bool(_pings()), 60, "ping answered after the outage")
        after = Producer(lambda n: fault_app.record.delay(BEFORE + n, 0.01), pause=0.02)
        with after.running(AFTER):
            wait_until(lambda: after.calls >= AFTER, 60, "the tasks after the outage")
        sent = set(producer.sent) | {BEFORE + n for n in after.sent}
        wait_until(lambda: sent <= set(record.ended()), 60, "every task sent to run")
        # the worker's dispatcher and this receiver both came back: events flow again
        wait_until(lambda: monitor.since("worker-heartbeat", back) >= 1, 30, "a heartbeat")
        wait_until(lambda: monitor.since("task-succeeded", back) >= 1, 30, "task events")
        assert workers.alive() == workers.procs, "the worker exited"
        assert producer.unexpected == [] and after.unexpected == []
        assert len(after.sent) == AFTER  # the broker is back: nothing refused
        log = workers.log(0)
        print(f"\n{len(sent)} tasks ran across the outage; worker log:\n" + _outage_lines(log))
        # (aiormq logs its own reader's traceback when the server closes a connection)
        assert _our_frames(log) == [], log
        assert log.count("events dropped (") <= 1, log
        assert log.count("for consuming unreachable, retrying") <= 1, log  # RabbitMQ
        for what in ("control", "events"):
            assert _count(log, what, "unreachable, retrying") <= 1, log
    finally:
        workers.stop()


def _count(log: str, what: str, text: str) -> int:
    return sum(1 for line in log.splitlines() if f"{what}:" in line and text in line)


def _our_frames(log: str) -> list[str]:
    """Traceback lines in celeriac's own code."""
    return [
        line
        for line in log.splitlines()
        if line.strip().startswith("File ") and "/celeriac/" in line and "site-packages" not in line
    ]


def _outage_lines(log: str) -> str:
    keys = ("unreachable", "back after", "dropped", "lost", "again", "reconnect")
    return "\n".join(line for line in log.splitlines() if any(k in line for k in keys))


@pytest.mark.redis
def test_worker_with_events_and_control_across_a_redis_restart(
    server: RedisServer, tmp_path: Path
) -> None:
    record = Record(tmp_path / "record")
    env = point_at(server.url, None, record)
    workers = Workers(tmp_path, env, "-c", "2", "-E")

    def outage() -> None:
        server.kill()
        time.sleep(OUTAGE)
        server.start()

    _ride_out(workers, record, outage)


@pytest.mark.amqp
def test_worker_with_events_and_control_across_a_rabbitmq_outage(tmp_path: Path) -> None:
    # The shared RabbitMQ cannot be restarted: the worker and this process reach it through
    # a proxy of the test's own, stopped for the outage (connections cut, new ones refused).
    proxy = TcpProxy(("127.0.0.1", 5672)).start()
    vhost = RabbitVhost("h-faults-events", port=proxy.port)
    vhost.purge("celery")
    record = Record(tmp_path / "record")
    env = point_at(vhost.url, None, record)
    workers = Workers(tmp_path, env, "-c", "2", "-E")

    def outage() -> None:
        proxy.stop()
        time.sleep(OUTAGE)
        proxy.start()

    try:
        _ride_out(workers, record, outage)
    finally:
        proxy.stop()
