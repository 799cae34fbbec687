"""A worker started while its broker is down: it retries as the settings say.

By default (``broker_connection_retry_on_startup`` following ``broker_connection_retry``,
``broker_connection_max_retries`` 100) it waits for the broker and then works; with
``broker_connection_retry_on_startup = False`` it gives up at once, exit status 1, naming
the broker with its password masked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import app as fault_app
from tests.faults.harness import Record, RedisServer, Workers, point_at, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path_factory.mktemp("redis-late"), aof=False)  # not started yet
    yield srv
    srv.kill()


def test_worker_waits_for_a_broker_that_starts_late(server: RedisServer, tmp_path: Path) -> None:
    record = Record(tmp_path / "record")
    env = point_at(server.url, server.url, record)
    workers = Workers(tmp_path, env, "-c", "1")
    (worker,) = workers.start(1)
    try:
        time.sleep(6.0)  # longer than the old start-up budget (7 attempts in ~3 s)
        assert worker.poll() is None, workers.log(0)
        server.start()
        result = fault_app.record.delay(1)
        assert result.get(timeout=30) == 1
        assert record.ended() == {1: 1}
    finally:
        workers.stop()


def test_no_retry_on_startup_exits_at_once(tmp_path: Path) -> None:
    url = "redis://user:s3cret@127.0.0.1:1/0"  # nothing listens on port 1
    env = point_at(url, None, Record(tmp_path / "record"), retry_on_startup="0")
    workers = Workers(tmp_path, env, "-c", "1")
    (worker,) = workers.start(1)
    try:
        wait_until(lambda: worker.poll() is not None, 30, "the worker to exit")
        log = workers.log(0)
        assert worker.returncode != 0
        assert "127.0.0.1:1" in log
        assert "s3cret" not in log
        assert "failed after 1 attempts" in log
    finally:
        workers.stop()
