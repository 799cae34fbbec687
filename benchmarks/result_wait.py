"""``python -m benchmarks.result_wait``: the client side of a Redis round trip, alone.

No celeriac worker is involved. A *stub worker* (a separate process on a raw socket)
pops task ids from a list and stores a SUCCESS document for each, with ``SET EX`` +
``PUBLISH`` in one MULTI, as a worker does. Measured, for the sync
(``AsyncResult.get()``) and async (``await AsyncResult.aget()``) APIs:

* ``ready``: the document is stored before the call: the cost of one wait on a key that
  already holds its result (subscribe, read, unsubscribe).
* ``stub``: the id is pushed to the stub, then the call waits for the stub's write: the
  wake-up path (``get`` alone, and ``push + get``).
* ``ping``: a bare redis-py blocking ``PING``, for reference.

Besides wall-clock percentiles it prints the client process's CPU time per call (all its
threads, the portal's included), which a busy machine disturbs much less.

Runs whatever celeriac is first on ``sys.path`` (so ``PYTHONPATH=<worktree>`` compares
branches). Uses one Redis database (default 13), ``FLUSHDB``ed first, never ``FLUSHALL``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import hiredis
import redis
import redis.asyncio as aioredis

from celeriac import Celery

__all__ = ["main"]

QUEUE = "result-wait-bench:q"
STOP = "stop"


def _doc(tid: str) -> bytes:
    """A SUCCESS document as a worker writes it."""
    return json.dumps(
        {
            "status": "SUCCESS",
            "result": 2,
            "traceback": None,
            "children": [],
            "date_done": None,
            "task_id": tid,
        }
    ).encode()


def _command(*args: str | bytes) -> bytes:
    """One command in the Redis protocol."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def stub(url: str) -> None:
    """The stub worker: store SUCCESS for every id popped from the queue, until ``stop``.

    A raw socket and hiredis, the write as one MULTI: as little latency of its own as a
    worker could have.
    """
    db = redis.connection.parse_url(url).get("db", 0)
    sock = socket.create_connection(("127.0.0.1", 6379))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = hiredis.Reader()

    def replies(count: int) -> list[Any]:
        got: list[Any] = []
        while len(got) < count:
            reply = reader.gets()
            if reply is False:
                reader.feed(sock.recv(65536))
            else:
                got.append(reply)
        return got

    sock.sendall(_command("SELECT", str(db)))
    replies(1)
    while True:
        sock.sendall(_command("BLPOP", QUEUE, "5"))
        [popped] = replies(1)
        if popped is None:
            continue
        tid = popped[1].decode()
        if tid == STOP:
            return
        key, doc = f"celery-task-meta-{tid}", _doc(tid)
        sock.sendall(
            _command("MULTI")
            + _command("SET", key, doc, "EX", "600")
            + _command("PUBLISH", key, doc)
            + _command("EXEC")
        )
        replies(4)


def _stats(samples: list[float]) -> str:
    """p50 / p95 / p99 in microseconds."""
    ordered = sorted(samples)
    pick = [ordered[min(int(len(ordered) * q), len(ordered) - 1)] for q in (0.5, 0.95, 0.99)]
    p50, p95, p99 = (v * 1e6 for v in pick)
    return f"p50 {p50:7.1f}  p95 {p95:7.1f}  p99 {p99:7.1f}  µs"


CPU: dict[str, float] = {}
"""CPU seconds of the client process per call, by API and mode."""


