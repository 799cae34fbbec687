"""Task modules used by worker tests (importable by worker subprocesses too)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from pathlib import Path

from celeriac import Celery
from celeriac.exceptions import SoftTimeLimitExceeded

app = Celery("wt")
if os.environ.get("TEST_LEASE_TIMEOUT"):  # worker subprocesses of the tests use short leases
    app.conf.broker_transport_options = {
        "lease_timeout": float(os.environ["TEST_LEASE_TIMEOUT"]),
        "global_keyprefix": os.environ.get("TEST_KEYPREFIX", ""),
    }
    app.conf.result_backend_transport_options = {
        "global_keyprefix": os.environ.get("TEST_KEYPREFIX", "")
    }


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task
def sleep(seconds: float, marker: str | None = None) -> float:
    if marker:
        Path(marker).open("a").write(f"start {os.getpid()}\n")
    time.sleep(seconds)
    if marker:
        Path(marker).open("a").write(f"done {os.getpid()}\n")
    return seconds


@app.task
async def async_sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@app.task(bind=True, max_retries=3, default_retry_delay=0.1)
def retry_twice(self: object) -> int:
    retries: int = self.request.retries  # type: ignore[attr-defined]
    if retries < 2:
        raise self.retry(exc=KeyError("again"))  # type: ignore[attr-defined]
    return retries


@app.task(soft_time_limit=0.3)
def soft_limited() -> str:
    try:
        time.sleep(5)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "not interrupted"


@app.task(time_limit=0.5)
def hard_limited() -> str:
    time.sleep(10)
    return "never"


@app.task
def unserializable_result() -> object:
    return object()


@app.task(bind=True)
def progress(self: object) -> str:
    self.update_state(state="PROGRESS", meta={"done": 50})  # type: ignore[attr-defined]
    time.sleep(0.5)
    return "finished"


@app.task
def pid() -> int:
    return os.getpid()


@app.task(rate_limit="5/s")
def limited(i: int) -> float:
    return time.time()


@app.task
def crash(marker: str) -> None:
    """Die as a buggy C extension does: a segfault in the thread running it."""
    Path(marker).open("a").write(f"ran {os.getpid()}\n")
    ctypes.string_at(0)  # reads address 0: SIGSEGV


_held: list[bytearray] = []


@app.task
def grow(mib: int) -> int:
    """Keep ``mib`` MiB alive in this process (pages touched) and return its pid."""
    _held.append(bytearray(b"x" * (mib * 1024 * 1024)))
    return os.getpid()
