"""PostgreSQL test helpers: the server URL, a reachability check and a throwaway schema.

Tests point the SQL backend and beat store at a fresh schema (``celeriac_test_<hex>``)
and drop it with everything in it afterwards. The server is ``CELERIAC_TEST_POSTGRES_URL``
(see ``tests/services.py``, which also says what happens when it is unreachable).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql

from tests.services import POSTGRES_URL as PG_URL
from tests.services import unavailable

__all__ = ["PG_URL", "fresh_schema", "postgres_or_skip", "schema_url"]


async def postgres_or_skip() -> psycopg.AsyncConnection[tuple[Any, ...]]:
    """An autocommit connection to the test server; skip (fail under CI) if unreachable."""
    try:
        return await psycopg.AsyncConnection.connect(PG_URL, autocommit=True, connect_timeout=5)
    except (OSError, psycopg.OperationalError) as exc:
        unavailable(f"PostgreSQL at {PG_URL} is unreachable: {exc}")


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """Create a uniquely named schema; drop it (CASCADE) on exit."""
    name = f"celeriac_test_{uuid.uuid4().hex[:12]}"
    conn = await postgres_or_skip()
    try:
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        yield name
    finally:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        await conn.close()


def schema_url(schema: str, prefix: str = "") -> str:
    """``PG_URL`` (with ``prefix``, e.g. ``db+``) naming ``schema`` as a query parameter."""
    return f"{prefix}{PG_URL}?schema={schema}"
