"""Taskiq 0.13 with taskiq-redis (a Redis list): two worker processes, sync and async tasks."""

from __future__ import annotations

from benchmarks.systems.base import Case, System, Variant

__all__ = ["SYSTEM"]

_WORKER = ("{bin}/taskiq", "worker", "taskiq_app:broker", "--log-level", "WARNING")

SYSTEM = System(
    name="taskiq",
    app_module="taskiq_app",
    venv="peers",
    db_offset=4,
    variants={
        "w2": Variant("--workers 2", (*_WORKER, "--workers", "2"), "mixed"),
        "io": Variant(
            "--workers 1 --max-async-tasks 20",
            (*_WORKER, "--workers", "1", "--max-async-tasks", "20"),
            "mixed",
        ),
    },
    throughput=(
        Case("w2", "noop", True),
        Case("w2", "noop", False, once=True),
        Case("w2", "anoop", False, once=True),
    ),
    io=(Case("io", "asleep"),),
    cpu=Case("w2", "fib"),
    countdown=False,
)
