"""The real Flower (2.x), started by ``celeriac -A app flower``, watching a celeriac worker.

Flower lists the worker (remote control: ``inspect``), lists its tasks (events), submits a
task by name (``async-apply``) and reads its result: seed 004's Flower set-up, on Redis
and on RabbitMQ (a vhost of the test's own; results in Redis). One worker and one Flower
per broker for the module.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.services import (
    REDIS_URL,
    amqp_vhost,
    amqp_vhost_url,
    delete_prefixed,
    key_prefix,
    redis_client,
)

pytest.importorskip("flower", reason="flower is a test dependency (make install)")
pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, data: dict[str, Any] | None = None) -> Any:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def eventually(probe: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe()
        except OSError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail("Flower never showed it")
        time.sleep(0.3)


@contextmanager
def _broker(kind: str) -> Iterator[str]:
    """The URL of a fresh broker of ``kind`` (Redis: the prefix isolates it)."""
    if kind == "redis":
        yield REDIS_URL
    else:
        with amqp_vhost() as vhost:
            yield amqp_vhost_url(vhost)


@pytest.fixture(scope="module", params=["redis", "amqp"])
def flower(request: pytest.FixtureRequest) -> Iterator[str]:
    client = redis_client()
    prefix = key_prefix("flower")
    port = free_port()
    with _broker(request.param) as broker:
        env = {
            **os.environ,
            "INTEROP_URL": broker,
            "INTEROP_BACKEND": REDIS_URL,
            "INTEROP_PREFIX": prefix,
            "PYTHONPATH": str(ROOT),
            "FLOWER_UNAUTHENTICATED_API": "1",
        }
        app = ["-A", "tests.interop.celeriac_side"]
        worker_args = ["worker", "-E", "-c", "1", "-n", "flowered@%h"]
        flower_args = ["flower", f"--port={port}", "--address=127.0.0.1"]
        worker = subprocess.Popen(
            [sys.executable, "-m", "celeriac", *app, *worker_args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ui = subprocess.Popen(
            [sys.executable, "-m", "celeriac", *app, *flower_args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            for process in (ui, worker):
                process.terminate()
                process.wait(timeout=30)
            delete_prefixed(client, prefix)
            client.close()


def test_flower_lists_the_worker_through_inspect(flower: str) -> None:
    workers = eventually(lambda: get(f"{flower}/api/workers?refresh=1"))
    (name,) = [name for name in workers if name.startswith("flowered@")]
    assert "interop.add" in workers[name]["registered"]
    assert workers[name]["active_queues"][0]["name"] == "celery"
    assert workers[name]["stats"]["pool"]["max-concurrency"] == 1


def test_flower_submits_a_task_and_sees_it_run(flower: str) -> None:
    eventually(lambda: get(f"{flower}/api/workers?refresh=1"))
    sent = get(f"{flower}/api/task/async-apply/interop.add", {"args": [2, 3]})
    task_id = sent["task-id"]
    result = eventually(
        lambda: (r := get(f"{flower}/api/task/result/{task_id}"))["state"] == "SUCCESS" and r
    )
    assert result["result"] == 5
    tasks = eventually(
        lambda: (t := get(f"{flower}/api/tasks")).get(task_id, {}).get("runtime") and t
    )
    assert tasks[task_id]["name"] == "interop.add"
    assert tasks[task_id]["state"] == "SUCCESS"
    assert tasks[task_id]["worker"].startswith("flowered@")
