"""Result backends, chosen by the result_backend URL's scheme."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeriac.backends.base import BlockingWaiter, ChordPart, Meta, ResultBackend
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.serializers import Serializer
from celeriac.transport import load_class, scheme_of

__all__ = [
    "BlockingWaiter",
    "ChordPart",
    "Meta",
    "ResultBackend",
    "backend_from_url",
    "blocking_waiter_from_url",
    "can_hold_results",
]

_BY_SCHEME = {
    "memory": "celeriac.backends.memory:MemoryBackend",
    "cache+memory": "celeriac.backends.memory:MemoryBackend",
    "sqlite": "celeriac.backends.sqlite:SQLiteBackend",
    "db+sqlite": "celeriac.backends.sqlite:SQLiteBackend",
    "redis": "celeriac.backends.redis:RedisBackend",
    "rediss": "celeriac.backends.redis:RedisBackend",
    "redis+socket": "celeriac.backends.redis:RedisBackend",
    "unix": "celeriac.backends.redis:RedisBackend",
    "sentinel": "celeriac.backends.redis:RedisBackend",
    "rpc": "celeriac.backends.rpc:RPCBackend",
    **{
        prefix + scheme: "celeriac.backends.sql:SQLBackend"
        for scheme in ("postgresql", "postgres", "postgresql+psycopg")
        for prefix in ("db+", "")
    },
}


def can_hold_results(broker_url: str) -> bool:
    """Whether the broker's own store can also keep results (the celeriac default)."""
    return scheme_of(broker_url) in {"memory", "sqlite", "redis", "rediss", "redis+socket", "unix"}


def backend_from_url(
    url: str,
    *,
    serializer: Serializer,
    expires: float | None,
    options: Mapping[str, Any] | None = None,
) -> ResultBackend:
    """Create the backend for a result_backend URL (not yet connected)."""
    scheme = scheme_of(url)
    path = _BY_SCHEME.get(scheme)
    if path is None:
        known = ", ".join(sorted(_BY_SCHEME))
        raise ImproperlyConfigured(
            f"unknown result backend scheme {scheme!r} in {url!r} (known: {known})"
        )
    for prefix in ("db+", "cache+"):
        if scheme.startswith(prefix):
            url = url[len(prefix) :]
    backend: ResultBackend = load_class(path)(
        url, serializer=serializer, expires=expires, options=dict(options or {})
    )
    return backend


# Backends that can also wait from the caller's thread (see BlockingWaiter).
_BLOCKING_BY_SCHEME = {
    scheme: "celeriac.backends._redis_blocking_wait:blocking_waiter"
    for scheme in ("redis", "rediss", "redis+socket", "unix")
}


def blocking_waiter_from_url(
    url: str, *, serializer: Serializer, options: Mapping[str, Any] | None = None
) -> BlockingWaiter | None:
    """A waiter for the sync API that runs in the calling thread, or None.

    Only some backends have one, and not for every location (see each implementation).
    """
    path = _BLOCKING_BY_SCHEME.get(scheme_of(url))
    if path is None:
        return None
    waiter: BlockingWaiter | None = load_class(path)(
        url, serializer=serializer, options=dict(options or {})
    )
    return waiter
