"""The Task API through real workers: a Celery worker and a celeriac worker run the same
tasks (``task_api_worker_side``) and their clients observe the same outcomes."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import REDIS_URL, delete_prefixed, key_prefix, redis_client

ROOT = Path(__file__).resolve().parents[2]
WORKER = {
    "celery": ["-m", "celery", "-A", "tests.parity.task_api_worker_side", "worker", "-P", "solo"],
    "celeriac": ["-m", "celeriac", "-A", "tests.parity.task_api_worker_side", "worker", "-c", "1"],
}


def _observe(lib_name: str, prefix: str, log: Path) -> dict[str, Any]:
    """Start ``lib_name``'s worker, send the tasks with its client, return what came back."""
    env = {**os.environ, "PARITY_LIB": lib_name, "PARITY_URL": REDIS_URL, "PARITY_PREFIX": prefix}
    env["PYTHONPATH"] = str(ROOT)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *WORKER[lib_name], "-l", "info"], env=env, stdout=out, stderr=out
        )
    try:
        return _send(lib_name, prefix)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _send(lib_name: str, prefix: str) -> dict[str, Any]:
    lib = importlib.import_module(lib_name)
    client = lib.Celery("client", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)
    client.conf.broker_transport_options = {"global_keyprefix": prefix}
    client.conf.result_backend_transport_options = {"global_keyprefix": prefix}
    seen: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    first = client.send_task("parity.wrapped")
    seen["wrapped"] = first.get(timeout=max(1.0, deadline - time.monotonic()))
    rejected = client.send_task("parity.reject")
    try:
        rejected.get(timeout=10)
    except Exception as exc:  # the Reject, as each library rebuilds it
        seen["reject_raised"] = type(exc).__name__
    seen["reject_state"] = rejected.state
    fields = client.send_task(
        "parity.fields", (2,), headers={"x-custom": "tenant-1"}, shadow="shown.name"
    )
    seen["fields"] = fields.get(timeout=10)
    client.close()
    return seen


@pytest.fixture
def prefix() -> Iterator[str]:
    value = key_prefix("parity")
    redis = redis_client()
    yield value
    delete_prefixed(redis, value)
    redis.close()


@pytest.mark.timeout(120)
def test_workers_give_the_same_outcomes(prefix: str, tmp_path: Path) -> None:
    theirs = _observe("celery", prefix + "celery:", tmp_path / "celery.log")
    ours = _observe("celeriac", prefix + "celeriac:", tmp_path / "celeriac.log")
    assert theirs["wrapped"] == "app context"  # the script observes something real
    assert theirs["reject_state"] == "FAILURE"
    assert ours == theirs
