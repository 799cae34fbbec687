"""Where beat keeps its state: the ScheduleStore protocol and the store for a URL.

A store holds two things per *namespace* (one per app, ``app.main``):

* the **leader lease**: which beat process may send, until when. ``acquire_lease``
  takes a free or expired lease, or extends the caller's own one; it is one atomic
  step in the store, so two processes never both hold it.
* the **last run** of each entry, as epoch seconds (a float), with the holder that
  claimed it. ``claim`` moves it from
  the value the caller read to the tick it is about to send, atomically and only
  while the caller still holds the lease: a tick is claimed by exactly one caller,
  however many beats race for it. ``revert`` undoes a claim whose message could not
  be published, so the tick is tried again.

Implementations: :mod:`~celeriac.engines.memory.schedules` (one process, tests),
:mod:`~celeriac.engines.sqlite.schedules` (a file, the embedded broker's by default) and
:mod:`~celeriac.engines.redis.schedules` and
:mod:`~celeriac.engines.postgres.schedules` (PostgreSQL).
:func:`store_from_url` picks one by URL scheme;
:func:`store_for_app` applies the ``beat_schedule_store`` setting or derives the store
from the broker (then the result backend) so that every beat of an app meets in the
same place without extra configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from celeriac.engines import engine_for, implementation, offers, roles_for, unprefixed
from celeriac.engines.options import backend_options, broker_options
from celeriac.exceptions import ImproperlyConfigured
from celeriac.masking import mask_url

__all__ = ["ScheduleStore", "store_for_app", "store_from_url", "store_url_for_app"]

logger = logging.getLogger("celeriac.beat")

# Celery settings of its database backend that the SQL store reads too.
_SQL_SETTINGS = ("database_engine_options", "database_table_schemas")
DEFAULT_URL = "sqlite://"


@runtime_checkable
class ScheduleStore(Protocol):
    """Lease and last-run state shared by every beat of one namespace."""

    url: str
    namespace: str

    async def connect(self) -> None:
        """Open the connection and create what the store needs; idempotent."""
        ...

    async def close(self) -> None:
        """Close the connection."""
        ...

    async def acquire_lease(self, holder: str, ttl: float) -> bool:
        """Take the lease (free, expired or already ``holder``'s) for ``ttl`` s; True if held."""
        ...

    async def release_lease(self, holder: str) -> None:
        """Give the lease up if ``holder`` has it, so another beat takes over at once."""
        ...

    async def lease_holder(self) -> str | None:
        """The holder of the unexpired lease, or None."""
        ...

    async def load(self) -> dict[str, float]:
        """Every entry's last run (epoch seconds), by entry name."""
        ...

    async def claim(self, holder: str, entry: str, expected: float | None, new: float) -> bool:
        """Set ``entry``'s last run from ``expected`` (None: no record) to ``new``, atomically.

        Only while ``holder`` holds an unexpired lease; False (nothing written) otherwise
        or when the stored value is not ``expected``.
        """
        ...

    async def revert(self, holder: str, entry: str, claimed: float, previous: float | None) -> bool:
        """Put ``previous`` back if the last run is still ``claimed`` *by* ``holder``.

        True if it was. (Another beat may have claimed the same tick value since; its
        claim is not undone.)
        """
        ...


def store_from_url(
    url: str, *, namespace: str = "default", options: Mapping[str, Any] | None = None
) -> ScheduleStore:
    """Create (not connect) the store for ``url``; a bare path is an SQLite file."""
    if "://" not in url:
        url = f"sqlite:///{url}"  # Celery's `-s celerybeat-schedule`: a file name
    if not offers(url, "schedules"):
        known = ", ".join(roles_for("schedules"))
        raise ImproperlyConfigured(
            f"no beat schedule store for {mask_url(url)!r} (known schemes: {known}, or a file path)"
        )
    cls, url = implementation(url, "schedules", "beat schedule store")
    store: ScheduleStore = cls(url, namespace=namespace, options=dict(options or {}))
    return store


def _engine_name(url: str | None) -> str | None:
    engine = engine_for(url) if url and "://" in url else None
    return engine.name if engine is not None else None


def _is_sql(url: str) -> bool:
    return _engine_name(url) == "postgres"


def _is_server(url: str | None) -> bool:
    """A result backend on a server every beat can reach (a local file or memory is not)."""
    return _engine_name(url) in ("redis", "postgres")


def _with_sql_settings(app: Any, url: str, options: dict[str, Any]) -> dict[str, Any]:
    """For a PostgreSQL store, add Celery's ``database_*`` settings to ``options``."""
    if _is_sql(url):
        for name in _SQL_SETTINGS:
            value = app.conf.get(name)
            if value:
                options.setdefault(name, value)
    return options


def store_url_for_app(app: Any, override: str | None = None) -> tuple[str, dict[str, Any]]:
    """The store URL and its options: ``override``, ``beat_schedule_store``, else derived.

    Derived: the broker when it can hold state (SQLite, Redis, memory), else the
    result backend when it can (Redis, or PostgreSQL: ``db+postgresql://...`` gives the
    store ``postgresql://...``), else the default SQLite file in the current directory
    (beats on other machines would not see it: configure ``beat_schedule_store``).
    The options are the broker's (or the result backend's), built as the transport's are
    (:mod:`celeriac.engines.options`): the same TLS, timeouts and reconnect policy.
    A PostgreSQL store also gets Celery's ``database_engine_options`` and
    ``database_table_schemas`` settings.
    """
    conf = app.conf
    broker = app.broker_url
    explicit = override or conf.get("beat_schedule_store")
    if explicit:
        url = str(explicit)
        options = broker_options(conf, broker) if url == broker else {}
        return url, _with_sql_settings(app, url, options)
    if offers(broker, "schedules"):
        return broker, broker_options(conf, broker)
    backend = app.result_backend_url
    if _is_server(backend):
        options = backend_options(conf, str(backend), broker)
        return unprefixed(str(backend)), _with_sql_settings(app, str(backend), options)
    logger.warning(
        "beat: neither the broker nor the result backend can hold the schedule; using %s"
        " (set beat_schedule_store so that beats on other hosts share it)",
        DEFAULT_URL,
    )
    return DEFAULT_URL, {}


def store_for_app(app: Any, override: str | None = None) -> ScheduleStore:
    """The (unconnected) store every beat of ``app`` shares, namespaced by ``app.main``."""
    url, options = store_url_for_app(app, override)
    return store_from_url(url, namespace=app.main or "default", options=options)
