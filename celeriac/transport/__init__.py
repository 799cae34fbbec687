"""Transports, chosen by the broker URL's scheme (see :mod:`celeriac.engines`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeriac.engines import engine_for, implementation
from celeriac.transport.base import (
    BlockingPublisher,
    DeadLetter,
    Delivery,
    LeaseHolder,
    Outgoing,
    QueueSpec,
    Reclaimer,
    Transport,
)

__all__ = [
    "BlockingPublisher",
    "DeadLetter",
    "Delivery",
    "LeaseHolder",
    "Outgoing",
    "QueueSpec",
    "Reclaimer",
    "Transport",
    "blocking_publisher_from_url",
    "transport_from_url",
]


def transport_from_url(url: str, options: Mapping[str, Any] | None = None) -> Transport:
    """Create the transport for a broker URL (not yet connected)."""
    cls, url = implementation(url, "broker", "broker")
    transport: Transport = cls(url, options=dict(options or {}))
    return transport


def blocking_publisher_from_url(
    url: str, options: Mapping[str, Any] | None = None
) -> BlockingPublisher | None:
    """A publisher that runs in the calling thread, or None where the engine has none."""
    engine = engine_for(url)
    if engine is None or engine.publisher is None:
        return None
    factory, url = implementation(url, "publisher", "broker")
    publisher: BlockingPublisher | None = factory(url, dict(options or {}))
    return publisher
