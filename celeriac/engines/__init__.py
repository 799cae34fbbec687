"""Engines: one folder per kind of server, and the one table of URL schemes that picks them.

Each engine folder holds everything that engine does: its broker (a
:class:`~celeriac.transport.base.Transport`), its result store (a
:class:`~celeriac.backends.base.ResultBackend`), its beat store (a
:class:`~celeriac.beat.stores.ScheduleStore`), and the calling-thread helpers of the
sync API where it has them. The classes are imported by name on first use, so
``import celeriac`` needs no optional client library.

Celery's prefixes ``db+`` (result backends), ``sqla+`` (beat and the SQLAlchemy broker)
and ``cache+`` (``cache+memory://``) name the same engine as the URL without them.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Any, Literal

from celeriac.exceptions import ImproperlyConfigured
from celeriac.masking import mask_url

__all__ = [
    "Engine",
    "Role",
    "engine_for",
    "engine_for_name",
    "implementation",
    "load_class",
    "offers",
    "preload_engines",
    "roles_for",
    "scheme_of",
    "unprefixed",
]

Role = Literal["broker", "results", "schedules", "publisher", "waiter", "events", "subscriber"]
"""What an engine can be used as: ``publisher`` and ``waiter`` are the sync API's
calling-thread fast paths (``BlockingPublisher`` in :mod:`celeriac.transport.base`,
``BlockingWaiter`` in :mod:`celeriac.backends.base`); each may still decline a URL
(Sentinel, TLS) by returning None. ``events`` is the broker's
:class:`~celeriac.events.bus.EventBus`. ``subscriber`` receives broadcasts where a queue
bound to a fanout exchange would not (``Subscription`` in :mod:`celeriac.control.fanout`,
which uses a queue of the broker where an engine names none)."""

_PREFIXES = ("db+", "sqla+", "cache+")


@dataclass(frozen=True)
class Engine:
    """An engine's implementation of each role, as ``'module:attribute'`` (None: not offered)."""

    name: str
    broker: str | None = None
    results: str | None = None
    schedules: str | None = None
    publisher: str | None = None
    waiter: str | None = None
    events: str | None = None
    subscriber: str | None = None

    def path(self, role: Role) -> str | None:
        """The ``'module:attribute'`` of ``role``, or None."""
        value: str | None = getattr(self, role)
        return value


_MEMORY = Engine(
    "memory",
    broker="celeriac.engines.memory.broker:MemoryTransport",
    results="celeriac.engines.memory.results:MemoryBackend",
    schedules="celeriac.engines.memory.schedules:MemoryStore",
    events="celeriac.engines.memory.events:MemoryEventBus",
)
_SQLITE = Engine(
    "sqlite",
    broker="celeriac.engines.sqlite.broker:SQLiteTransport",
    results="celeriac.engines.sqlite.results:SQLiteBackend",
    schedules="celeriac.engines.sqlite.schedules:SQLiteStore",
    events="celeriac.engines.sqlite.events:SQLiteEventBus",
)
_REDIS = Engine(
    "redis",
    broker="celeriac.engines.redis.broker:RedisTransport",
    results="celeriac.engines.redis.results:RedisBackend",
    schedules="celeriac.engines.redis.schedules:RedisStore",
    publisher="celeriac.engines.redis.publishing:blocking_publisher",
    waiter="celeriac.engines.redis.blocking:blocking_waiter",
    events="celeriac.engines.redis.events:RedisEventBus",
    subscriber="celeriac.engines.redis.control:RedisSubscription",
)
_AMQP = Engine(
    "amqp",
    broker="celeriac.engines.amqp.broker:AMQPTransport",
    publisher="celeriac.engines.amqp.blocking:blocking_publisher",
    events="celeriac.engines.amqp.events:AMQPEventBus",
)
_RPC = Engine("amqp", results="celeriac.engines.amqp.results:RPCBackend")
_POSTGRES = Engine(
    "postgres",
    results="celeriac.engines.postgres.results:SQLBackend",
    schedules="celeriac.engines.postgres.schedules:SQLStore",
)

