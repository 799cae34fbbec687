"""The blocking half of the SQLite transport: its schema and every SQL statement.

Each function takes the connection of the transport's
:class:`~celeriac.engines.sqlite.connection.SQLiteFile` and runs on that file's thread
(through ``SQLiteFile.call``), never on the event loop. Message rows are in one of
three states: ready (0), delayed (1: ``visible_at`` is in the future) and leased
(2: ``consumer`` holds it). Every write runs in ``BEGIN IMMEDIATE``, so claiming is atomic
across processes, and a batch (publish, ack, reject) is one transaction.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from celeriac.engines.sqlite.connection import write_transaction
from celeriac.exceptions import SerializationError
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.kombu import invalid_envelope
from celeriac.transport.base import DeadLetter, Outgoing, QueueSpec
from celeriac.transport.exchanges import Binding, binding_for, route

__all__ = [
    "SCHEMA",
    "MessageRow",
    "beat",
    "bury",
    "declare",
    "defer",
    "fetch",
    "list_dead",
    "publish",
    "purge",
    "purge_dead",
    "queue_sizes",
    "release",
    "requeue_dead",
    "revoke",
    "revoked",
    "settle",
    "requeue_lost",
    "unbind",
]

log = logging.getLogger("celeriac.engines.sqlite.broker")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS celeriac_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        state INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        visible_at REAL NOT NULL,
        consumer TEXT,
        redelivered INTEGER NOT NULL DEFAULT 0,
        exchange TEXT NOT NULL,
        routing_key TEXT NOT NULL,
        body BLOB NOT NULL,
        headers TEXT NOT NULL,
        properties TEXT NOT NULL,
        content_type TEXT NOT NULL,
        content_encoding TEXT NOT NULL,
        published_at REAL NOT NULL)""",
    # Partial indexes, one per state, so each hot query reads only rows it can use:
    # fetch walks ready rows in delivery order; 100k delayed rows are never scanned.
    """CREATE INDEX IF NOT EXISTS celeriac_messages_ready
        ON celeriac_messages (queue, priority DESC, id) WHERE state = 0""",
    """CREATE INDEX IF NOT EXISTS celeriac_messages_delayed
        ON celeriac_messages (queue, visible_at) WHERE state = 1""",
    """CREATE INDEX IF NOT EXISTS celeriac_messages_leased
        ON celeriac_messages (consumer) WHERE state = 2""",
    """CREATE TABLE IF NOT EXISTS celeriac_consumers (
        id TEXT PRIMARY KEY,
        expires_at REAL NOT NULL,
        hostname TEXT NOT NULL,
        pid INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS celeriac_dead (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        reason TEXT NOT NULL,
        dead_at REAL NOT NULL,
        exchange TEXT NOT NULL,
        routing_key TEXT NOT NULL,
        body BLOB NOT NULL,
        headers TEXT NOT NULL,
        properties TEXT NOT NULL,
        content_type TEXT NOT NULL,
        content_encoding TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS celeriac_revoked (
        task_id TEXT PRIMARY KEY,
        expires REAL NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS celeriac_exchanges (
        name TEXT PRIMARY KEY,
        type TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS celeriac_bindings (
        exchange TEXT NOT NULL,
        queue TEXT NOT NULL,
        routing_key TEXT NOT NULL,
        arguments TEXT NOT NULL,
        PRIMARY KEY (exchange, queue, routing_key, arguments))""",
)


