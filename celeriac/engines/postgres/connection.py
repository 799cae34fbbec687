"""SQL (PostgreSQL) URLs, engines and table creation, shared by the result backend and beat store.

Accepted URLs (Celery's ``db+`` prefix of a result backend and ``sqla+`` prefix of a
schedule store are stripped)::

    postgresql://[user[:password]@]host[:port]/dbname[?libpq-params]
    postgres://...   postgresql+psycopg://...

All three run on the asyncio driver of psycopg 3 (``postgresql+psycopg``). Other
SQLAlchemy drivers and engines (MySQL, SQLite through SQLAlchemy) are refused: the
statements are PostgreSQL's, and waiting uses its LISTEN/NOTIFY.

Options (a mapping, e.g. ``result_backend_transport_options``):

* ``schema``: the PostgreSQL schema holding celeriac's tables (created if missing);
  also accepted as a ``?schema=name`` query parameter of the URL, or through Celery's
  ``database_table_schemas`` mapping. First found wins: ``database_table_schemas["beat"]``
  (schedule store only), the ``schema`` option, ``?schema=``,
  ``database_table_schemas["task"]``; none: the connection's ``search_path``
  (usually ``public``).
* ``engine_options`` (or Celery's name ``database_engine_options``): keyword arguments
  for SQLAlchemy's ``create_async_engine`` (``pool_size``, ``echo``, ``connect_args``...).
* ``database_short_lived_sessions`` (Celery's setting): True opens a new connection for
  every operation and closes it after (SQLAlchemy's ``NullPool``).

Engines are shared: every user in one event loop with the same URL and engine options
gets the same engine (so the result backend and the beat store of one process share a
pool), and it is disposed of when the last one lets go. :class:`Tables` is one user's
share: its tables, created on first use, and its statements, run by name.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from celeriac.engines.options import option_flag
from celeriac.exceptions import ImproperlyConfigured, MissingDependency
from celeriac.masking import mask_url

try:
    from sqlalchemy import MetaData, Table, text
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
    from sqlalchemy.pool import NullPool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("SQL support: pip install 'celeriac[sql]'") from exc

__all__ = [
    "SQLSettings",
    "Tables",
    "acquire_engine",
    "channel_name",
    "create_tables",
    "fetch_rows",
    "parse_sql_settings",
    "qualified_name",
    "release_engine",
    "run_statement",
]

_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}
_DRIVER = "postgresql+psycopg"
# Serialises table creation across processes (pg_advisory_xact_lock key: "celeriac" in hex).
_DDL_LOCK = 0x63656C6572696163
_NAME_MAX = 63  # PostgreSQL identifiers (and NOTIFY channels) are cut at 63 bytes


@dataclass(frozen=True)
class SQLSettings:
    """Where to connect: the SQLAlchemy URL, the schema and the engine options."""

    url: URL
    schema: str | None = None
    engine_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def libpq_url(self) -> str:
        """The URL for a plain psycopg connection (password included)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def key(self) -> str:
        """What makes two settings share an engine."""
        options = json.dumps(dict(self.engine_options), sort_keys=True, default=repr)
        return f"{self.url.render_as_string(hide_password=False)} {options}"


def _strip_prefix(url: str) -> str:
    """Remove Celery's ``db+`` (result backend) or ``sqla+`` (beat) prefix."""
    for prefix in ("db+", "sqla+"):
        if url.lower().startswith(prefix):
            return url[len(prefix) :]
    return url


def _schemas_setting(options: Mapping[str, Any]) -> Mapping[str, Any]:
    """Celery's ``database_table_schemas`` mapping from ``options`` (empty if absent)."""
    schemas = options.get("database_table_schemas") or {}
    if not isinstance(schemas, Mapping):
        raise ImproperlyConfigured(f"database_table_schemas must be a mapping: {schemas!r}")
    return schemas


