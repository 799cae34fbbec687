"""The servers the tests use: one environment variable each, and what to do when one is missing.

=============================  ==========================================
``CELERIAC_TEST_REDIS_URL``    ``redis://127.0.0.1:6379/0``
``CELERIAC_TEST_AMQP_URL``     ``amqp://guest:guest@127.0.0.1:5672//``
``CELERIAC_TEST_POSTGRES_URL`` ``postgresql://postgres@127.0.0.1:5432/test``
=============================  ==========================================

A test whose server cannot be reached is skipped; with ``CI=true`` it fails instead, so that
CI never passes by skipping (:func:`unavailable`).

The servers may hold other people's data, so the tests only touch what they create: on Redis
every key they write starts with a prefix of their own (:func:`key_prefix`, passed as the
``global_keyprefix`` transport option, which Celery 5.3+ and kombu honour too) and they delete
only the keys under it (:func:`delete_prefixed`); on RabbitMQ a session works in a vhost it
creates and deletes (:func:`amqp_vhost`); on PostgreSQL in a schema it creates and drops
(``tests/sql_fixtures.py``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn
from urllib.parse import unquote, urlsplit

import pytest
import redis

__all__ = [
    "AMQP_URL",
    "POSTGRES_URL",
    "REDIS_URL",
    "amqp_address",
    "amqp_vhost",
    "amqp_vhost_url",
    "delete_prefixed",
    "key_prefix",
    "rabbitmqctl",
    "redis_address",
    "redis_client",
    "redis_url_at",
    "running_celeriac",
    "running_worker",
    "unavailable",
]

REDIS_URL = os.environ.get("CELERIAC_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
AMQP_URL = os.environ.get("CELERIAC_TEST_AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672//"
POSTGRES_URL = (
    os.environ.get("CELERIAC_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
)


def unavailable(reason: str) -> NoReturn:
    """Skip the calling test because a server or tool is missing; fail it under ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


# --- Redis ----------------------------------------------------------------------------------


def redis_address() -> tuple[str, int]:
    """Host and port of the test Redis server."""
    split = urlsplit(REDIS_URL)
    return split.hostname or "127.0.0.1", split.port or 6379


def redis_url_at(host: str, port: int) -> str:
    """``REDIS_URL`` (same credentials, db and query) pointed at another address, e.g. a proxy."""
    split = urlsplit(REDIS_URL)
    credentials = split.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return split._replace(netloc=netloc).geturl()


def redis_client(**options: object) -> redis.Redis:
    """A connected client of the test Redis server, or :func:`unavailable`."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, **options)  # type: ignore[arg-type]
    try:
        client.ping()
    except (OSError, redis.RedisError) as exc:
        client.close()
        unavailable(f"Redis at {REDIS_URL} is unreachable: {exc}")
    return client


def key_prefix(tag: str = "test") -> str:
    """A Redis key prefix no one else uses: ``<tag>-<random hex>:``."""
    return f"{tag}-{uuid.uuid4().hex[:12]}:"


def delete_prefixed(client: redis.Redis, prefix: str) -> int:
    """Delete every key under ``prefix`` (SCAN MATCH, then UNLINK in batches); the count."""
    if not prefix:
        raise ValueError("refusing to delete every key: the prefix is empty")
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for start in range(0, len(keys), 500):
        client.unlink(*keys[start : start + 500])
    return len(keys)


# --- RabbitMQ -------------------------------------------------------------------------------


def amqp_address() -> tuple[str, int]:
    """Host and port of the test RabbitMQ server."""
    split = urlsplit(AMQP_URL)
    return split.hostname or "127.0.0.1", split.port or 5672


def amqp_vhost_url(vhost: str) -> str:
    """``AMQP_URL`` (same server and credentials) naming ``vhost``."""
    split = urlsplit(AMQP_URL)
    return split._replace(path=f"/{vhost}").geturl()


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl`` (which manages the local node); raise CalledProcessError on failure."""
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


@contextmanager
def amqp_vhost() -> Iterator[str]:
    """A vhost of our own on the test server, for the URL's user; deleted on exit.

    It is created with ``rabbitmqctl``, so the server must be the local node.
    """
    host, port = amqp_address()
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        unavailable(f"RabbitMQ at {host}:{port} is unreachable: {exc}")
    if shutil.which("rabbitmqctl") is None:
        unavailable("rabbitmqctl is not installed (needed to create a test vhost)")
    user = unquote(urlsplit(AMQP_URL).username or "guest")
    vhost = f"celeriac-test-{uuid.uuid4().hex[:12]}"
    try:
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    except subprocess.CalledProcessError as exc:
        unavailable(f"cannot create a RabbitMQ vhost: {exc.stderr}")
    try:
        yield vhost
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


@contextmanager
def running_celeriac(
    args: Sequence[str], log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m celeriac *args`` in a subprocess that logs to ``log``, with ``env`` over
    this process's environment, run from the repository; stopped (warm, then killed after
    20 s) on exit."""
    root = Path(__file__).resolve().parent.parent
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celeriac", *args],
            env={**os.environ, "PYTHONPATH": str(root), **env}, cwd=root,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_worker(
    app: str, log: Path, env: dict[str, str], *args: str, hostname: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``celeriac -A app worker -E -c 1 -P threads -n hostname *args`` (see
    :func:`running_celeriac`)."""
    command = ["-A", app, "worker", "-E", "-c", "1", "-P", "threads", "-n", hostname,
               "-l", "info", *args]  # fmt: skip
    with running_celeriac(command, log, env) as process:
        yield process