_COLUMNS = (
    "id, queue, exchange, routing_key, redelivered,"
    " body, headers, properties, content_type, content_encoding"
)
_INSERT = (
    "INSERT INTO celeriac_messages (queue, state, priority, visible_at, exchange, routing_key,"
    " body, headers, properties, content_type, content_encoding, published_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Hot-path statements, each served by one partial index (tests check the query plans).
SQL_HAS_WORK = (
    "SELECT EXISTS (SELECT 1 FROM celeriac_messages WHERE state = 0 AND queue = ?)"
    " OR EXISTS (SELECT 1 FROM celeriac_messages"
    " WHERE state = 1 AND queue = ? AND visible_at <= ?)"
)
SQL_PROMOTE = (
    "UPDATE celeriac_messages SET state = 0 WHERE state = 1 AND queue = ? AND visible_at <= ?"
)
SQL_CANDIDATES = (
    "SELECT id FROM celeriac_messages WHERE state = 0 AND queue = ?"
    " ORDER BY priority DESC, id LIMIT ?"
)
SQL_NEXT_DUE = (
    "SELECT visible_at FROM celeriac_messages WHERE state = 1 AND queue = ?"
    " ORDER BY visible_at LIMIT 1"
)
SQL_WAITING = (
    "SELECT (SELECT count(*) FROM celeriac_messages WHERE state = 0 AND queue = ?)"
    " + (SELECT count(*) FROM celeriac_messages WHERE state = 1 AND queue = ?)"
)
SQL_HELD_BY = (
    "UPDATE celeriac_messages SET state = 0, consumer = NULL, redelivered = 1"
    " WHERE state = 2 AND consumer = ?"
)
_READY, _DELAYED, _LEASED = 0, 1, 2
_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A claimed message as read back from the table."""

    id: int
    queue: str
    exchange: str
    routing_key: str
    redelivered: bool
    envelope: Envelope

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> MessageRow:
        """Build from a row selected with ``_COLUMNS``."""
        env = _envelope(row[5:10])
        return cls(row[0], row[1], row[2], row[3], bool(row[4]), env)


def _envelope(cols: Sequence[Any]) -> Envelope:
    """The envelope of a row; one whose columns cannot be read becomes an invalid envelope
    (the worker dead-letters it alone: the rest of the fetch goes on)."""
    body, headers, properties, content_type, content_encoding = cols
    try:
        headers, properties = json.loads(headers), json.loads(properties)
    except (ValueError, TypeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return invalid_envelope(bytes(body), f"stored headers or properties unreadable: {reason}")
    if type(headers) is not dict or type(properties) is not dict:
        return invalid_envelope(bytes(body), "stored headers or properties are not objects")
    return Envelope(
        body=bytes(body),
        headers=headers,
        content_type=content_type,
        content_encoding=content_encoding,
        properties=properties,
    )


def _dumps(value: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"message {what} are not JSON-serializable: {exc}") from exc


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def declare(conn: sqlite3.Connection, specs: Sequence[QueueSpec]) -> None:
    """Persist exchanges and bindings."""
    bindings = [(spec, binding_for(spec)) for spec in specs]
    with write_transaction(conn):
        for spec, binding in bindings:
            if binding is None:
                continue
            old = conn.execute(
                "SELECT type FROM celeriac_exchanges WHERE name = ?", (spec.exchange,)
            ).fetchone()
            if old is not None and old[0] != spec.exchange_type:
                log.warning(
                    "exchange %r redeclared as %s (was %s)",
                    spec.exchange,
                    spec.exchange_type,
                    old[0],
                )
            conn.execute(
                "INSERT OR REPLACE INTO celeriac_exchanges (name, type) VALUES (?, ?)",
                (spec.exchange, spec.exchange_type),
            )
            conn.execute(
                "INSERT OR IGNORE INTO celeriac_bindings VALUES (?, ?, ?, ?)",
                (
                    spec.exchange,
                    spec.name,
                    spec.routing_key,
                    json.dumps(dict(binding.arguments), sort_keys=True),
                ),
            )


def unbind(conn: sqlite3.Connection, specs: Sequence[QueueSpec]) -> None:
    """Forget the bindings of ``specs``; an auto-delete queue's waiting rows go too."""
    with write_transaction(conn):
        for spec in specs:
            binding = binding_for(spec)
            if binding is not None:
                conn.execute(
                    "DELETE FROM celeriac_bindings"
                    " WHERE exchange = ? AND queue = ? AND routing_key = ? AND arguments = ?",
                    (
                        spec.exchange,
                        spec.name,
                        spec.routing_key,
                        json.dumps(dict(binding.arguments), sort_keys=True),
                    ),
                )
            if spec.auto_delete:
                conn.execute(
                    "DELETE FROM celeriac_messages WHERE queue = ? AND state IN (0, 1)",
                    (spec.name,),
                )


def _routing(
    conn: sqlite3.Connection, exchanges: set[str]
) -> tuple[dict[str, str], dict[str, list[Binding]]]:
    names = sorted(exchanges)
    if not names:
        return {}, {}
    marks = _marks(len(names))
    types = dict(
        conn.execute(
            f"SELECT name, type FROM celeriac_exchanges WHERE name IN ({marks})", names
        ).fetchall()
    )
    bindings: dict[str, list[Binding]] = {}
    for exchange, queue, key, args in conn.execute(
        f"SELECT exchange, queue, routing_key, arguments FROM celeriac_bindings"
        f" WHERE exchange IN ({marks}) ORDER BY rowid",
        names,
    ):
        bindings.setdefault(exchange, []).append(Binding(exchange, queue, key, json.loads(args)))
    return types, bindings


def publish(conn: sqlite3.Connection, messages: Sequence[Outgoing], now: float) -> int:
    """Route and insert messages in one transaction; return how many were unroutable."""
    encoded = [
        (
            out,
            _dumps(out.envelope.headers, "headers"),
            _dumps(out.envelope.properties, "properties"),
        )
        for out in messages
    ]
    unroutable = 0
    with write_transaction(conn):
        types, bindings = _routing(conn, {out.exchange for out in messages if out.exchange})
        rows: list[tuple[Any, ...]] = []
        for out, headers, properties in encoded:
            env = out.envelope
            queues = route(
                out.exchange,
                types.get(out.exchange),
                out.routing_key,
                env.headers,
                bindings.get(out.exchange, ()),
            )
            unroutable += not queues and not out.optional
            delayed = out.not_before is not None and out.not_before > now
            visible = out.not_before if delayed and out.not_before is not None else now
            rows.extend(
                (
                    queue,
                    _DELAYED if delayed else _READY,
                    env.priority,
                    visible,
                    out.exchange,
                    out.routing_key,
                    env.body,
                    headers,
                    properties,
                    env.content_type,
                    env.content_encoding,
                    now,
                )
                for queue in queues
            )
        conn.executemany(_INSERT, rows)
    return unroutable


def _has_work(conn: sqlite3.Connection, queue: str, now: float) -> bool:
    return bool(conn.execute(SQL_HAS_WORK, (queue, queue, now)).fetchone()[0])


def _next_due(conn: sqlite3.Connection, queues: Sequence[str]) -> float | None:
    due = [row[0] for queue in queues for row in conn.execute(SQL_NEXT_DUE, (queue,))]
    return min(due) if due else None


def fetch(
    conn: sqlite3.Connection,
    consumer: str,
    queues: Sequence[str],
    limit: int,
    expires: float,
    sweep: bool,
) -> tuple[list[MessageRow], float | None, int]:
    """Claim up to ``limit`` due messages, one queue after another in turn.

    Returns (rows, when the next delayed message is due if none were claimed,
    deliveries the sweep made visible again).
    """
    now = time.time()
    recovered = requeue_lost(conn, now) if sweep else 0
    busy = [q for q in queues if _has_work(conn, q, now)]
    if not busy:
        return [], _next_due(conn, queues), recovered
    with write_transaction(conn):
        per_queue = []
        for queue in busy:
            conn.execute(SQL_PROMOTE, (queue, now))
            per_queue.append([r[0] for r in conn.execute(SQL_CANDIDATES, (queue, limit))])
        # Round-robin over the queues (already rotated by the caller) so none starves.
        turns = itertools.chain.from_iterable(itertools.zip_longest(*per_queue))
        chosen = [msg_id for msg_id in turns if msg_id is not None][:limit]
        if not chosen:
            return [], None, recovered
        _upsert_consumer(conn, consumer, expires)
        claimed = conn.execute(
            f"UPDATE celeriac_messages SET state = 2, consumer = ?"
            f" WHERE id IN ({_marks(len(chosen))}) RETURNING {_COLUMNS}",
            (consumer, *chosen),
        ).fetchall()
    order = {msg_id: n for n, msg_id in enumerate(chosen)}
    rows = sorted((MessageRow.from_row(row) for row in claimed), key=lambda r: order[r.id])
    return rows, None, recovered


def _upsert_consumer(conn: sqlite3.Connection, consumer: str, expires: float) -> None:
    conn.execute(
        "INSERT INTO celeriac_consumers (id, expires_at, hostname, pid) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at",
        (consumer, expires, socket.gethostname(), os.getpid()),
    )


def beat(conn: sqlite3.Connection, consumer: str, expires: float) -> int:
    """Renew this consumer's lease and sweep dead ones; return deliveries recovered."""
    with write_transaction(conn):
        _upsert_consumer(conn, consumer, expires)
    return requeue_lost(conn, time.time())


def requeue_lost(conn: sqlite3.Connection, now: float) -> int:
    """Requeue (as redelivered) the leases of consumers whose heartbeat expired."""
    stale = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM celeriac_consumers WHERE expires_at < ?)"
        " OR EXISTS (SELECT 1 FROM celeriac_messages WHERE state = 2"
        " AND consumer NOT IN (SELECT id FROM celeriac_consumers))",
        (now,),
    ).fetchone()[0]
    if not stale:
        return 0
    with write_transaction(conn):
        conn.execute("DELETE FROM celeriac_consumers WHERE expires_at < ?", (now,))
        count = conn.execute(
            "UPDATE celeriac_messages SET state = 0, consumer = NULL, redelivered = 1"
            " WHERE state = 2 AND consumer NOT IN (SELECT id FROM celeriac_consumers)"
        ).rowcount
    if count:
        log.warning("requeued %d deliveries of lost consumer(s)", count)
    return count


