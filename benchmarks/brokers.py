"""The servers under the benchmark: URLs per system, and resetting state between runs.

Each system gets its own Redis database (flushed with FLUSHDB before every run, never
FLUSHALL), its own RabbitMQ queue names (deleted after each run) and a fresh SQLite file.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import redis

__all__ = [
    "AMQP_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "BrokerSetup",
    "amqp_up",
    "celeriac_has_amqp",
    "delete_amqp_queues",
    "flush_redis",
    "redis_up",
]

REDIS_HOST = "127.0.0.1"
# BENCH_REDIS_PORT: another local server, e.g. the throwaway one of the tests' smoke run.
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT") or 6379)
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
_AIO_PIKA_URL = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass(frozen=True)
class BrokerSetup:
    """Where one run's messages and results go."""

    kind: str
    """``redis``, ``amqp`` or ``sqlite``."""
    broker_url: str
    result_url: str
    redis_db: int
    queue: str = ""
    """A unique queue name (AMQP runs), empty for the system's default queue."""

    @classmethod
    def create(cls, kind: str, redis_db: int, workdir: Path) -> BrokerSetup:
        """A fresh setup of ``kind`` for a system using Redis database ``redis_db``."""
        redis_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"
        if kind == "redis":
            return cls(kind, redis_url, redis_url, redis_db)
        if kind == "amqp":
            queue = f"bench-{uuid.uuid4().hex[:10]}"
            return cls(kind, AMQP_URL, redis_url, redis_db, queue)
        if kind == "sqlite":
            path = workdir / f"bench-{uuid.uuid4().hex[:10]}.sqlite"
            url = f"sqlite:///{path}"
            return cls(kind, url, url, redis_db)
        raise ValueError(f"unknown broker kind {kind!r}")

    def reset(self) -> None:
        """Empty the Redis database this setup uses (results live there on AMQP runs too)."""
        flush_redis(self.redis_db)

    def cleanup(self) -> None:
        """Remove what the run left: its RabbitMQ queues, its SQLite files."""
        if self.kind == "amqp" and self.queue:
            names = [self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"]
            asyncio.run(delete_amqp_queues(names))
        if self.kind == "sqlite":
            base = self.broker_url[len("sqlite:///") :]
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(base + suffix).unlink(missing_ok=True)
        flush_redis(self.redis_db)

    def env(self) -> dict[str, str]:
        """The environment variables the app modules read."""
        return {
            "BENCH_BROKER": self.broker_url,
            "BENCH_RESULT_URL": self.result_url,
            "BENCH_QUEUE": self.queue,
        }


def flush_redis(db: int) -> None:
    """FLUSHDB on one database (never FLUSHALL: other people use the same server)."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    try:
        client.flushdb()
    finally:
        client.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def redis_up() -> bool:
    """Whether the Redis server answers on loopback."""
    return _port_open(REDIS_PORT)


def amqp_up() -> bool:
    """Whether RabbitMQ listens on loopback."""
    return _port_open(5672)


def celeriac_has_amqp() -> bool:
    """Whether celeriac has an AMQP transport to benchmark yet."""
    return importlib.util.find_spec("celeriac.engines.amqp.broker") is not None


async def delete_amqp_queues(names: list[str]) -> None:
    """Delete RabbitMQ queues (absent ones are fine)."""
    connection = await aio_pika.connect(_AIO_PIKA_URL)
    try:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
    finally:
        await connection.close()
