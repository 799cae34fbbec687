"""The producer side of a benchmark run, executed in the benchmarked system's venv.

``python client.py <app module> <operation> [args]`` imports the app module (one of the
``*_app`` modules beside this file), calls its ``setup()``, times one operation and prints
``BENCH-RESULT <json>`` as its last line. Operations:

* ``enqueue FN KIND N``: time ``FN(KIND, N)`` (FN: enqueue, aenqueue, enqueue_bulk),
  wall clock and the producer's CPU time.
* ``countdown N SECONDS``: ``enqueue_countdown(N, SECONDS)``.
* ``latency FN N WARMUP``: ``FN(i)`` (a submit + wait round trip) WARMUP + N times; the
  last N durations in milliseconds.

An operation may be a plain function or a coroutine function; coroutines run on one loop
kept for the whole process. Stdlib only (the peers' venv has no celeriac).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["main"]


class Caller:
    """Calls an app module's operations, running coroutines on one private loop."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.loop = asyncio.new_event_loop()

    def has(self, name: str) -> bool:
        """Whether the module offers operation ``name``."""
        return callable(getattr(self.module, name, None))

    def __call__(self, name: str, *args: Any) -> Any:
        fn: Callable[..., Any] = getattr(self.module, name)
        value = fn(*args)
        if asyncio.iscoroutine(value):
            value = self.loop.run_until_complete(value)
        return value


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _latency(caller: Caller, fn: str, n: int, warmup: int) -> dict[str, Any]:
    samples: list[float] = []
    for i in range(warmup + n):
        started = time.perf_counter()
        value = caller(fn, i)
        elapsed = time.perf_counter() - started
        if value != i + i:
            raise RuntimeError(f"round trip {i}: expected {i + i}, got {value!r}")
        if i >= warmup:
            samples.append(elapsed * 1000.0)
    return {"samples_ms": samples}


def run(argv: list[str]) -> dict[str, Any]:
    """Run one operation described by ``argv``; return what to report."""
    module_name, op, *rest = argv
    caller = Caller(importlib.import_module(module_name))
    if caller.has("setup"):
        caller("setup")
    try:
        if op == "enqueue":
            fn, kind, n = rest[0], rest[1], int(rest[2])
            cpu = time.process_time()
            seconds = _timed(lambda: caller(fn, kind, n))
            return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu, "n": n}
        if op == "countdown":
            n, seconds = int(rest[0]), float(rest[1])
            return {"seconds": _timed(lambda: caller("enqueue_countdown", n, seconds)), "n": n}
        if op == "latency":
            return _latency(caller, rest[0], int(rest[1]), int(rest[2]))
        raise SystemExit(f"unknown operation {op!r}")
    finally:
        if caller.has("teardown"):
            caller("teardown")


def main() -> None:
    """Entry point: print the operation's result as the last line."""
    result = run(sys.argv[1:])
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
