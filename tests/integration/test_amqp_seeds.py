"""Seeds 000 and 002 end to end on RabbitMQ: rpc:// and Redis results, routed queues, bad input."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from celeriac.canvas import chain, group
from celeriac.engines.amqp.broker import AMQPTransport
from celeriac.protocol.envelope import Envelope
from celeriac.transport import Outgoing
from tests.contract import test_transport_amqp as amqp_fixtures
from tests.integration import amqp_seed_app
from tests.services import REDIS_URL, delete_prefixed, key_prefix, redis_client

pytestmark = pytest.mark.amqp
amqp_vhost = amqp_fixtures.amqp_vhost
amqp_url = amqp_fixtures.amqp_url

ROOT = Path(__file__).resolve().parents[2]
StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture(params=["amqp+rpc", "amqp+redis", "sqlite"])
def seed_env(
    request: pytest.FixtureRequest, amqp_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """RabbitMQ with rpc:// or Redis results (under a key prefix of this test, deleted
    afterwards), or the embedded store (routing works there too)."""
    client = redis_client() if request.param == "amqp+redis" else None
    prefix = key_prefix("seed")
    if request.param == "sqlite":
        broker = backend = f"sqlite:///{tmp_path / 'seed.sqlite'}"
    else:
        broker = amqp_url
        backend = REDIS_URL if client else "rpc://"
    env = {"SEED_BROKER": broker, "SEED_BACKEND": backend, "SEED_PREFIX": prefix}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env
    if client:
        delete_prefixed(client, prefix)
        client.close()


@pytest.fixture
def start_worker(seed_env: dict[str, str], tmp_path: Path) -> Iterator[StartWorker]:
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, **seed_env, "PYTHONPATH": str(ROOT), "SEED_WORKER": name}
        command = [
            sys.executable,
            "-m",
            "celeriac",
            "-A",
            "tests.integration.amqp_seed_app",
            "worker",
            "-l",
            "info",
            "-c",
            "2",
            "-n",
            f"{name}@%h",
            *args,
        ]
        log = (tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            assert proc.wait(30) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


@pytest.fixture
def seed_app(seed_env: dict[str, str]) -> Iterator[object]:
    amqp_seed_app.app.conf.broker_url = seed_env["SEED_BROKER"]
    amqp_seed_app.app.conf.result_backend = seed_env["SEED_BACKEND"]
    amqp_seed_app.app.conf.result_backend_transport_options = {
        "global_keyprefix": seed_env["SEED_PREFIX"]
    }
    amqp_seed_app.app._router = None
    yield amqp_seed_app
    amqp_seed_app.app.close()


def test_seed_000_two_plus_two_through_rabbitmq(
    seed_app: object, start_worker: StartWorker
) -> None:
    start_worker("w1", "-Q", "default")
    result = seed_app.slow_add.delay(2, 2)  # type: ignore[attr-defined]
    assert result.get(timeout=30) == 4


def test_seed_002_routing_two_queues_one_worker_each(
    seed_app: object, start_worker: StartWorker
) -> None:
    start_worker("hi", "-Q", "high_priority")
    start_worker("lo", "-Q", "default")
    where = seed_app.where  # type: ignore[attr-defined]
    routed = where.apply_async(
        args=["routed"], queue="high_priority", exchange="custom", routing_key="high_priority"
    )
    default = where.delay("default")
    assert routed.get(timeout=30) == "routed ran on hi"
    assert default.get(timeout=30) == "default ran on lo"
    assert (
        seed_app.add.apply_async(
            args=[10, 20], queue="high_priority", exchange="custom", routing_key="high_priority"
        ).get(timeout=30)
        == 30
    )  # type: ignore[attr-defined]


def test_seed_003_group_and_chain(seed_app: object, start_worker: StartWorker) -> None:
    start_worker("w1", "-Q", "default")
    app = seed_app
    result = group(app.buy_milk.s(7), app.buy_bread.s(5)).apply_async()  # type: ignore[attr-defined]
    assert result.get(timeout=30) == [7, 5]
    task_chain = chain(app.fetch_user_name.s(1) | app.greeting_user.s())  # type: ignore[attr-defined]
    assert task_chain.apply_async().get(timeout=30) == "Здравствуй, Пётр 1Первый!"


async def test_bad_messages_are_dead_lettered(
    amqp_url: str, seed_app: object, start_worker: StartWorker, tmp_path: Path
) -> None:
    if not seed_app.app.broker_url.startswith("amqp"):  # type: ignore[attr-defined]
        pytest.skip("RabbitMQ-specific: the worker suite covers bad input on the other brokers")
    start_worker("w1", "-Q", "default")
    transport = AMQPTransport(amqp_url)
    await transport.connect()
    try:
        bad = [
            Envelope(body=b"[[], {}, {}]", headers={"id": "no-task-header"}),
            Envelope(body=b"\x00 not json", headers={"task": "tasks.add", "id": "garbage"}),
            Envelope(body=b"x" * 2_000_000, headers={"task": "tasks.add", "id": "huge"}),
        ]
        await transport.publish([Outgoing(env, "", "default") for env in bad])
        deadline = time.monotonic() + 30
        while len(dead := await transport.list_dead()) < 3:
            assert time.monotonic() < deadline, f"dead letters: {dead}"
            await asyncio.sleep(0.2)
        reasons = " | ".join(d.reason for d in dead)
        assert "not a task message" in reasons and "undecodable" in reasons
    finally:
        await transport.close()
    assert seed_app.add.apply_async(args=[1, 2]).get(timeout=30) == 3  # type: ignore[attr-defined]
    assert "Rejecting message" in (tmp_path / "w1.log").read_text()
