"""Interop fixtures: a dedicated Redis db, and worker processes of either kind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INTEROP_DB = int(os.environ.get("CELERIAC_TEST_INTEROP_DB", "15"))  # flushed before each test

StartWorker = Callable[..., subprocess.Popen[bytes]]


def _redis_ok() -> bool:
    try:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping())
    except Exception:
        return False


@pytest.fixture
def interop_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A clean Redis db shared by the Celery and celeriac sides."""
    if not _redis_ok():
        if os.environ.get("CI") == "true":
            pytest.fail("Redis at 127.0.0.1:6379 is required when CI=true")
        pytest.skip("Redis at 127.0.0.1:6379 is not reachable")
    pytest.importorskip("celery")
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, db=INTEROP_DB)
    client.flushdb()
    url = f"redis://127.0.0.1:6379/{INTEROP_DB}"
    monkeypatch.setenv("INTEROP_URL", url)
    yield url
    client.flushdb()


@pytest.fixture
def start_worker(interop_url: str, tmp_path: Path) -> Iterator[StartWorker]:
    """Start a ``celery`` or ``celeriac`` worker process on the interop db."""
    started: list[subprocess.Popen[bytes]] = []

    def start(kind: str, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "INTEROP_URL": interop_url, "PYTHONPATH": str(ROOT)}
        if kind == "celery":
            command = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.interop.celery_side",
                "worker",
                "-P",
                "solo",
                "-l",
                "info",
                *args,
            ]
        else:
            command = [
                sys.executable,
                "-m",
                "celeriac",
                "-A",
                "tests.interop.celeriac_side",
                "worker",
                "-c",
                "2",
                "-l",
                "info",
                *args,
            ]
        log = (tmp_path / f"{kind}-{len(started)}.log").open("wb")
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        started.append(proc)
        time.sleep(1.5 if kind == "celery" else 0.5)
        return proc

    yield start
    for proc in started:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