_DJANGO = Engine("django", results="celeriac.engines.django.results:DjangoBackend")

_BY_NAME: dict[str, Engine] = {"django-db": _DJANGO}
"""Celery's result backend names that are not URLs, and their engine."""

_BY_SCHEME: dict[str, Engine] = {
    "memory": _MEMORY,
    "sqlite": _SQLITE,
    "redis": _REDIS,
    "rediss": _REDIS,
    "redis+socket": _REDIS,
    "unix": _REDIS,
    "sentinel": _REDIS,
    "redis+cluster": _REDIS,
    "rediss+cluster": _REDIS,
    "amqp": _AMQP,
    "amqps": _AMQP,
    "pyamqp": _AMQP,
    "rpc": _RPC,
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
    "postgresql+psycopg": _POSTGRES,
}


def scheme_of(url: str) -> str:
    """The URL scheme, lowercased (``redis`` for ``redis://...``)."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ImproperlyConfigured(f"not a URL: {mask_url(url)!r} (expected scheme://...)")
    return scheme.lower()


def unprefixed(url: str) -> str:
    """``url`` without Celery's ``db+``/``sqla+``/``cache+`` prefix."""
    for prefix in _PREFIXES:
        if url[: len(prefix)].lower() == prefix:
            return url[len(prefix) :]
    return url


def engine_for_name(url: str) -> Engine | None:
    """The engine of one of Celery's result backend names that are not URLs, or None."""
    return _BY_NAME.get(url.strip().lower())


def engine_for(url: str) -> Engine | None:
    """The engine a URL (or one of Celery's names such as ``django-db``) names, or None."""
    named = engine_for_name(url)
    if named is not None:
        return named
    return _BY_SCHEME.get(scheme_of(unprefixed(url)))


def roles_for(role: Role) -> list[str]:
    """Every scheme usable for ``role``, sorted (for error messages)."""
    schemes = {s for s, engine in _BY_SCHEME.items() if engine.path(role)}
    prefixed = {f"{p}{s}" for s in schemes for p in _PREFIXES if role in ("results", "schedules")}
    return sorted(schemes | prefixed)


def load_class(path: str) -> Any:
    """Import ``'module:attribute'``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def implementation(url: str, role: Role, what: str) -> tuple[Any, str]:
    """The class (or factory) of ``role`` for ``url``, and the URL without Celery's prefix.

    ``what`` names the setting in the error for a scheme that has no such role.
    """
    engine = engine_for(url)
    path = engine.path(role) if engine is not None else None
    if path is None:
        known = ", ".join(roles_for(role))
        raise ImproperlyConfigured(
            f"unknown {what} URL scheme {scheme_of(url)!r} in {mask_url(url)!r} (known: {known})"
        )
    return load_class(path), unprefixed(url)


def preload_engines(app: Any) -> None:
    """Import the modules ``app``'s broker and result engines live in, which are otherwise
    imported when first used: before forking workers, so that each (and each replacement)
    starts in milliseconds instead of importing them again (about 0.6 s for redis-py's
    asyncio client), and before changing user, who may not read the code's directory."""
    roles: list[tuple[str | None, tuple[Role, ...]]] = [
        (app.broker_url, ("broker", "events")),
        (app.result_backend_url, ("results", "waiter")),
    ]
    for url, parts in roles:
        for role in parts:
            # A bad URL or a role the engine lacks is the worker's to report.
            with contextlib.suppress(Exception):
                if url and engine_for(url) is not None:
                    implementation(url, role, role)


def offers(url: str | None, role: Role) -> bool:
    """Whether ``url`` names an engine that offers ``role`` (False for no URL or a bad one)."""
    if not url or ("://" not in url and url.strip().lower() not in _BY_NAME):
        return False
    engine = engine_for(url)
    return engine is not None and engine.path(role) is not None
