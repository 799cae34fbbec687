"""The one small interface every engine implements for events, and how events are framed.

An :class:`EventBus` publishes batches of event messages on the event exchange and opens
:class:`Subscription`\\ s that receive every message whose routing key matches a binding
(``#`` for all, ``worker.#`` for worker events; matched as AMQP topics,
:func:`celeriac.transport.exchanges.topic_matches`). Delivery is fire and forget, as in
Celery: nobody listening means nobody receives, and a receiver that falls behind loses
the oldest events (``event_queue_ttl``).

Each engine has its own module ``celeriac/engines/<name>/events.py`` with a class named
in the engines table (role ``events``), built as ``cls(url, options, channel)``.

Framing (SPEC §6.1): the body is the event object (or a list of events for a
``<group>.multi`` batch) serialized with ``event_serializer``; the header ``hostname``
names the sender; ``delivery_mode`` is 1 (transient). :func:`decode_events` accepts a
single object or a list and gives back only the mappings that have a string ``type``;
anything else is reported as :class:`BadEvent` for the caller to log once and drop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

try:
    import orjson
except ImportError:  # pragma: no cover - exercised only without the speedups extra
    orjson = None  # type: ignore[assignment]

from celeriac.engines import implementation
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.serializers import (
    content_type_of,
    get_serializer,
    serializer_for_content_type,
)

__all__ = [
    "BadEvent",
    "EventBus",
    "EventChannel",
    "Published",
    "Subscription",
    "decode_events",
    "encode_events",
    "event_bus",
]


@dataclass(frozen=True, slots=True)
class EventChannel:
    """Where events travel and how receivers' queues are declared (Celery's ``event_*``)."""

    exchange: str = "celeryev"
    queue_prefix: str = "celeryev"
    queue_ttl: float | None = 5.0
    queue_expires: float | None = 60.0
    queue_exclusive: bool = True
    queue_durable: bool = False
    serializer: str = "json"

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> EventChannel:
        """The channel the settings ``event_exchange``, ``event_queue_*`` ... describe."""
        if conf.get("event_queue_exclusive", True) and conf.get("event_queue_durable"):
            raise ImproperlyConfigured(
                "event_queue_exclusive and event_queue_durable are both on: a queue cannot "
                "be both exclusive and durable, choose one"
            )
        return cls(
            exchange=str(conf.get("event_exchange") or "celeryev"),
            queue_prefix=str(conf.get("event_queue_prefix") or "celeryev"),
            queue_ttl=_seconds(conf.get("event_queue_ttl", 5.0)),
            queue_expires=_seconds(conf.get("event_queue_expires", 60.0)),
            queue_exclusive=bool(conf.get("event_queue_exclusive", True)),
            queue_durable=bool(conf.get("event_queue_durable", False)),
            serializer=str(conf.get("event_serializer") or "json"),
        )


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Published:
    """One event message: its routing key and its envelope."""

    routing_key: str
    envelope: Envelope


class BadEvent(ValueError):
    """A message on the event exchange that is not an event (or a list of events)."""


class Subscription(Protocol):
    """Receives the event messages of one binding, from when it was opened."""

    async def receive(self, timeout: float) -> list[Envelope]:
        """The messages that arrived, waiting up to ``timeout`` s for one; [] on timeout."""

    async def close(self) -> None:
        """Stop receiving and release the receiver's queue."""


class EventBus(Protocol):
    """Publishes and subscribes on the event exchange of one broker."""

    async def publish(self, messages: Sequence[Published]) -> None:
        """Send ``messages`` (in one round trip where the engine allows it)."""

    async def subscribe(self, binding: str = "#") -> Subscription:
        """Start receiving messages whose routing key matches ``binding`` (AMQP topic)."""

    async def close(self) -> None:
        """Release connections."""


def event_bus(url: str, options: Mapping[str, Any], channel: EventChannel) -> EventBus:
    """The event bus of the broker at ``url`` (connects lazily)."""
    cls, url = implementation(url, "events", "broker")
    bus: EventBus = cls(url, dict(options), channel)
    return bus


def encode_events(
    events: dict[str, Any] | list[dict[str, Any]], hostname: str, serializer: str = "json"
) -> Envelope:
    """The envelope of one event, or of a batch of events of one group."""
    body = _orjson_dumps(events) if serializer == "json" else None
    return Envelope(
        body=body if body is not None else get_serializer(serializer).dumps(events),
        headers={"hostname": hostname},
        content_type=content_type_of(serializer),
        content_encoding="utf-8" if serializer == "json" else "binary",
        properties={"delivery_mode": 1},
    )


def _orjson_dumps(events: Any) -> bytes | None:
    """orjson's JSON of events (floats included: any valid JSON will do), when installed."""
    if orjson is None:
        return None
    try:
        return orjson.dumps(events)
    except (TypeError, orjson.JSONEncodeError):
        return None  # the serializer's encoder reports or handles it


def decode_events(envelope: Envelope, accept: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """The events in ``envelope``; raise :class:`BadEvent` saying why there are none.

    ``accept`` holds the content types a receiver takes (JSON only when None).
    """
    content_type = envelope.content_type
    allowed = accept if accept is not None else frozenset({"application/json"})
    if content_type not in allowed:
        raise BadEvent(f"content type {content_type!r} is not accepted")
    try:
        body = serializer_for_content_type(content_type).loads(envelope.body)
    except Exception as exc:
        raise BadEvent(f"body does not decode as {content_type}: {exc}") from exc
    items = body if isinstance(body, list) else [body]
    events = [e for e in items if isinstance(e, dict) and isinstance(e.get("type"), str)]
    if not events:
        raise BadEvent(f"no event in the message (a {type(body).__name__})")
    return events