def _timed(name: str, n: int, warmup: int, step: Callable[[], tuple[float, float]]) -> list[float]:
    """Call ``step`` (which returns the wall and CPU seconds of its measured part)
    warmup + n times; record the mean CPU time; return the wall times."""
    for _ in range(warmup):
        step()
    walls, cpus = zip(*(step() for _ in range(n)), strict=True)
    CPU[name] = sum(cpus) / n
    return list(walls)


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(started: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clocks()
    return wall - started[0], cpu - started[1]


def sync_modes(app: Celery, raw: redis.Redis[bytes], n: int, warmup: int) -> dict[str, list[float]]:
    """ping, ready and stub for the sync API."""

    def ping() -> tuple[float, float]:
        """A bare PING."""
        started = _clocks()
        raw.ping()
        return _since(started)

    def ready() -> tuple[float, float]:
        """get() of a stored result."""
        tid = str(uuid.uuid4())
        raw.set(f"celery-task-meta-{tid}", _doc(tid), ex=600)
        started = _clocks()
        app.AsyncResult(tid).get(timeout=10)
        return _since(started)

    pushed: list[float] = []

    def stubbed() -> tuple[float, float]:
        """Push to the stub, then get()."""
        tid = str(uuid.uuid4())
        before_push = time.perf_counter()
        raw.rpush(QUEUE, tid)
        started = _clocks()
        app.AsyncResult(tid).get(timeout=10)
        wall, cpu = _since(started)
        pushed.append(time.perf_counter() - before_push)
        return wall, cpu

    out = {"ping": _timed("sync ping", n, warmup, ping)}
    out["ready"] = _timed("sync ready", n, warmup, ready)
    out["stub get"] = _timed("sync stub get", n, warmup, stubbed)
    out["stub push+get"] = pushed[warmup:]
    return out


async def async_modes(app: Celery, url: str, n: int, warmup: int) -> dict[str, list[float]]:
    """ready and stub for the async API (on one loop, as a web app's)."""
    raw: aioredis.Redis[bytes] = aioredis.Redis.from_url(url)
    ready_s: list[float] = []
    get_s: list[float] = []
    push_s: list[float] = []
    await app.aget_backend()
    cpu = {"ready": 0.0, "stub get": 0.0}
    for i in range(warmup + n):
        tid = str(uuid.uuid4())
        await raw.set(f"celery-task-meta-{tid}", _doc(tid), ex=600)
        started, cpu_started = time.perf_counter(), time.process_time()
        await app.AsyncResult(tid).aget(timeout=10)
        ready_s.append(time.perf_counter() - started)
        cpu["ready"] += (time.process_time() - cpu_started) if i >= warmup else 0.0
        tid = str(uuid.uuid4())
        started = time.perf_counter()
        await raw.rpush(QUEUE, tid)
        after_push, cpu_started = time.perf_counter(), time.process_time()
        await app.AsyncResult(tid).aget(timeout=10)
        done = time.perf_counter()
        cpu["stub get"] += (time.process_time() - cpu_started) if i >= warmup else 0.0
        get_s.append(done - after_push)
        push_s.append(done - started)
    CPU.update({f"async {mode}": seconds / n for mode, seconds in cpu.items()})
    await raw.aclose()
    await app.aclose()
    w = warmup
    return {"ready": ready_s[w:], "stub get": get_s[w:], "stub push+get": push_s[w:]}


def run(url: str, n: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    """Start the stub, measure both APIs, stop the stub."""
    raw: redis.Redis[bytes] = redis.Redis.from_url(url)
    raw.flushdb()
    worker = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--stub", url])
    try:
        app = Celery("result_wait", broker=url, backend=url)
        results = {"sync": sync_modes(app, raw, n, warmup)}
        app.close()
        results["async"] = asyncio.run(async_modes(app, url, n, warmup))
        return results
    finally:
        raw.rpush(QUEUE, STOP)
        worker.wait(10)
        raw.flushdb()


def main(argv: list[str] | None = None) -> None:
    """Command line: print p50/p95/p99 per API and mode."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.result_wait")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--stub", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stub:
        stub(args.stub)
        return
    results: dict[str, Any] = run(args.url, args.n, args.warmup)
    for api, modes in results.items():
        for mode, samples in modes.items():
            mean = statistics.mean(samples) * 1e6
            cpu = CPU.get(f"{api} {mode}")
            cpu_text = "" if cpu is None else f"  CPU {cpu * 1e6:6.1f} µs/call"
            print(f"{api:5} {mode:14} {_stats(samples)}  mean {mean:7.1f}{cpu_text}")


if __name__ == "__main__":
    main()
