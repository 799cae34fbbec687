"""Dramatiq 2: two processes of one thread (equal parallelism) and its default eight
threads per process, on Redis and RabbitMQ."""

from __future__ import annotations

from benchmarks.systems.base import Case, System, Variant

__all__ = ["SYSTEM"]

_WORKER = ("{bin}/dramatiq", "dramatiq_app")

SYSTEM = System(
    name="dramatiq",
    app_module="dramatiq_app",
    venv="peers",
    db_offset=2,
    variants={
        "2x1": Variant(
            "--processes 2 --threads 1", (*_WORKER, "--processes", "2", "--threads", "1")
        ),
        "2x8": Variant(
            "--processes 2 --threads 8", (*_WORKER, "--processes", "2", "--threads", "8")
        ),
        "io": Variant(
            "--processes 1 --threads 20", (*_WORKER, "--processes", "1", "--threads", "20")
        ),
    },
    throughput=(
        Case("2x1", "noop", True),
        Case("2x1", "noop", False, once=True),
        Case("2x8", "noop", False),
    ),
    io=(Case("io", "sleep"),),
    cpu=Case("2x1", "fib"),
    brokers=frozenset({"redis", "amqp"}),
    extra_cases={
        "amqp": (Case("2x1", "noop", True), Case("2x1", "noop", False, once=True)),
    },
)
