"""Moving results out of the tables celeriac used before it wrote Celery's.

Until then the PostgreSQL backend kept ``celeriac_taskmeta`` (``task_id``, ``status``,
``meta``: the whole document encoded with the result serializer, ``stored_at``,
``expires_at``) and ``celeriac_groupmeta`` (``group_id``, ``members``: a JSON list,
``expires_at``). When the backend sets up its tables and finds those, it copies their
unexpired rows into Celery's tables (rows already there win), renames the old tables to
``<name>_migrated`` and logs what it did, all in the set-up transaction, which an advisory
lock gives to one process at a time: the first process to start migrates, once.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from celeriac.backends.base import Meta
from celeriac.exceptions import MissingDependency

try:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncConnection
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("SQL result backend: pip install 'celeriac[sql]'") from exc

__all__ = ["OLD_GROUPS", "OLD_TASKS", "migrate_old_tables"]

logger = logging.getLogger("celeriac.engines.postgres")

OLD_TASKS = "celeriac_taskmeta"
OLD_GROUPS = "celeriac_groupmeta"
_BATCH = 1000

WriteTasks = Callable[[AsyncConnection, list[tuple[str, Meta, float]]], Awaitable[None]]
"""Inserts ``(task_id, document, expires_at)`` rows, leaving rows already present alone."""
WriteGroup = Callable[[AsyncConnection, str, list[str], float], Awaitable[None]]
"""Inserts one saved group, leaving one already present alone."""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(schema: str | None, name: str) -> str:
    return f"{_quote(schema)}.{_quote(name)}" if schema else _quote(name)


async def _exists(conn: AsyncConnection, qualified: str) -> bool:
    found = await conn.execute(text("SELECT to_regclass(:name)"), {"name": qualified})
    return found.scalar() is not None


async def _retire(conn: AsyncConnection, schema: str | None, name: str) -> str:
    """Rename a migrated table out of the way; its new name."""
    target = f"{name}_migrated"
    if await _exists(conn, _qualified(schema, target)):
        target = f"{name}_migrated_{int(time.time())}"
    await conn.execute(text(f"ALTER TABLE {_qualified(schema, name)} RENAME TO {_quote(target)}"))
    return target


async def _move_tasks(
    conn: AsyncConnection, old: str, decode: Callable[[bytes], Meta], write: WriteTasks
) -> tuple[int, int]:
    """Copy unexpired documents in batches; (copied, unreadable)."""
    moved = unreadable = 0
    after = ""
    statement = text(
        f"SELECT task_id, meta, expires_at FROM {old} WHERE task_id > :after"
        " AND (expires_at IS NULL OR expires_at > :now) ORDER BY task_id LIMIT :limit"
    )
    while True:
        params = {"after": after, "now": time.time(), "limit": _BATCH}
        rows = (await conn.execute(statement, params)).fetchall()
        if not rows:
            return moved, unreadable
        items = []
        for task_id, blob, expires_at in rows:
            try:
                items.append((str(task_id), decode(bytes(blob)), expires_at or math.inf))
            except Exception:
                unreadable += 1
        if items:
            await write(conn, items)
        moved += len(items)
        after = str(rows[-1][0])


async def _move_groups(conn: AsyncConnection, old: str, write: WriteGroup) -> int:
    statement = text(
        f"SELECT group_id, members, expires_at FROM {old}"
        " WHERE expires_at IS NULL OR expires_at > :now"
    )
    rows = (await conn.execute(statement, {"now": time.time()})).fetchall()
    for group_id, members, expires_at in rows:
        await write(
            conn, str(group_id), [str(m) for m in json.loads(members)], expires_at or math.inf
        )
    return len(rows)


async def migrate_old_tables(
    conn: AsyncConnection,
    schemas: Sequence[str | None],
    new_names: Sequence[str],
    decode: Callable[[bytes], Meta],
    write_tasks: WriteTasks,
    write_group: WriteGroup,
) -> None:
    """Migrate ``celeriac_taskmeta`` (in ``schemas[0]``) and ``celeriac_groupmeta`` (in
    ``schemas[1]``) once, unless the new tables have those very names."""
    task_schema, group_schema = schemas
    old_tasks, old_groups = _qualified(task_schema, OLD_TASKS), _qualified(group_schema, OLD_GROUPS)
    found_tasks = OLD_TASKS not in new_names and await _exists(conn, old_tasks)
    found_groups = OLD_GROUPS not in new_names and await _exists(conn, old_groups)
    if not (found_tasks or found_groups):
        return
    moved = unreadable = groups = 0
    retired = []
    if found_tasks:
        moved, unreadable = await _move_tasks(conn, old_tasks, decode, write_tasks)
        retired.append(await _retire(conn, task_schema, OLD_TASKS))
    if found_groups:
        groups = await _move_groups(conn, old_groups, write_group)
        retired.append(await _retire(conn, group_schema, OLD_GROUPS))
    logger.warning(
        "result backend: migrated %d results and %d saved groups from celeriac's old tables"
        " into %s%s; the old tables are kept as %s (drop them when you no longer need them)",
        moved,
        groups,
        " and ".join(new_names),
        f" ({unreadable} results could not be decoded and were left)" if unreadable else "",
        " and ".join(retired),
    )