def release(conn: sqlite3.Connection, consumer: str) -> int:
    """Forget ``consumer``; requeue (as redelivered) everything it holds."""
    with write_transaction(conn):
        conn.execute("DELETE FROM celeriac_consumers WHERE id = ?", (consumer,))
        return conn.execute(SQL_HELD_BY, (consumer,)).rowcount


def settle(conn: sqlite3.Connection, consumer: str, ids: Sequence[int], requeue: bool) -> int:
    """Delete (or requeue as redelivered) leased rows this consumer still holds."""
    sql = (
        "UPDATE celeriac_messages SET state = 0, consumer = NULL, redelivered = 1"
        if requeue
        else "DELETE FROM celeriac_messages"
    )
    count = 0
    with write_transaction(conn):
        for chunk in _chunks(ids):
            count += conn.execute(
                f"{sql} WHERE state = 2 AND consumer = ? AND id IN ({_marks(len(chunk))})",
                (consumer, *chunk),
            ).rowcount
    return count


def defer(conn: sqlite3.Connection, consumer: str, msg_id: int, not_before: float) -> bool:
    """Turn a leased row into a delayed one until ``not_before`` (one UPDATE: atomic);
    False when the lease was lost."""
    with write_transaction(conn):
        return bool(
            conn.execute(
                "UPDATE celeriac_messages SET state = 1, consumer = NULL, visible_at = ?"
                " WHERE id = ? AND state = 2 AND consumer = ?",
                (not_before, msg_id, consumer),
            ).rowcount
        )


