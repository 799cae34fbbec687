"""AMQP plumbing shared by the RabbitMQ transport and the rpc:// backend.

Broker URLs (Celery's forms): ``amqp://user:pass@host:port/vhost``, ``pyamqp://...`` (same),
``amqps://...`` (TLS; aiormq's ``cafile``/``certfile``/``keyfile``/``no_verify_ssl`` query
parameters pass through). An empty path or ``/`` is vhost ``/``, and so is Celery's
``amqp://guest:guest@localhost//``; any other path is the (percent-decoded) vhost name.

Envelopes map one to one onto AMQP messages: ``content_type``, ``content_encoding``, the
properties ``correlation_id``, ``reply_to``, ``delivery_mode`` (2 when unset) and ``priority``,
the headers as an AMQP table and the body as raw bytes. Headers the broker or this transport
add on the way (dead-lettering's ``x-death`` family and every ``x-celeriac-*`` header) are taken
out again when a message is read, so a consumer sees exactly what the producer sent.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from celeriac.exceptions import ImproperlyConfigured, MissingDependency
from celeriac.protocol.envelope import Envelope

try:
    import aio_pika  # noqa: F401  (the extra; aiormq below is its protocol layer)
    import aiormq
    from aiormq import Channel
    from aiormq import exceptions as amqp_errors
    from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
    from pamqp.commands import Basic
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("RabbitMQ transport: pip install 'celeriac[amqp]'") from exc

__all__ = [
    "PRIVATE_PREFIX",
    "TRANSIENT_ERRORS",
    "AMQPOptions",
    "AbstractChannel",
    "AbstractConnection",
    "Basic",
    "Channel",
    "DeliveredMessage",
    "amqp_errors",
    "ceil_div",
    "connect",
    "connection_url",
    "died_in",
    "envelope_of",
    "private_headers",
    "properties_for",
]

PRIVATE_PREFIX = "x-celeriac-"
_DEATH_HEADERS = frozenset(
    f"x-{when}-death-{what}"
    for when in ("first", "last")
    for what in ("exchange", "queue", "reason")
) | {"x-death"}
_PROPERTIES = ("correlation_id", "reply_to", "delivery_mode", "priority")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    amqp_errors.AMQPConnectionError,
    amqp_errors.ChannelInvalidStateError,
    amqp_errors.ChannelClosed,
    RuntimeError,  # aiormq: "<Connection> closed" when a channel is opened on a dead connection
)


@dataclass(frozen=True, slots=True)
class AMQPOptions:
    """``broker_transport_options`` understood by the AMQP transport (unknown keys ignored)."""

    confirm_publish: bool = True
    prefetch_count: int = 100
    consumer_timeout: float = 1800.0
    lease_timeout: float = 60.0
    release_idle_after: float = 2.0
    heartbeat: int = 60
    connect_timeout: float = 10.0
    max_retries: int = 3
    retry_backoff_max: float = 5.0
    delayed_delivery: bool = True
    dead_letter_queue: str = "celeriac.dead"
    revoked_queue: str = "celeriac.revoked"
    revoke_retention: str = "30D"

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> AMQPOptions:
        """Pick the recognised keys, converted to the field types; validate them."""
        opts = dict(options or {})
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in opts and opts[f.name] is not None:
                kind = type(getattr(cls(), f.name))
                values[f.name] = _convert(kind, opts[f.name], f.name)
        result = cls(**values)
        if min(result.consumer_timeout, result.lease_timeout, result.connect_timeout) <= 0:
            raise ImproperlyConfigured(
                "broker_transport_options: consumer_timeout, lease_timeout and "
                "connect_timeout must be positive"
            )
        if result.prefetch_count < 1:
            raise ImproperlyConfigured("broker_transport_options: prefetch_count must be >= 1")
        return result

    @property
    def renew_after(self) -> float:
        """How long a delivery may stay unacked on a channel before it is moved to a lease."""
        return self.consumer_timeout / 2


def _convert(kind: type, value: Any, name: str) -> Any:
    if kind is bool:
        if isinstance(value, str):
            return value.strip().lower() in {"1", "true", "yes", "on"}
        return bool(value)
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"broker_transport_options[{name!r}]: {exc}") from exc


def connection_url(url: str, *, heartbeat: int, name: str = "celeriac") -> str:
    """Turn a Celery-style broker URL into the URL aiormq expects (vhost made explicit)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in {"amqp", "amqps", "pyamqp", "rpc"}:
        raise ImproperlyConfigured(f"not an AMQP URL: {url!r}")
    tls = scheme == "amqps"
    user = unquote(parts.username) if parts.username is not None else "guest"
    password = unquote(parts.password) if parts.password is not None else "guest"
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (5671 if tls else 5672)
    vhost = "/" if parts.path in ("", "/") else unquote(parts.path[1:])
    query = dict(parse_qsl(parts.query))
    query.setdefault("heartbeat", str(heartbeat))
    query.setdefault("name", name)
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    path = "" if vhost == "/" else quote(vhost, safe="")
    return f"{'amqps' if tls else 'amqp'}://{credentials}@{host}:{port}/{path}?{urlencode(query)}"


