"""Interop fixtures: a Redis key prefix of this run, and worker processes of either kind.

Both sides share the Redis server of ``CELERIAC_TEST_REDIS_URL`` under one
``global_keyprefix`` per test session (``INTEROP_PREFIX``, read by ``celery_side`` and
``celeriac_side`` when imported, which happens once per process). Each test starts with no
key under it and deletes its keys afterwards; nothing else on the server is touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services import REDIS_URL, delete_prefixed, key_prefix, redis_client

ROOT = Path(__file__).resolve().parents[2]

StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture(scope="session")
def interop_prefix() -> Iterator[str]:
    """The key prefix of this session's interop tests, in ``INTEROP_PREFIX`` meanwhile."""
    prefix = key_prefix("interop")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INTEROP_PREFIX", prefix)
        yield prefix


@pytest.fixture
def interop_url(interop_prefix: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The Redis URL shared by the Celery and celeriac sides, no key under the prefix yet."""
    pytest.importorskip("celery")
    client = redis_client()
    delete_prefixed(client, interop_prefix)
    monkeypatch.setenv("INTEROP_URL", REDIS_URL)
    yield REDIS_URL
    delete_prefixed(client, interop_prefix)
    client.close()


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