def bury(conn: sqlite3.Connection, consumer: str, msg_id: int, reason: str, now: float) -> bool:
    """Move a leased row to the dead letters; False when the lease was lost."""
    with write_transaction(conn):
        row = conn.execute(
            "DELETE FROM celeriac_messages WHERE id = ? AND state = 2 AND consumer = ?"
            " RETURNING queue, exchange, routing_key,"
            " body, headers, properties, content_type, content_encoding",
            (msg_id, consumer),
        ).fetchone()
        if row is None:
            return False
        conn.execute(
            "INSERT INTO celeriac_dead (queue, reason, dead_at, exchange, routing_key, body,"
            " headers, properties, content_type, content_encoding)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row[0], reason, now, *row[1:]),
        )
    return True


def list_dead(conn: sqlite3.Connection, limit: int) -> list[DeadLetter]:
    """Dead letters, oldest first."""
    rows = conn.execute(
        "SELECT id, queue, reason, dead_at,"
        " body, headers, properties, content_type, content_encoding"
        " FROM celeriac_dead ORDER BY dead_at, id LIMIT ?",
        (limit,),
    ).fetchall()
    return [DeadLetter(str(r[0]), r[1], r[2], r[3], _envelope(r[4:9])) for r in rows]


def requeue_dead(conn: sqlite3.Connection, ids: Sequence[int] | None, now: float) -> int:
    """Move dead letters back to their queues as fresh, ready messages."""
    where = "" if ids is None else f" WHERE id IN ({_marks(len(ids))})"
    if ids is not None and not ids:
        return 0
    with write_transaction(conn):
        rows = conn.execute(
            "DELETE FROM celeriac_dead" + where + " RETURNING id, queue, exchange,"
            " routing_key, body, headers, properties, content_type, content_encoding",
            tuple(ids or ()),
        ).fetchall()
        rows.sort()  # RETURNING order is unspecified; keep the dead letters' order
        conn.executemany(
            _INSERT,
            [(r[1], _READY, json.loads(r[6]).get("priority") or 0, now, *r[2:], now) for r in rows],
        )
    return len(rows)


