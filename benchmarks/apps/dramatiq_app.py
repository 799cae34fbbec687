"""The benchmark's actors and producer operations for Dramatiq (runs in the peers' venv).

Redis or RabbitMQ broker by ``BENCH_BROKER``; results (when on) through Dramatiq's
``Results`` middleware on Redis (``BENCH_RESULT_URL``).
"""

# mypy: allow-untyped-decorators, allow-untyped-calls

from __future__ import annotations

from typing import Any

import dramatiq  # type: ignore[import-not-found,unused-ignore]
from bodies import BROKER_URL, QUEUE, RESULT_URL, RESULTS, spin_fib, tick, tick_after_sleep
from dramatiq.brokers.rabbitmq import RabbitmqBroker  # type: ignore[import-not-found,unused-ignore]
from dramatiq.brokers.redis import RedisBroker  # type: ignore[import-not-found,unused-ignore]
from dramatiq.results import Results  # type: ignore[import-not-found,unused-ignore]
from dramatiq.results.backends.redis import RedisBackend  # type: ignore[import-not-found,unused-ignore]

__all__ = ["broker", "enqueue", "enqueue_countdown", "round_trip", "setup"]


def _make_broker() -> Any:
    if BROKER_URL.startswith("amqp"):
        # kombu's "//" (vhost "/") reads as an empty vhost to pika: spell it out.
        url = BROKER_URL[:-2] + "/%2F" if BROKER_URL.endswith("//") else BROKER_URL
        return RabbitmqBroker(url=url)
    return RedisBroker(url=BROKER_URL)


broker = _make_broker()
broker.add_middleware(Results(backend=RedisBackend(url=RESULT_URL)))
dramatiq.set_broker(broker)
_QUEUE = QUEUE or "default"


@dramatiq.actor(queue_name=_QUEUE, store_results=RESULTS, max_retries=0)
def noop() -> None:
    """The no-op actor: count and return."""
    tick()


@dramatiq.actor(queue_name=_QUEUE, store_results=RESULTS, max_retries=0)
def sleep() -> None:
    """Block 10 ms (worker threads)."""
    tick_after_sleep()


@dramatiq.actor(queue_name=_QUEUE, store_results=RESULTS, max_retries=0)
def fib() -> int:
    """fib(20)."""
    return spin_fib()


@dramatiq.actor(queue_name=_QUEUE, store_results=True, max_retries=0)
def add(x: int, y: int) -> int:
    """The round-trip actor."""
    return x + y


_ACTORS: dict[str, Any] = {"noop": noop, "sleep": sleep, "fib": fib}


def setup() -> None:
    """Declare the queue before timing starts."""
    broker.declare_queue(_QUEUE)


def enqueue(kind: str, n: int) -> None:
    """``actor.send()`` n times."""
    actor = _ACTORS[kind]
    for _ in range(n):
        actor.send()


def enqueue_countdown(n: int, seconds: float) -> None:
    """n no-op messages with a delay (they go to the delay queue; workers prefetch them)."""
    for _ in range(n):
        noop.send_with_options(delay=int(seconds * 1000))


def round_trip(i: int) -> int:
    """``add.send(i, i).get_result(block=True)``."""
    value: int = add.send(i, i).get_result(block=True, timeout=30_000)
    return value
