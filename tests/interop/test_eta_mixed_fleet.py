"""Mixed fleets: a celeriac client's countdown runs on a real Celery worker, at its time.

celeriac clients publish ETA tasks as Celery does (the ``eta`` header, on the queue), so a
Celery worker sharing the queue holds and runs them; ``broker_delayed_delivery`` would park
them where only celeriac workers look. One Celery worker per broker for the module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from celeriac import Celery
from tests.services import (
    REDIS_URL,
    amqp_vhost,
    amqp_vhost_url,
    delete_prefixed,
    key_prefix,
    redis_client,
)

pytest.importorskip("celery")
pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Fleet:
    """The broker URL, the Redis key prefix and the Celery worker's log."""

    broker: str
    prefix: str
    log: Path


def _client(broker: str, prefix: str, **settings: object) -> Celery:
    """A celeriac client of the Celery worker's broker and result store."""
    return Celery(
        "eta-client",
        broker=broker,
        backend=REDIS_URL,
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
        set_as_current=False,
        **settings,
    )


@pytest.fixture(scope="module", params=["redis", "amqp"])
def celery_fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """A broker with a real Celery worker consuming ``celery``."""
    client = redis_client()
    prefix = key_prefix("eta")
    log = tmp_path_factory.mktemp(request.param) / "celery-worker.log"
    with amqp_vhost() if request.param == "amqp" else _no_vhost() as vhost:
        broker = amqp_vhost_url(vhost) if vhost else REDIS_URL
        env = {
            **os.environ,
            "ETA_BROKER": broker,
            "ETA_BACKEND": REDIS_URL,
            "ETA_PREFIX": prefix,
            "PYTHONPATH": str(ROOT),
        }
        command = [sys.executable, "-m", "celery", "-A", "tests.interop.eta_celery_app"]
        worker = subprocess.Popen(
            [*command, "worker", "-P", "solo", "-l", "info"],
            env=env,
            cwd=ROOT,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            app = _client(broker, prefix)
            try:  # online: it runs a task sent now
                app.send_task("eta.clock").get(timeout=60)
            except Exception:
                pytest.fail(f"the Celery worker did not run a task: {log.read_text()[-3000:]}")
            finally:
                app.close()
            yield Fleet(broker, prefix, log)
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            delete_prefixed(client, prefix)
            client.close()


def eventually_logged(log: Path, text: str) -> str:
    """The worker's log once it mentions ``text`` (its lines may reach the file late)."""
    deadline = time.monotonic() + 10
    while text not in (content := log.read_text()):
        assert time.monotonic() < deadline, f"{text} never logged: {content[-2000:]}"
        time.sleep(0.1)
    return content


class _no_vhost:
    """Stands in for :func:`amqp_vhost` on Redis."""

    def __enter__(self) -> str:
        return ""

    def __exit__(self, *exc: object) -> None:
        return None


def test_celery_worker_runs_a_celeriac_countdown_at_its_eta(celery_fleet: Fleet) -> None:
    app = _client(celery_fleet.broker, celery_fleet.prefix)
    try:
        eta = time.time() + 2  # before the call: the client computes its ETA within it
        result = app.send_task("eta.clock", countdown=2)
        ran_at = result.get(timeout=30)  # it ran (it never would from the delayed store)
        assert ran_at >= eta - 0.05  # and not before its ETA
    finally:
        app.close()


def test_broker_delayed_delivery_keeps_it_where_celery_never_looks(celery_fleet: Fleet) -> None:
    app = _client(celery_fleet.broker, celery_fleet.prefix, broker_delayed_delivery=True)
    try:
        transport = app.run_sync(app.aget_transport())
        result = app.send_task("eta.clock", countdown=3600)
        marker = app.send_task("eta.clock")  # sent after it, on the same queue
        marker.get(timeout=30)  # so the Celery worker has read past where it would be
        log = eventually_logged(celery_fleet.log, marker.id)
        assert result.id not in log  # never received
        assert result.state == "PENDING"
        # It waits in celeriac's delayed store (on RabbitMQ a hop between delay queues may
        # be counted twice while it happens).
        assert app.run_sync(transport.queue_sizes(["celery"]))["celery"] >= 1
        assert app.run_sync(transport.purge(["celery"])) >= 1
    finally:
        app.close()