def _pick_schema(options: Mapping[str, Any], query: str | None, role: str) -> str | None:
    """The schema: ``database_table_schemas['beat']`` (beat only), the ``schema`` option,
    the URL's ``?schema=``, then ``database_table_schemas['task']``."""
    schemas = _schemas_setting(options)
    candidates = [
        schemas.get("beat") if role == "beat" else None,
        options.get("schema"),
        query,
        schemas.get("task"),
    ]
    return next((str(name) for name in candidates if name), None)


def parse_sql_settings(
    url: str, options: Mapping[str, Any] | None = None, *, role: str = "task"
) -> SQLSettings:
    """Settings for a (possibly ``db+``/``sqla+`` prefixed) PostgreSQL URL and options.

    ``role`` is the ``database_table_schemas`` key to look up (``task`` or ``beat``).
    """
    opts = options or {}
    try:
        parsed = make_url(_strip_prefix(url))
    except ArgumentError as exc:
        raise ImproperlyConfigured(f"not a database URL: {mask_url(url)!r} ({exc})") from exc
    if parsed.drivername.lower() not in _POSTGRES_SCHEMES:
        raise ImproperlyConfigured(
            f"unsupported SQL URL {mask_url(url)!r}: celeriac's SQL backend and beat store run on"
            " PostgreSQL (postgresql://, postgres:// or postgresql+psycopg://)"
        )
    query = parsed.query.get("schema")
    query_schema = query if isinstance(query, str) or query is None else query[0]
    schema = _pick_schema(opts, query_schema, role)
    parsed = parsed.difference_update_query(["schema"])
    engine_options = opts.get("engine_options") or opts.get("database_engine_options") or {}
    if not isinstance(engine_options, Mapping):
        raise ImproperlyConfigured(f"database_engine_options must be a mapping: {engine_options!r}")
    if option_flag(opts.get("database_short_lived_sessions")):
        pooled = ("pool_size", "max_overflow", "pool_timeout", "pool_recycle", "pool_pre_ping")
        engine_options = {k: v for k, v in engine_options.items() if k not in pooled}
        engine_options["poolclass"] = NullPool
    if schema is not None and len(schema.encode()) > _NAME_MAX:
        raise ImproperlyConfigured(f"schema name longer than {_NAME_MAX} bytes: {schema!r}")
    return SQLSettings(parsed.set(drivername=_DRIVER), schema, dict(engine_options))


@dataclass
class _Shared:
    engine: AsyncEngine
    users: int = 0


_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Shared]] = (
    weakref.WeakKeyDictionary()
)


def acquire_engine(settings: SQLSettings) -> AsyncEngine:
    """The running loop's engine for these settings, created on first use (lazy connect)."""
    by_key = _engines.setdefault(asyncio.get_running_loop(), {})
    shared = by_key.get(settings.key())
    if shared is None:
        options = dict(settings.engine_options)
        # Named, so that operators can tell celeriac's connections apart in pg_stat_activity.
        connect_args = {"application_name": "celeriac", **options.pop("connect_args", {})}
        engine = create_async_engine(settings.url, connect_args=connect_args, **options)
        shared = by_key[settings.key()] = _Shared(engine)
    shared.users += 1
    return shared.engine


async def release_engine(settings: SQLSettings) -> None:
    """Let go of an engine from :func:`acquire_engine`; the last user disposes of it."""
    by_key = _engines.get(asyncio.get_running_loop(), {})
    shared = by_key.get(settings.key())
    if shared is None:
        return
    shared.users -= 1
    if shared.users <= 0:
        del by_key[settings.key()]
        await shared.engine.dispose()


def qualified_name(table: Table, engine: AsyncEngine) -> str:
    """The table's quoted, schema-qualified name, for hand-written SQL."""
    return engine.dialect.identifier_preparer.format_table(table)


def channel_name(base: str, schema: str | None) -> str:
    """A NOTIFY channel name for ``base`` in ``schema``, within PostgreSQL's 63 bytes."""
    if not schema:
        return base
    return f"{base}_{hashlib.sha1(schema.encode()).hexdigest()[:16]}"


Prepare = Callable[[AsyncConnection], Awaitable[None]]
"""More set-up run in the transaction that creates the tables (columns, triggers...)."""


