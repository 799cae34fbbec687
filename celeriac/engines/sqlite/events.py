"""Events on the SQLite engine: a short log in the broker's file, read by every receiver.

Celery turns events off on its SQL transports; here they work between the processes of
one machine. A publish appends its messages (kombu's JSON envelope) to the table
``celeriac_events`` in one transaction and deletes the rows older than
``event_queue_ttl`` (at least 5 s), so the table stays small. A receiver starts at the
newest row when it subscribes and reads the rows after the last it saw every
:data:`POLL_INTERVAL` seconds, keeping those whose routing key matches its binding.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac.engines.sqlite.connection import SQLiteFile, sqlite_path, write_transaction
from celeriac.events.bus import EventChannel, Published
from celeriac.protocol import kombu
from celeriac.protocol.envelope import Envelope
from celeriac.transport.exchanges import topic_matches

__all__ = ["POLL_INTERVAL", "SQLiteEventBus", "SQLiteSubscription"]

POLL_INTERVAL = 0.1
"""Seconds between two reads of a waiting receiver."""

_KEEP_AT_LEAST = 5.0
_READ_LIMIT = 1000
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS celeriac_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        routing_key TEXT NOT NULL,
        message BLOB NOT NULL,
        at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS celeriac_events_at ON celeriac_events (at)",
)


def _append(conn: sqlite3.Connection, rows: list[tuple[str, bytes, float]], keep: float) -> None:
    with write_transaction(conn):
        conn.executemany(
            "INSERT INTO celeriac_events (routing_key, message, at) VALUES (?, ?, ?)", rows
        )
        conn.execute("DELETE FROM celeriac_events WHERE at < ?", (time.time() - keep,))


def _last_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM celeriac_events").fetchone()
    return int(row[0])


def _after(conn: sqlite3.Connection, last: int) -> list[tuple[int, str, bytes]]:
    return conn.execute(
        "SELECT id, routing_key, message FROM celeriac_events WHERE id > ? ORDER BY id LIMIT ?",
        (last, _READ_LIMIT),
    ).fetchall()


class SQLiteSubscription:
    """One receiver's place in the log."""

    def __init__(self, file: SQLiteFile, binding: str, last: int) -> None:
        self._file = file
        self._binding = binding
        self._last = last

    async def receive(self, timeout: float) -> list[Envelope]:
        """The matching messages after the last seen, polling up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            rows = await self._file.call(_after, self._last)
            if rows:
                self._last = rows[-1][0]
                found = [
                    kombu.decode(message).envelope
                    for _, key, message in rows
                    if topic_matches(self._binding, key)
                ]
                if found:
                    return found
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            await asyncio.sleep(min(POLL_INTERVAL, left))

    async def close(self) -> None:
        """Nothing to release (the bus owns the file)."""


class SQLiteEventBus:
    """The event log of one SQLite broker file."""

    def __init__(self, url: str, options: Mapping[str, Any], channel: EventChannel) -> None:
        self.url = url
        self.channel = channel
        self._keep = max(_KEEP_AT_LEAST, self.channel.queue_ttl or 0.0)
        self._file = SQLiteFile(
            sqlite_path(url),
            busy_timeout=float(options.get("busy_timeout", 30.0)),
            schema=_SCHEMA,
            what="event log",
        )

    async def publish(self, messages: Sequence[Published]) -> None:
        """Append the messages in one transaction (and drop the expired ones)."""
        if not messages:
            return
        now = time.time()
        exchange = self.channel.exchange
        rows = [
            (
                m.routing_key,
                kombu.encode(
                    m.envelope, exchange=exchange, routing_key=m.routing_key, delivery_tag=""
                ),
                now,
            )
            for m in messages
        ]
        await self._file.call(_append, rows, self._keep)

    async def subscribe(self, binding: str = "#") -> SQLiteSubscription:
        """Read from the newest message on."""
        return SQLiteSubscription(self._file, binding, await self._file.call(_last_id))

    async def close(self) -> None:
        """Close the file."""
        await self._file.close()
