"""A worker with -E on Redis (db 9 by default, keys under a prefix of their own) for the
dashboard's end-to-end tests, and the dashboard app pointed at the same broker."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from celeriac import Celery
from tests import services
from tests.web import web_app

ROOT = Path(__file__).resolve().parents[2]
HOSTNAME = "webw@test"


def redis_db9() -> str:
    """The test Redis server's URL on db 9 (the dashboard tests' own)."""
    return urlsplit(services.REDIS_URL)._replace(path="/9").geturl()


@pytest.fixture(scope="session")
def redis_broker() -> Iterator[tuple[str, str]]:
    """A Redis URL and a key prefix; the keys under it are deleted afterwards."""
    url = redis_db9()
    prefix = services.key_prefix("web")
    client = services.redis_client()
    client.close()
    yield url, prefix
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(url)
    services.delete_prefixed(client, prefix)
    client.close()


@pytest.fixture(scope="session")
def worker(
    redis_broker: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """One worker with -E on the broker; its log file."""
    url, prefix = redis_broker
    log = tmp_path_factory.mktemp("web-worker") / "worker.log"
    env = {**os.environ, "CELERIAC_BROKER_URL": url, "CELERIAC_RESULT_BACKEND": url,
           "TEST_KEYPREFIX": prefix, "PYTHONPATH": str(ROOT)}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "celeriac", "-A", "tests.web.web_app", "worker",
         "-E", "-c", "1", "-P", "threads", "-n", HOSTNAME, "-l", "info"],
        env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    yield log
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def client_app(redis_broker: tuple[str, str]) -> Iterator[Celery]:
    """The dashboard's app: the worker's, on the same broker, backend and prefix."""
    url, prefix = redis_broker
    app = web_app.app
    app.conf.broker_url = url
    app.conf.result_backend = url
    app.conf.broker_transport_options = {"global_keyprefix": prefix}
    app.conf.result_backend_transport_options = {"global_keyprefix": prefix}
    yield app
    app.close()