def purge_dead(conn: sqlite3.Connection, ids: Sequence[int] | None) -> int:
    """Delete dead letters (all when ``ids`` is None)."""
    if ids is not None and not ids:
        return 0
    where = "" if ids is None else f" WHERE id IN ({_marks(len(set(ids)))})"
    with write_transaction(conn):
        return conn.execute("DELETE FROM celeriac_dead" + where, tuple(set(ids or ()))).rowcount


def purge(conn: sqlite3.Connection, queues: Sequence[str]) -> int:
    """Delete waiting (ready or delayed) rows of ``queues``."""
    count = 0
    with write_transaction(conn):
        for queue in queues:
            for state in (_READY, _DELAYED):
                count += conn.execute(
                    f"DELETE FROM celeriac_messages WHERE state = {state} AND queue = ?",
                    (queue,),
                ).rowcount
    return count


def queue_sizes(conn: sqlite3.Connection, queues: Sequence[str]) -> dict[str, int]:
    """Waiting (ready or delayed) rows per queue."""
    return {queue: conn.execute(SQL_WAITING, (queue, queue)).fetchone()[0] for queue in queues}


def revoke(conn: sqlite3.Connection, task_ids: Sequence[str], expires: float, now: float) -> None:
    """Persist revoked ids (keeping the later expiry) and drop expired ones."""
    with write_transaction(conn):
        conn.execute("DELETE FROM celeriac_revoked WHERE expires <= ?", (now,))
        conn.executemany(
            "INSERT INTO celeriac_revoked (task_id, expires) VALUES (?, ?)"
            " ON CONFLICT (task_id) DO UPDATE SET expires = max(expires, excluded.expires)",
            [(task_id, expires) for task_id in task_ids],
        )


def revoked(conn: sqlite3.Connection, now: float) -> set[str]:
    """Ids whose revoke has not expired."""
    rows = conn.execute("SELECT task_id FROM celeriac_revoked WHERE expires > ?", (now,))
    return {row[0] for row in rows}
