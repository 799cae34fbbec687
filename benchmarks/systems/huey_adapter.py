"""Huey 3: two worker threads (its default kind) or processes, on Redis and SQLite."""

from __future__ import annotations

from benchmarks.systems.base import Case, System, Variant

__all__ = ["SYSTEM"]


SYSTEM = System(
    name="huey",
    app_module="huey_app",
    venv="peers",
    db_offset=3,
    variants={
        "thread": Variant(
            "-w 2 -k thread",
            ("{bin}/huey_consumer", "huey_app.huey", "-w", "2", "-k", "thread", "-q"),
        ),
        "process": Variant(
            "-w 2 -k process",
            ("{bin}/huey_consumer", "huey_app.huey", "-w", "2", "-k", "process", "-q"),
        ),
        "io": Variant(
            "-w 20 -k thread",
            ("{bin}/huey_consumer", "huey_app.huey", "-w", "20", "-k", "thread", "-q"),
        ),
    },
    throughput=(
        Case("thread", "noop", True),
        Case("thread", "noop", False),
        Case("process", "noop", False),
    ),
    io=(Case("io", "sleep"),),
    cpu=Case("process", "fib"),
    brokers=frozenset({"redis", "sqlite"}),
    extra_cases={
        "sqlite": (Case("thread", "noop", True), Case("thread", "noop", False)),
    },
)
