"""What every benchmarked system's tasks do, and the settings they read from the environment.

Stdlib only: this module is imported by workers and producers in the peers' venv too.
A completed task appends one byte to the counter file (``BENCH_COUNTER``, in /dev/shm); the
harness watches that file's size, so completions are counted the same way for everyone.
"""

from __future__ import annotations

import os
import time

__all__ = [
    "BROKER_URL",
    "QUEUE",
    "RESULTS",
    "RESULT_URL",
    "SLEEP_SECONDS",
    "fib",
    "spin_fib",
    "tick",
    "tick_after_sleep",
]

BROKER_URL = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/9")
RESULT_URL = os.environ.get("BENCH_RESULT_URL", "") or BROKER_URL
RESULTS = os.environ.get("BENCH_RESULTS", "1") == "1"
QUEUE = os.environ.get("BENCH_QUEUE", "")
SLEEP_SECONDS = 0.010
FIB_N = 20

_fd: int | None = None


def tick() -> None:
    """Record one completion: append a byte to the counter file (O_APPEND: atomic)."""
    global _fd
    if _fd is None:
        _fd = os.open(os.environ["BENCH_COUNTER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, b".")


def tick_after_sleep() -> None:
    """The I/O-bound body for thread pools: block 10 ms, then count."""
    time.sleep(SLEEP_SECONDS)
    tick()


def fib(n: int) -> int:
    """Naive recursive Fibonacci: a small, pure CPU load."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def spin_fib() -> int:
    """The CPU-bound body: fib(20) (about 2 ms of CPython), then count."""
    value = fib(FIB_N)
    tick()
    return value
