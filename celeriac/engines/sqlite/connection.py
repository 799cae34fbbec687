"""One SQLite file on a thread of its own: how every SQLite store of celeriac opens its file.

The broker, the result store and the beat store each own one :class:`SQLiteFile`. Its
connection lives on one thread, where all blocking work runs (:meth:`SQLiteFile.call`),
so the event loop never waits on a database lock. Opening is the same for all three:
the file named by the URL (:func:`sqlite_path`), created readable by its owner only (it
holds task arguments and results), in WAL mode (readers never block the writer), with a
busy timeout, and the store's schema created in one write transaction. Every write is a
:func:`write_transaction`.

URLs follow SQLAlchemy: ``sqlite:///relative.db`` (relative to the current directory),
``sqlite:////abs/path.db`` (absolute), bare ``sqlite://`` is ``./celeriac.sqlite``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar
from urllib.parse import unquote

from celeriac.exceptions import ImproperlyConfigured
from celeriac.retry import RetryPolicy

__all__ = [
    "DEFAULT_FILE",
    "SQLiteFile",
    "connect",
    "enable_wal",
    "file_in_url",
    "sqlite_path",
    "write_transaction",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_FILE = "celeriac.sqlite"
"""The file a bare ``sqlite://`` URL names, in the current directory."""

_SCHEMES = ("sqlite", "sqla+sqlite", "db+sqlite")


def file_in_url(url: str) -> str:
    """The file a ``sqlite://`` URL names, as written there: relative or absolute."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() not in _SCHEMES or not sep:
        raise ImproperlyConfigured(f"not a sqlite:// URL: {url!r}")
    rest = unquote(rest.partition("?")[0].partition("#")[0])
    if rest in ("", "/"):
        return DEFAULT_FILE
    if not rest.startswith("/"):
        raise ImproperlyConfigured(
            f"sqlite URL {url!r} names a host; use sqlite:///relative.db or sqlite:////abs.db"
        )
    path = rest[1:]  # one slash separates the (empty) host from the path
    if path == ":memory:" or path.startswith("file:"):
        raise ImproperlyConfigured(
            f"{url!r}: an in-memory SQLite database cannot be shared; use memory:// instead"
        )
    return path


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite://`` URL names, made absolute against the current directory now."""
    return Path.cwd() / file_in_url(url)


def enable_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """Switch the file to WAL and return the journal mode now in force.

    Retried for up to ``timeout`` seconds: when two processes open a brand-new file at
    once, the switch can fail with "database is locked" without waiting for busy_timeout.
    """
    policy = RetryPolicy(first=0.01, factor=2.0, max_delay=0.1, max_retries=None, deadline=timeout)
    return policy.call_blocking(
        lambda: str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]),
        retry_on=(sqlite3.OperationalError,),
        what="switching the SQLite file to WAL",
        give_up=lambda exc, attempts: sqlite3.OperationalError(
            f"{exc} (after {attempts} attempts in {timeout:g}s)"
        ),
    )


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on an autocommit connection (``isolation_level=None``).

    IMMEDIATE takes the write lock up front (waiting up to ``busy_timeout``), so a
    read-check-write inside cannot interleave with another process doing the same, and a
    transaction never fails half-way trying to upgrade a stale read snapshot.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _create_private(path: Path) -> None:
    """Create ``path`` empty and readable by its owner only, unless it exists already.

    SQLite would create it readable by everyone (0644 less the umask); its ``-wal`` and
    ``-shm`` files take the mode of the main file, so creating that one is enough.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def connect(
    path: Path,
    *,
    busy_timeout: float,
    schema: Sequence[str],
    what: str = "database",
    upgrade: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """Open ``path`` (blocking): created 0600 if new, WAL, busy timeout, ``schema`` created.

    ``upgrade`` runs in the schema's write transaction, to bring older files up to date.
    A file that cannot be opened is an :class:`ImproperlyConfigured` naming ``what``.
    """
    try:
        _create_private(path)
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    except (OSError, sqlite3.OperationalError) as exc:
        raise ImproperlyConfigured(f"cannot open SQLite {what} {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = enable_wal(conn, busy_timeout)
        if mode.lower() != "wal":
            log.warning("%s: journal_mode is %s, not WAL; workers may block", path, mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        with write_transaction(conn):
            for statement in schema:
                conn.execute(statement)
            if upgrade is not None:
                upgrade(conn)
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteFile:
    """One SQLite file opened on a thread of its own, for the asyncio side of one store.

    :meth:`call` runs ``fn(conn, *args)`` on that thread, opening the file first if
    needed; calls run one at a time, in order. The connection never leaves the thread.
    :meth:`close` closes it once the work already queued has run; a later call opens
    the file again.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float,
        schema: Sequence[str],
        what: str,
        upgrade: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.what = what
        self._schema = tuple(schema)
        self._upgrade = upgrade
        self._open_lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only on the executor's thread

    def __repr__(self) -> str:
        return f"<SQLiteFile {self.what} {self.path}>"

    @property
    def is_open(self) -> bool:
        """Whether the file is open (its thread running)."""
        return self._executor is not None

    async def open(self) -> None:
        """Open the file on a new thread and create the schema; idempotent."""
        async with self._open_lock:
            if self._executor is not None:
                return
            name = f"celeriac-sqlite-{self.what.replace(' ', '-')}"
            executor = ThreadPoolExecutor(1, thread_name_prefix=name)
            try:
                conn = await asyncio.get_running_loop().run_in_executor(executor, self._connect)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._executor, self._conn = executor, conn

    def _connect(self) -> sqlite3.Connection:
        return connect(
            self.path,
            busy_timeout=self.busy_timeout,
            schema=self._schema,
            what=self.what,
            upgrade=self._upgrade,
        )

    async def call(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(conn, *args, **kwargs)`` on the file's thread and return its result."""
        if self._executor is None:
            await self.open()
        return await self.submit(fn, *args, **kwargs)

    def submit(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> asyncio.Future[T]:
        """Queue ``fn(conn, ...)`` on the thread of the open file; the future of its result.

        Raises RuntimeError when the file is closed.
        """
        executor, conn = self._executor, self._conn
        if executor is None or conn is None:
            raise RuntimeError(f"{self!r} is closed")

        def job() -> T:  # on the thread, where the connection lives
            return fn(conn, *args, **kwargs)

        return asyncio.get_running_loop().run_in_executor(executor, job)

    async def close(self) -> None:
        """Close the connection after the work already queued; idempotent."""
        # Each thread closes its own connection: a call right after this one opens a new
        # thread and connection, which this close must not touch (a flush after a close).
        executor, self._executor = self._executor, None
        conn, self._conn = self._conn, None
        if executor is None or conn is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        finally:
            executor.shutdown(wait=False)
