"""The task list's filters as one SQL statement, the same for every history store.

Named parameters (``:state``) suit both ``sqlite3`` and SQLAlchemy's ``text()``. Each
filter Flower's ``/api/tasks`` takes becomes a condition on a column of its own; the
newest-first order reads the ``(column, updated)`` indexes backwards and stops at the
page's end, so a filter on state, name or worker costs a page, not a table. ``search``
is a ``LIKE`` on the lowercased ``haystack`` column: read newest first until enough
rows matched (quick when many do, a scan of the table when none does).
"""

from __future__ import annotations

from typing import Any

from celeriac.states import READY_STATES
from celeriac.web.records import TaskQuery

__all__ = ["COLUMNS", "INDEXED", "READY_LIST", "select_statement"]

COLUMNS = ("uuid", "name", "state", "worker", "updated", "received", "started", "haystack",
           "record")  # fmt: skip
"""The history table's columns, in the order the stores write them."""

INDEXED = ("name", "state", "worker")
"""The columns with an index of ``(column, updated)``; ``updated`` has one of its own."""

READY_LIST = ", ".join(f"'{state}'" for state in sorted(READY_STATES))
"""The finished states as an SQL list, for ``state IN (...)``."""

_RANGES = (
    ("received", "received_start", ">"),
    ("received", "received_end", "<"),
    ("started", "started_start", ">"),
    ("started", "started_end", "<"),
)


def select_statement(table: str, query: TaskQuery, count: int) -> tuple[str, dict[str, Any]]:
    """``SELECT uuid, key FROM table`` filtered and sorted by ``query``, its first ``count``:
    ``key`` is what the rows are sorted by (``updated``, else the ``sort_by`` column), so
    that a caller can merge and page before it reads any record."""
    conditions: list[str] = []
    params: dict[str, Any] = {"count": count}
    if query.state is not None:
        conditions.append("state = :state")
        params["state"] = query.state.upper()
    if query.taskname is not None:
        conditions.append("name = :taskname")
        params["taskname"] = query.taskname
    if query.workername is not None:
        conditions.append("worker = :workername")
        params["workername"] = query.workername
    for column, key, operator in _RANGES:
        value = getattr(query, key)
        if value is not None:
            conditions.append(f"{column} {operator} :{key}")
            params[key] = value
    if query.search is not None:
        conditions.append("haystack LIKE :search ESCAPE '!'")
        params["search"] = "%" + _escaped(query.search.lower()) + "%"
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    key = "updated" if query.sort_by is None else query.sort_by.lstrip("-")
    order = _order(query.sort_by)
    return f"SELECT uuid, {key} FROM {table}{where} {order} LIMIT :count", params


def _order(sort_by: str | None) -> str:
    """Newest first; or by ``sort_by`` with missing values last (``-``: all reversed,
    as the in-memory list sorts)."""
    if sort_by is None:
        return "ORDER BY updated DESC"
    column = sort_by.lstrip("-")
    if column not in ("name", "state", "received", "started"):
        raise ValueError(f"cannot sort by {sort_by!r}")
    way = "DESC" if sort_by.startswith("-") else "ASC"
    nulls = "DESC" if way == "ASC" else "ASC"
    return f"ORDER BY (CASE WHEN {column} IS NULL THEN 0 ELSE 1 END) {nulls}, {column} {way}"


def _escaped(text: str) -> str:
    """``text`` with LIKE's wildcards taken literally (``!`` escapes)."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