async def create_tables(engine: AsyncEngine, metadata: MetaData, prepare: Prepare | None) -> None:
    """Create the schemas (if missing) and the tables, once, even when processes race;
    then run ``prepare`` in the same transaction.

    An advisory transaction lock makes concurrent creators take turns, so the second
    one finds what the first created instead of failing on a duplicate type.
    """
    schemas = sorted({t.schema for t in metadata.tables.values() if t.schema is not None})
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK})
        for schema in schemas:
            await _create_schema(conn, schema)
        await conn.run_sync(metadata.create_all, checkfirst=True)
        if prepare is not None:
            await prepare(conn)


async def _create_schema(conn: AsyncConnection, schema: str) -> None:
    """CREATE SCHEMA unless it exists (checked first: creating needs a privilege)."""
    found = await conn.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": schema}
    )
    if found.first() is None:
        quoted = conn.dialect.identifier_preparer.quote_schema(schema)
        await conn.execute(text(f"CREATE SCHEMA {quoted}"))


async def fetch_rows(
    conn: AsyncConnection, statement: str, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Rows of a statement, or ``[(rowcount,)]`` for one that returns none."""
    result = await conn.execute(text(statement), dict(params))
    if result.returns_rows:
        return [tuple(row) for row in result.fetchall()]
    return [(result.rowcount,)]


async def run_statement(
    engine: AsyncEngine, statement: str, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Run one statement on an autocommit engine; see :func:`fetch_rows`.

    Retried once when the pooled connection turns out to be dead (a server restart
    leaves the whole pool dead): every caller's statement is safe to run again.
    """
    try:
        async with engine.connect() as conn:
            return await fetch_rows(conn, statement, params)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    async with engine.connect() as conn:
        return await fetch_rows(conn, statement, params)


class Tables:
    """One user's tables on the shared engine: created on first use, statements run by name.

    ``statements`` builds the user's SQL from the quoted, schema-qualified table names,
    keyed by the table's ``info['role']``, else its name without ``celeriac_``
    (``taskmeta``, ``beat_lease``...). ``prepare`` runs in the transaction that creates
    the tables, with the statements already built.
    """

    def __init__(
        self,
        settings: SQLSettings,
        metadata: MetaData,
        statements: Callable[[Mapping[str, str]], dict[str, str]],
        prepare: Prepare | None = None,
    ) -> None:
        self.settings = settings
        self._metadata = metadata
        self._statements = statements
        self._prepare = prepare
        self._engine: AsyncEngine | None = None
        self._autocommit: AsyncEngine | None = None  # the same engine, one statement = one commit
        self._sql: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def connect(self) -> AsyncEngine:
        """Create the tables (once) on the shared engine; the engine."""
        async with self._lock:
            if self._engine is None:
                engine = acquire_engine(self.settings)
                try:
                    names = {
                        table.info.get("role")
                        or table.name.removeprefix("celeriac_"): qualified_name(table, engine)
                        for table in self._metadata.tables.values()
                    }
                    self._sql = self._statements(names)
                    await create_tables(engine, self._metadata, self._prepare)
                except BaseException:
                    await release_engine(self.settings)
                    raise
                self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
                self._engine = engine
            return self._engine

    async def close(self) -> None:
        """Let go of the engine (disposed of when nothing else in this loop uses it)."""
        if self._engine is not None:
            self._engine = self._autocommit = None
            await release_engine(self.settings)

    async def run(self, name: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run statement ``name`` in autocommit mode (atomic on its own); its rows."""
        if self._autocommit is None:
            await self.connect()
        assert self._autocommit is not None
        return await run_statement(self._autocommit, self._sql[name], params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed when the block ends without an error."""
        engine = self._engine or await self.connect()
        async with engine.begin() as conn:
            yield conn

    async def fetch(
        self, conn: AsyncConnection, name: str, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Rows of statement ``name`` on ``conn`` (inside :meth:`transaction`)."""
        return await fetch_rows(conn, self._sql[name], params)
