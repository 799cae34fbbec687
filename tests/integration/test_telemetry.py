"""OpenTelemetry across processes: a publish and the run it causes share one trace.

Both directions of a mixed fleet, with the real ``opentelemetry-instrumentation-celery`` on the
Celery side: celeriac → celeriac, Celery client → celeriac worker, celeriac client → Celery
worker. Each process exports its spans to a file; the test compares trace and parent ids.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import REDIS_URL, delete_prefixed, key_prefix, redis_client

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is a test dependency")
pytest.importorskip("opentelemetry.instrumentation.celery")
pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.otel_apps"


@pytest.fixture(scope="module")
def prefix() -> Iterator[str]:
    client = redis_client()
    chosen = key_prefix("otel")
    yield chosen
    delete_prefixed(client, chosen)
    client.close()


def side(kind: str, prefix: str, spans: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OTEL_KIND": kind,
        "OTEL_PREFIX": prefix,
        "OTEL_URL": REDIS_URL,
        "OTEL_SPANS": str(spans),
        "PYTHONPATH": str(ROOT),
    }


def start_worker(kind: str, env: dict[str, str]) -> subprocess.Popen[str]:
    program = "celery" if kind == "celery" else "celeriac"
    pool = ["-P", "solo"] if kind == "celery" else ["-c", "1"]
    return subprocess.Popen(
        [sys.executable, "-m", program, "-A", APP, "worker", *pool, "-l", "info"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def send(kind: str, env: dict[str, str]) -> None:
    script = f"from {APP} import add\nassert add.delay(2, 3).get(timeout=60) == 5\n"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stdout + done.stderr


def read_spans(path: Path, name: str, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            spans = [json.loads(line) for line in path.read_text().splitlines()]
            found = [span for span in spans if span["name"] == name]
            if found:
                return found
        time.sleep(0.1)
    pytest.fail(f"no span {name!r} in {path}")


@pytest.mark.parametrize(
    ("client", "worker"), [("celeriac", "celeriac"), ("celery", "celeriac"), ("celeriac", "celery")]
)
def test_the_run_is_a_child_of_the_publish(
    client: str, worker: str, prefix: str, tmp_path: Path
) -> None:
    client_spans, worker_spans = tmp_path / "client.jsonl", tmp_path / "worker.jsonl"
    process = start_worker(worker, side(worker, prefix, worker_spans))
    try:
        send(client, side(client, prefix, client_spans))
        (publish,) = read_spans(client_spans, "apply_async/otel.add")
        (run,) = read_spans(worker_spans, "run/otel.add")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert publish["kind"] == "PRODUCER" and run["kind"] == "CONSUMER"
    assert run["trace"] == publish["trace"]
    assert run["parent"] == publish["span"]
    assert run["attributes"]["celery.task_name"] == "otel.add"
    task_id = publish["attributes"]["messaging.message.id"]
    assert run["attributes"]["messaging.message.id"] == task_id