async def connect(url: str, options: AMQPOptions, name: str) -> AbstractConnection:
    """Open one AMQP connection (raises ConnectionError subclasses when unreachable)."""
    target = connection_url(url, heartbeat=options.heartbeat, name=name)
    async with asyncio.timeout(options.connect_timeout):
        connection: AbstractConnection = await aiormq.connect(target)
    return connection


def properties_for(
    envelope: Envelope, extra_headers: Mapping[str, Any] | None = None
) -> Basic.Properties:
    """The AMQP properties (headers included) that carry ``envelope``."""
    props = envelope.properties
    headers = dict(envelope.headers)
    if extra_headers:
        headers.update(extra_headers)
    priority = props.get("priority")
    return Basic.Properties(
        content_type=envelope.content_type,
        content_encoding=envelope.content_encoding,
        headers=headers,
        delivery_mode=int(props.get("delivery_mode") or 2),
        priority=int(priority) if isinstance(priority, int) else None,
        correlation_id=_str_or_none(props.get("correlation_id")),
        reply_to=_str_or_none(props.get("reply_to")),
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def envelope_of(message: DeliveredMessage) -> Envelope:
    """The envelope a producer sent, without broker and transport bookkeeping headers."""
    props = message.header.properties
    headers = {
        key: value
        for key, value in (props.headers or {}).items()
        if key not in _DEATH_HEADERS and not key.startswith(PRIVATE_PREFIX)
    }
    properties = {
        name: getattr(props, name) for name in _PROPERTIES if getattr(props, name) is not None
    }
    return Envelope(
        body=bytes(message.body),
        headers=headers,
        content_type=props.content_type or "",
        content_encoding=props.content_encoding or "",
        properties=properties,
    )


def private_headers(message: DeliveredMessage) -> dict[str, Any]:
    """This transport's own headers on a message (``x-celeriac-*``)."""
    headers = message.header.properties.headers or {}
    return {k: v for k, v in headers.items() if k.startswith(PRIVATE_PREFIX)}


def died_in(message: DeliveredMessage, prefix: str) -> bool:
    """Whether the message was dead-lettered out of a queue whose name starts with ``prefix``."""
    deaths: Any = (message.header.properties.headers or {}).get("x-death") or []
    return any(
        isinstance(d, Mapping) and str(d.get("queue", "")).startswith(prefix) for d in deaths
    )


def ceil_div(value: float, unit: float) -> int:
    """``ceil(value / unit)``, ignoring float noise (0.5 / 0.1 is 5 units, not 6)."""
    return max(0, math.ceil(value / unit - 1e-9))
