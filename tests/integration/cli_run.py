"""Run the ``celeriac`` command in a subprocess, bounded in time, for the CLI tests."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["ROOT", "celeriac", "start", "wait_for_line", "wait_until", "write_app"]

ROOT = Path(__file__).resolve().parents[2]

APP_SOURCE = """\
from celeriac import Celery

app = Celery("cliapp", broker={broker!r}, backend={backend!r})


@app.task(name="cliapp.add")
def add(x, y):
    return x + y
"""


def write_app(directory: Path, broker: str = "memory://", backend: str | None = None) -> Path:
    """Write ``cliapp.py`` (one task, ``cliapp.add``) into ``directory``; return its path."""
    path = directory / "cliapp.py"
    path.write_text(APP_SOURCE.format(broker=broker, backend=backend or broker))
    return path


def celeriac(
    *args: str, cwd: Path, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``celeriac ARGS`` run in ``cwd``; its exit status, stdout and stderr."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "celeriac", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        check=False,
    )


def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``celeriac ARGS`` started in ``cwd`` (a long-running command: worker, beat); its
    stdout and stderr both come through ``process.stderr``."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "celeriac", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
    )


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float = 60) -> str:
    """Read ``process``'s output until a line contains ``text``; stop the process; return
    everything read. Raises AssertionError when it ends or the time is up first."""
    stream = process.stdout
    assert stream is not None
    lines: queue.Queue[str] = queue.Queue()
    # A thread reads, so that lines already buffered by Python are never missed.
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if process.poll() is not None and lines.empty():
                    break
                continue
            seen.append(line)
            if text in line:
                return "".join(seen)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    raise AssertionError(f"{text!r} not seen in:\n{''.join(seen)}")


def wait_until(predicate: Callable[[], bool], timeout: float = 60) -> None:
    """Poll ``predicate`` until it holds; AssertionError when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)
