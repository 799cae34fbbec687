"""Transports, chosen by the broker URL's scheme."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from celeriac.exceptions import ImproperlyConfigured
from celeriac.transport.base import DeadLetter, Delivery, Outgoing, QueueSpec, Transport

__all__ = [
    "DeadLetter",
    "Delivery",
    "Outgoing",
    "QueueSpec",
    "Transport",
    "blocking_publisher_from_url",
    "transport_from_url",
]

# Imported by name on first use so that `import celeriac` needs no optional client library.
_BY_SCHEME = {
    "memory": "celeriac.transport.memory:MemoryTransport",
    "sqlite": "celeriac.transport.sqlite:SQLiteTransport",
    "sqla+sqlite": "celeriac.transport.sqlite:SQLiteTransport",
    "redis": "celeriac.transport.redis:RedisTransport",
    "rediss": "celeriac.transport.redis:RedisTransport",
    "redis+socket": "celeriac.transport.redis:RedisTransport",
    "unix": "celeriac.transport.redis:RedisTransport",
    "sentinel": "celeriac.transport.redis:RedisTransport",
    "amqp": "celeriac.transport.amqp:AMQPTransport",
    "amqps": "celeriac.transport.amqp:AMQPTransport",
    "pyamqp": "celeriac.transport.amqp:AMQPTransport",
}


def load_class(path: str) -> Any:
    """Import ``'module:Class'``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def scheme_of(url: str) -> str:
    """The URL scheme, lowercased (``redis`` for ``redis://...``)."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ImproperlyConfigured(f"not a URL: {url!r} (expected scheme://...)")
    return scheme.lower()


def transport_from_url(url: str, options: Mapping[str, Any] | None = None) -> Transport:
    """Create the transport for a broker URL (not yet connected)."""
    scheme = scheme_of(url)
    path = _BY_SCHEME.get(scheme)
    if path is None:
        known = ", ".join(sorted(_BY_SCHEME))
        raise ImproperlyConfigured(
            f"unknown broker URL scheme {scheme!r} in {url!r} (known: {known})"
        )
    if scheme == "sqla+sqlite":
        url = url[len("sqla+") :]
    transport: Transport = load_class(path)(url, options=dict(options or {}))
    return transport


# Transports that can also publish from the caller's thread (see BlockingPublisher).
_BLOCKING_BY_SCHEME = {
    scheme: "celeriac.transport._redis_blocking:blocking_publisher"
    for scheme in ("redis", "rediss", "redis+socket", "unix")
}


def blocking_publisher_from_url(url: str, options: Mapping[str, Any] | None = None) -> Any:
    """A publisher whose ``publish(messages) -> bool`` runs in the calling thread, or None.

    Only some transports have one; ``publish`` returns False (having sent nothing)
    for messages it does not handle, which then go through the asyncio transport.
    """
    path = _BLOCKING_BY_SCHEME.get(scheme_of(url))
    if path is None:
        return None
    return load_class(path)(url, dict(options or {}))
