"""Remote control across the two packages: the real ``celery`` CLI steering a celeriac worker,
and ``celeriac inspect`` / ``celeriac status`` answered by a real Celery worker, on Redis and
RabbitMQ. One worker of each kind per broker for the module."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.control_cluster import NAME, Cluster, cluster

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

pytest.importorskip("celery")


@pytest.fixture(scope="module", params=["redis", "amqp"])
def celeriac_worker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with cluster(request.param, tmp_path_factory.mktemp(request.param)) as here:
        yield here


@pytest.fixture(scope="module", params=["redis", "amqp"])
def celery_worker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with cluster(request.param, tmp_path_factory.mktemp(request.param), worker="celery") as here:
        yield here


def test_celery_inspect_ping_and_status(celeriac_worker: Cluster) -> None:
    assert celeriac_worker.json("inspect", "ping", tool="celery") == {NAME: {"ok": "pong"}}
    status = celeriac_worker.cli("status", "-t", "2", tool="celery")
    assert f"{NAME}: OK" in status.stdout
    assert "1 node online." in status.stdout


def test_celery_inspect_registered_stats_active(celeriac_worker: Cluster) -> None:
    registered = celeriac_worker.json("inspect", "registered", tool="celery")
    assert registered == {NAME: ["ctl.add", "ctl.sleep [rate_limit=100/s]"]}
    stats = celeriac_worker.json("inspect", "stats", tool="celery")[NAME]
    assert stats["pool"]["max-concurrency"] == 2
    assert {"total", "pid", "clock", "uptime", "broker", "prefetch_count", "rusage"} <= set(stats)
    assert celeriac_worker.json("inspect", "active", tool="celery") == {NAME: []}
    text = celeriac_worker.cli("inspect", "registered", "-d", NAME, tool="celery").stdout
    assert f"->  {NAME}: OK\n    * ctl.add\n" in text


def test_celery_control_rate_limit(celeriac_worker: Cluster) -> None:
    done = celeriac_worker.cli("control", "rate_limit", "ctl.add", "9/m", "-d", NAME, tool="celery")
    assert done.returncode == 0, done.stderr
    assert "new rate limit set successfully" in done.stdout
    registered = celeriac_worker.json("inspect", "registered")[NAME]
    assert "ctl.add [rate_limit=9/m]" in registered


def test_celeriac_inspect_and_status_against_a_celery_worker(celery_worker: Cluster) -> None:
    assert celery_worker.json("inspect", "ping") == {NAME: {"ok": "pong"}}
    status = celery_worker.cli("status", "-t", "2")
    assert f"->  {NAME}: OK" in status.stdout
    assert "1 node online." in status.stdout
    stats = celery_worker.json("inspect", "stats")[NAME]
    assert stats["pool"]["implementation"] == "celery.concurrency.solo:TaskPool"
    registered = celery_worker.json("inspect", "registered")[NAME]
    assert "ctl.add" in registered
    reply = celery_worker.cli("control", "rate_limit", "ctl.add", "3/s", "-d", NAME, "-j")
    assert json.loads(reply.stdout.splitlines()[-1]) == {
        NAME: {"ok": "new rate limit set successfully"}
    }
