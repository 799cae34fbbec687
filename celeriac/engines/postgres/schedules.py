"""The PostgreSQL schedule store: beat's lease and last runs in two tables.

* ``celeriac_beat_lease`` - one row per namespace: ``holder`` and ``expires_at``.
* ``celeriac_beat_state`` - one row per (namespace, entry): ``last_run`` (epoch seconds,
  ``DOUBLE PRECISION``, so a Python float round-trips exactly), ``claimed_by`` and
  ``updated_at``.

Both are created on connect (in the ``schema`` option's schema if given; see
:mod:`celeriac.engines.postgres.connection` for URLs and options), under an advisory lock so
beats starting
together do not trip over each other. Every operation is ONE statement, atomic on its
own:

* taking the lease is ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` (the row is ours,
  or expired), so of two racing beats only one gets a row back;
* a claim is an ``UPDATE ... WHERE last_run = <expected>`` (or an ``INSERT ... ON
  CONFLICT DO NOTHING`` when there is no record yet) guarded by ``EXISTS`` (a live
  lease of the caller). PostgreSQL re-checks the ``WHERE`` of a row another
  transaction changed meanwhile, so a tick value is claimed at most once.

Lease times come from the database server's clock (``clock_timestamp()``), as the
Redis store relies on Redis' own expiry: beats on hosts with skewed clocks still agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeriac.engines.postgres.connection import SQLSettings, Tables, parse_sql_settings
from celeriac.exceptions import MissingDependency

try:
    from sqlalchemy import Column, Float, MetaData, PrimaryKeyConstraint, String, Table
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("SQL beat store: pip install 'celeriac[sql]'") from exc

__all__ = ["SQLStore", "beat_tables"]

_NOW = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


def beat_tables(schema: str | None) -> MetaData:
    """The store's tables (the lease and the last runs), in ``schema``."""
    metadata = MetaData(schema=schema)
    Table(
        "celeriac_beat_lease",
        metadata,
        Column("namespace", String(255), primary_key=True),
        Column("holder", String(255), nullable=False),
        Column("expires_at", Float(53), nullable=False),
    )
    Table(
        "celeriac_beat_state",
        metadata,
        Column("namespace", String(255), nullable=False),
        Column("entry", String(255), nullable=False),
        Column("last_run", Float(53), nullable=False),
        Column("claimed_by", String(255), nullable=False),
        Column("updated_at", Float(53), nullable=False),
        PrimaryKeyConstraint("namespace", "entry"),
    )
    return metadata


def _statements(t: Mapping[str, str]) -> dict[str, str]:
    """The store's SQL, for the quoted table names in ``t``."""
    lease, state = t["beat_lease"], t["beat_state"]
    holds = (
        f"EXISTS (SELECT 1 FROM {lease} WHERE namespace = :ns AND holder = :holder"
        f" AND expires_at > {_NOW})"
    )
    mine = (
        " WHERE namespace = :ns AND entry = :entry AND last_run = :claimed AND claimed_by = :holder"
    )
    return {
        "acquire": (
            f"INSERT INTO {lease} AS l (namespace, holder, expires_at)"
            f" VALUES (:ns, :holder, {_NOW} + :ttl)"
            " ON CONFLICT (namespace) DO UPDATE SET holder = excluded.holder,"
            " expires_at = excluded.expires_at"
            f" WHERE l.holder = excluded.holder OR l.expires_at <= {_NOW}"
            " RETURNING l.holder"
        ),
        "release": f"DELETE FROM {lease} WHERE namespace = :ns AND holder = :holder",
        "holder": f"SELECT holder FROM {lease} WHERE namespace = :ns AND expires_at > {_NOW}",
        "load": f"SELECT entry, last_run FROM {state} WHERE namespace = :ns",
        "claim_new": (
            f"INSERT INTO {state} (namespace, entry, last_run, claimed_by, updated_at)"
            " SELECT CAST(:ns AS VARCHAR), CAST(:entry AS VARCHAR),"
            f" CAST(:new AS DOUBLE PRECISION), CAST(:holder AS VARCHAR), {_NOW} WHERE {holds}"
            " ON CONFLICT (namespace, entry) DO NOTHING"
        ),
        "claim": (
            f"UPDATE {state} SET last_run = :new, claimed_by = :holder, updated_at = {_NOW}"
            f" WHERE namespace = :ns AND entry = :entry AND last_run = :expected AND {holds}"
        ),
        "revert_delete": f"DELETE FROM {state}{mine}",
        "revert": (
            f"UPDATE {state} SET last_run = :previous, claimed_by = '', updated_at = {_NOW}{mine}"
        ),
    }


class SQLStore:
    """A :class:`~celeriac.beat.stores.ScheduleStore` in PostgreSQL (see the module docstring).

    URLs and options as in :mod:`celeriac.engines.postgres.connection` (``schema``,
    ``engine_options``).
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "default",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self._settings: SQLSettings = parse_sql_settings(url, options, role="beat")
        self._tables = Tables(self._settings, beat_tables(self._settings.schema), _statements)

    def __repr__(self) -> str:
        where = self._settings.url.render_as_string(hide_password=True)
        return f"<SQLStore {where} schema={self._settings.schema} namespace={self.namespace}>"

    async def connect(self) -> None:
        """Create the engine and the tables; idempotent."""
        await self._tables.connect()

    async def close(self) -> None:
        """Release the engine (disposed of when nothing else in this loop uses it)."""
        await self._tables.close()

    async def _run(self, name: str, **params: Any) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit mode; its rows (none for DML)."""
        return await self._tables.run(name, {"ns": self.namespace, **params})

    async def acquire_lease(self, holder: str, ttl: float) -> bool:
        """Take a free or expired lease, or extend ``holder``'s own one."""
        return bool(await self._run("acquire", holder=holder, ttl=float(ttl)))

    async def release_lease(self, holder: str) -> None:
        """Drop the lease if ``holder`` has it."""
        await self._run("release", holder=holder)

    async def lease_holder(self) -> str | None:
        """The holder of the unexpired lease, or None."""
        rows = await self._run("holder")
        return str(rows[0][0]) if rows else None

    async def load(self) -> dict[str, float]:
        """Every entry's last run."""
        return {str(entry): float(last) for entry, last in await self._run("load")}

    async def claim(self, holder: str, entry: str, expected: float | None, new: float) -> bool:
        """Lease check and compare-and-set of the last run, in one statement."""
        params: dict[str, Any] = {"holder": holder, "entry": entry, "new": float(new)}
        if expected is None:
            rows = await self._run("claim_new", **params)
        else:
            rows = await self._run("claim", expected=float(expected), **params)
        return rows == [(1,)]

    async def revert(self, holder: str, entry: str, claimed: float, previous: float | None) -> bool:
        """Put ``previous`` back if the last run is still ``claimed`` by ``holder``."""
        params: dict[str, Any] = {"holder": holder, "entry": entry, "claimed": float(claimed)}
        if previous is None:
            rows = await self._run("revert_delete", **params)
        else:
            rows = await self._run("revert", previous=float(previous), **params)
        return rows == [(1,)]
