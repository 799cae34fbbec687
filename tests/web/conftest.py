"""A worker with -E on Redis and on RabbitMQ (each test runs on both) for the dashboard's
end-to-end tests, and the dashboard's app pointed at the same broker. Results go to Redis
db 9 under a key prefix of their own (deleted afterwards); RabbitMQ runs in its own vhost."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from celeriac import Celery
from tests import services
from tests.web import web_app

HOSTNAME = "webw@test"


@dataclass(frozen=True)
class Servers:
    """Where the worker and the dashboard meet."""

    broker: str
    backend: str
    prefix: str


@pytest.fixture(scope="session", params=["redis", "amqp"])
def servers(request: pytest.FixtureRequest) -> Iterator[Servers]:
    """A broker of each engine (isolated), the result backend on Redis, a key prefix.

    The tests' Redis database, as every suite's, under a prefix of their own (db 9 would
    meet the benchmarks, which flush their databases)."""
    backend = services.REDIS_URL
    prefix = services.key_prefix("web")
    services.redis_client().close()  # skips (or fails under CI) without Redis
    if request.param == "redis":
        yield Servers(backend, backend, prefix)
    else:
        with services.amqp_vhost() as vhost:
            yield Servers(services.amqp_vhost_url(vhost), backend, prefix)
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(backend)
    services.delete_prefixed(client, prefix)
    client.close()


@pytest.fixture(scope="session")
def worker(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One worker with -E on the broker; its log file."""
    log = tmp_path_factory.mktemp("web-worker") / "worker.log"
    env = {"CELERIAC_BROKER_URL": servers.broker, "CELERIAC_RESULT_BACKEND": servers.backend,
           "TEST_KEYPREFIX": servers.prefix}  # fmt: skip
    with services.running_worker("tests.web.web_app", log, env, hostname=HOSTNAME):
        yield log


@pytest.fixture(scope="session")
def client_app(servers: Servers) -> Iterator[Celery]:
    """The dashboard's app: the worker's, on the same broker, backend and prefix."""
    app = web_app.app
    app.conf.broker_url = servers.broker
    app.conf.result_backend = servers.backend
    app.conf.broker_transport_options = {"global_keyprefix": servers.prefix}
    app.conf.result_backend_transport_options = {"global_keyprefix": servers.prefix}
    yield app
    app.close()
