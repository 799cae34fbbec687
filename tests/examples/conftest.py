"""What the examples' tests share: a vhost, a PostgreSQL schema and the app's environment.

Both the Flask stack (``test_process_data_e2e.py``) and its FastAPI twin
(``test_process_data_fastapi.py``) run the example against the machine's RabbitMQ and
PostgreSQL in a vhost and a schema of their own, dropped at the end of the module.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.services import POSTGRES_URL, amqp_vhost, amqp_vhost_url, unavailable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "process_data"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def vhost_and_schema(tag: str) -> Iterator[tuple[str, str]]:
    """A RabbitMQ vhost and a PostgreSQL schema of the test's own (``celeriac_<tag>_…``):
    the vhost's URL and the schema's name; both removed at the end."""
    schema = f"celeriac_{tag}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
    with admin, amqp_vhost() as vhost:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            yield amqp_vhost_url(vhost), schema
        finally:
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


@dataclass
class ExampleEnv:
    """The environment the example's processes run in, and its schema's job rows."""

    env: dict[str, str]
    schema: str

    def jobs(self) -> dict[str, tuple[str, str | None]]:
        """Every job row: id → (status, worker)."""
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            rows = conn.execute(
                sql.SQL("SELECT id, status, worker FROM {}.jobs").format(
                    sql.Identifier(self.schema)
                )
            ).fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}


@pytest.fixture(scope="module")
def process_data_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExampleEnv]:
    """A fresh vhost and schema, and the variables that point the example at them."""
    with vhost_and_schema("e2e") as (broker, schema):
        base = POSTGRES_URL.split("://", 1)[1]
        env = {
            **os.environ,
            "BIN": str(Path(sys.executable).parent),
            "PYTHONPATH": str(EXAMPLE),
            "RUN_DIR": str(tmp_path_factory.mktemp("run-local")),
            "HTTP_PORT": str(free_port()),
            "WEB_PORT": str(free_port()),
            "DASHBOARD_PORT": str(free_port()),
            "BROKER_URL": broker,
            "DATABASE_URL": f"postgresql+psycopg://{base}",
            "DATABASE_SCHEMA": schema,
            "RESULT_BACKEND": f"db+postgresql://{base}?schema={schema}",
        }
        yield ExampleEnv(env, schema)
