"""Celery 5: the default prefork pool, and its fastest setting found here, on Redis and AMQP."""

from __future__ import annotations

from benchmarks.systems.base import Case, System, Variant

__all__ = ["SYSTEM"]

_WORKER = ("{bin}/celery", "-A", "celery_app", "worker", "-l", "WARNING")

SYSTEM = System(
    name="celery",
    app_module="celery_app",
    venv="peers",
    db_offset=1,
    variants={
        "prefork": Variant("-P prefork -c 2", (*_WORKER, "-P", "prefork", "-c", "2")),
        "threads": Variant("-P threads -c 2", (*_WORKER, "-P", "threads", "-c", "2")),
        "prefork-fast": Variant(
            "-P prefork -c 2 --prefetch-multiplier 64 --without-gossip/mingle/heartbeat",
            (
                *_WORKER,
                "-P",
                "prefork",
                "-c",
                "2",
                "--prefetch-multiplier",
                "64",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ),
        ),
        "io": Variant("-P threads -c 20", (*_WORKER, "-P", "threads", "-c", "20")),
    },
    throughput=(
        Case("prefork", "noop", True),
        Case("prefork", "noop", False, once=True),
        Case("threads", "noop", False, once=True),
        Case("prefork-fast", "noop", False),
    ),
    io=(Case("io", "sleep"),),
    cpu=Case("prefork", "fib"),
    brokers=frozenset({"redis", "amqp"}),
    extra_cases={
        "amqp": (Case("prefork", "noop", True), Case("prefork", "noop", False, once=True)),
    },
)
