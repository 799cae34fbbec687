"""Real Celery and celeriac share RabbitMQ (results over rpc:// and Redis), both ways round."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.contract import test_transport_amqp as amqp_fixtures
from tests.services import REDIS_URL, delete_prefixed, redis_client

pytestmark = [pytest.mark.interop, pytest.mark.amqp]
amqp_vhost = amqp_fixtures.amqp_vhost
amqp_url = amqp_fixtures.amqp_url

ROOT = Path(__file__).resolve().parents[2]
Env = dict[str, str]
StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture(params=["rpc", "redis"])
def env(request: pytest.FixtureRequest, amqp_url: str, interop_prefix: str) -> Iterator[Env]:
    """Results over rpc://, or in Redis under the session's key prefix (deleted afterwards)."""
    client = redis_client() if request.param == "redis" else None
    yield {
        **os.environ,
        "INTEROP_URL": amqp_url,
        "INTEROP_BACKEND": REDIS_URL if client else "rpc://",
        "PYTHONPATH": str(ROOT),
    }
    if client:
        delete_prefixed(client, interop_prefix)
        client.close()


@pytest.fixture
def start_worker(env: Env, tmp_path: Path) -> Iterator[StartWorker]:
    started: list[subprocess.Popen[bytes]] = []

    def start(kind: str, *args: str) -> subprocess.Popen[bytes]:
        if kind == "celery":
            cmd = ["celery", "-A", "tests.interop.celery_side", "worker", "-P", "solo"]
        else:
            cmd = ["celeriac", "-A", "tests.interop.celeriac_side", "worker", "-c", "2"]
        log = (tmp_path / f"{kind}-{len(started)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", *cmd, "-l", "info", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        started.append(proc)
        time.sleep(2.0 if kind == "celery" else 0.5)
        return proc

    yield start
    for proc in started:
        proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def client(env: Env, side: str, code: str) -> str:
    """Run ``code`` in a fresh client process of ``side`` (its app reads the env at import)."""
    script = f"from tests.interop import {side} as side\n{code}"
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def test_celery_client_celeriac_worker(env: Env, start_worker: StartWorker) -> None:
    start_worker("celeriac")
    out = client(
        env,
        "celery_side",
        "print(side.add.delay(2, 2).get(timeout=30), side.whoami.delay().get(timeout=30))",
    )
    assert out == "4 celeriac"


def test_celeriac_client_celery_worker(env: Env, start_worker: StartWorker) -> None:
    start_worker("celery")
    out = client(
        env,
        "celeriac_side",
        "print(side.add.delay(2, 2).get(timeout=30), side.whoami.delay().get(timeout=30))",
    )
    assert out == "4 celery"


def test_failures_cross_over(env: Env, start_worker: StartWorker) -> None:
    start_worker("celeriac")
    code = (
        "r = side.fail.delay('boom')\n"
        "try:\n    r.get(timeout=30)\nexcept ValueError as exc:\n"
        "    print(type(exc).__name__, exc, 'ValueError: boom' in r.traceback)"
    )
    assert client(env, "celery_side", code) == "ValueError boom True"


def test_routed_queue_and_priority(env: Env, start_worker: StartWorker) -> None:
    # Two nodes need two names: each declares its own pidbox queue (Celery 5.7: exclusive).
    start_worker("celeriac", "-Q", "alt", "-n", "alt@%h")
    start_worker("celery", "-Q", "celery")
    code = (
        "print(side.whoami.apply_async(queue='alt', priority=5).get(timeout=30),"
        " side.whoami.apply_async(queue='celery').get(timeout=30))"
    )
    assert client(env, "celery_side", code) == "celeriac celery"
    assert client(env, "celeriac_side", code) == "celeriac celery"
