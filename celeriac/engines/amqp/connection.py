"""The AMQP connection: URLs, options, the message mapping, and the session with its retries.

Shared by the RabbitMQ transport (:mod:`~celeriac.engines.amqp.broker`) and the rpc:// backend
(:mod:`~celeriac.engines.amqp.results`).

Broker URLs (Celery's forms): ``amqp://user:pass@host:port/vhost``, ``pyamqp://...`` (same),
``amqps://...`` (TLS; aiormq's ``cafile``/``certfile``/``keyfile``/``no_verify_ssl`` query
parameters pass through), or an ``amqp://`` URL with the ``ssl`` option (Celery's
``broker_use_ssl``: True, or a mapping of ``ca_certs``/``cafile``, ``certfile``, ``keyfile``,
``cert_reqs``, ``check_hostname`` and ``server_hostname``). An empty path or ``/`` is vhost
``/``, and so is Celery's ``amqp://guest:guest@localhost//``; any other path is the
(percent-decoded) vhost name.

Envelopes map one to one onto AMQP messages: ``content_type``, ``content_encoding``, the
properties ``correlation_id``, ``reply_to``, ``delivery_mode`` (2 when unset) and ``priority``,
the headers as an AMQP table and the body as raw bytes. Headers the broker or this transport
add on the way (dead-lettering's ``x-death`` family and every ``x-celeriac-*`` header) are taken
out again when a message is read, so a consumer sees exactly what the producer sent.

:class:`Session` holds one connection, reopened on demand after it is lost (the owner is told,
so it can drop what lived on the old one), and a few channels by role: ``publish`` (publisher
confirms), ``admin`` (declarations and passive probes, whose NOT_FOUND closes the channel, so it
is reopened on the next use), and whatever roles its owner asks for. :meth:`Session.retrying`
runs an operation again after connection errors, as the options' :class:`RetryPolicy` says
(first wait 0.1 s, doubling up to ``retry_backoff_max``, ``max_retries`` times).

:class:`Topology` declares queues, exchanges and bindings as Celery does and remembers what
exists, so publishing to a known queue costs no round trip. An exchange that already exists is
used as it is (whoever declared it, with whatever durability); a missing one is created durable,
except Celery's transient ``celery.pidbox`` and ``reply.celery.pidbox``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from celeriac.engines.amqp.native_delay import NativeDelay, uses_native_delay
from celeriac.exceptions import ImproperlyConfigured, MissingDependency
from celeriac.masking import mask_url
from celeriac.protocol.envelope import Envelope
from celeriac.reconnect import unreachable
from celeriac.retry import RetryPolicy
from celeriac.transport.base import QueueSpec

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
    "PERMANENT_ERRORS",
    "PRIVATE_PREFIX",
    "TRANSIENT_ERRORS",
    "AMQPOptions",
    "AbstractChannel",
    "AbstractConnection",
    "Basic",
    "Channel",
    "DeliveredMessage",
    "Endpoint",
    "Session",
    "Topology",
    "FAILOVER_STRATEGIES",
    "Failover",
    "amqp_errors",
    "broker_urls",
    "connect",
    "connection_url",
    "died_in",
    "envelope_of",
    "private_headers",
    "properties_for",
    "split_arguments",
    "tls_context",
]

logger = logging.getLogger("celeriac.engines.amqp.broker")
T = TypeVar("T")

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

PERMANENT_ERRORS = (
    amqp_errors.ChannelNotFoundEntity,
    amqp_errors.ChannelPreconditionFailed,
    amqp_errors.ChannelAccessRefused,
    amqp_errors.ChannelLockedResource,
)
_TRANSIENT_EXCHANGES = frozenset({"celery.pidbox", "reply.celery.pidbox"})  # SPEC §4.1
_QUEUE_ARGUMENTS = frozenset(
    "x-" + name
    for name in (
        "max-priority queue-type message-ttl expires max-length max-length-bytes overflow "
        "dead-letter-exchange dead-letter-routing-key dead-letter-strategy single-active-consumer "
        "queue-mode queue-version queue-master-locator queue-leader-locator delivery-limit "
        "quorum-initial-group-size initial-cluster-size max-age stream-max-segment-size-bytes "
        "consumer-timeout"
    ).split()
)


FAILOVER_STRATEGIES = ("round-robin", "shuffle")

_UNLIMITED = 2**31 - 1
"""A retry count meaning "no limit" (the options' None)."""


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
    """Retries of a failed operation; None in the options: no limit."""
    retry_backoff_max: float = 5.0
    retry_deadline: float = 0.0
    """Seconds from an operation's first failure after which it is not retried (0: none)."""
    connect_max_retries: int = -1
    """Retries of the first connection (``broker_connection_retry_on_startup``); -1: as
    ``max_retries``; None in the options: no limit."""
    connect_retry_backoff_max: float = 2.0
    dead_letter_queue: str = "celeriac.dead"
    revoked_queue: str = "celeriac.revoked"
    revoke_retention: str = "30D"
    ssl: Any = None
    """TLS: True or a mapping of options (``broker_use_ssl``); kept as given."""
    native_delayed_delivery_queue_type: str = "quorum"
    """The queue type of Celery's native delayed delivery levels, declared by workers
    consuming quorum queues on topic or fanout exchanges (:mod:`.native_delay`)."""
    failover_strategy: str = "round-robin"
    """How the next URL of a ``;``-separated list is chosen after a connection fails
    (``broker_failover_strategy``: ``round-robin`` or ``shuffle``)."""

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> AMQPOptions:
        """Pick the recognised keys, converted to the field types; validate them."""
        opts = dict(options or {})
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "ssl":
                values["ssl"] = opts.get("ssl") or None
            elif f.name in ("max_retries", "connect_max_retries") and f.name in opts:
                value = opts[f.name]  # None: retry for ever
                values[f.name] = _UNLIMITED if value is None else _convert(int, value, f.name)
            elif f.name in opts and opts[f.name] is not None:
                kind = type(getattr(cls(), f.name))
                values[f.name] = _convert(kind, opts[f.name], f.name)
        result = cls(**values)
        if min(result.consumer_timeout, result.lease_timeout, result.connect_timeout) <= 0:
            raise ImproperlyConfigured(
                "broker_transport_options: consumer_timeout, lease_timeout and "
                "connect_timeout must be positive"
            )
        if result.failover_strategy not in FAILOVER_STRATEGIES:
            raise ImproperlyConfigured(
                f"broker_failover_strategy must be one of {', '.join(FAILOVER_STRATEGIES)}, "
                f"not {result.failover_strategy!r}"
            )
        if result.prefetch_count < 1:
            raise ImproperlyConfigured("broker_transport_options: prefetch_count must be >= 1")
        return result

    @property
    def retry(self) -> RetryPolicy:
        """How operations are retried: from 0.1 s, doubling up to ``retry_backoff_max``."""
        return RetryPolicy(
            first=0.1,
            factor=2.0,
            max_delay=self.retry_backoff_max,
            max_retries=None if self.max_retries >= _UNLIMITED else self.max_retries,
            deadline=self.retry_deadline or None,
        )

    @property
    def connect_retry(self) -> RetryPolicy:
        """How the first connection is retried: as :attr:`retry`, with its own count and
        no time limit."""
        count = self.max_retries if self.connect_max_retries == -1 else self.connect_max_retries
        return RetryPolicy(
            first=0.1,
            factor=2.0,
            max_delay=self.connect_retry_backoff_max,
            max_retries=None if count >= _UNLIMITED else count,
        )

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


def broker_urls(url: str) -> list[str]:
    """The URLs of a Celery failover list (``amqp://h1;amqp://h2``), in order."""
    urls = [part.strip() for part in url.split(";") if part.strip()]
    if not urls:
        raise ImproperlyConfigured(f"no broker URL in {mask_url(url)!r}")
    return urls


class Failover:
    """The URLs of a broker list and which one to try next (``broker_failover_strategy``).

    ``round-robin`` starts at the first URL and moves on to the next after a failure;
    ``shuffle`` tries them in a random order, reshuffled after each full turn. A URL that
    cannot be reached is logged once (then again only after it was reached in between).
    """

    def __init__(self, url: str, strategy: str) -> None:
        self.urls = broker_urls(url)
        self.strategy = strategy
        self._order = list(self.urls)
        if strategy == "shuffle":
            random.shuffle(self._order)
        self._logged: set[str] = set()
        self._turn = 0
        """URLs that failed since the turn began."""

    def candidates(self) -> list[str]:
        """Every URL, the current one first."""
        return list(self._order)

    def failed(self, url: str, exc: BaseException) -> None:
        """``url`` could not be reached: log it (once) and put it last."""
        if url not in self._logged and len(self.urls) > 1:
            self._logged.add(url)
            logger.warning(
                "broker %s unreachable (%s): trying the next of %d URLs",
                mask_url(url), exc, len(self.urls),
            )  # fmt: skip
        if self._order and self._order[0] == url:
            self._order.append(self._order.pop(0))
            self._turn += 1
            if self._turn >= len(self._order):  # every URL was tried once: a new turn
                self._turn = 0
                if self.strategy == "shuffle":
                    random.shuffle(self._order)

    def connected(self, url: str) -> None:
        """``url`` answered: it stays first; log it again if it fails later."""
        self._turn = 0
        if url in self._logged:
            logger.info("broker %s reachable again", mask_url(url))
            self._logged.discard(url)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a Celery-style AMQP URL points: address, credentials, vhost, TLS, query."""

    host: str
    port: int
    user: str
    password: str
    vhost: str
    tls: bool
    query: dict[str, str]

    @classmethod
    def parse(cls, url: str, *, tls: bool = False) -> Endpoint:
        """Parse ``url`` (see the module docstring); ``tls`` forces TLS on ``amqp://``."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in {"amqp", "amqps", "pyamqp", "rpc"}:
            raise ImproperlyConfigured(f"not an AMQP URL: {mask_url(url)!r}")
        tls = tls or scheme == "amqps"
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or (5671 if tls else 5672),
            user=unquote(parts.username) if parts.username is not None else "guest",
            password=unquote(parts.password) if parts.password is not None else "guest",
            vhost="/" if parts.path in ("", "/") else unquote(parts.path[1:]),
            tls=tls,
            query=dict(parse_qsl(parts.query)),
        )


def connection_url(url: str, *, heartbeat: int, name: str = "celeriac", tls: bool = False) -> str:
    """Turn a Celery-style broker URL into the URL aiormq expects (vhost made explicit);
    ``tls`` makes an ``amqp://`` URL an ``amqps://`` one."""
    ep = Endpoint.parse(url, tls=tls)
    host = f"[{ep.host}]" if ":" in ep.host else ep.host
    query = dict(ep.query)
    query.setdefault("heartbeat", str(heartbeat))
    query.setdefault("name", name)
    credentials = f"{quote(ep.user, safe='')}:{quote(ep.password, safe='')}"
    path = "" if ep.vhost == "/" else quote(ep.vhost, safe="")
    scheme = "amqps" if ep.tls else "amqp"
    return f"{scheme}://{credentials}@{host}:{ep.port}/{path}?{urlencode(query)}"


async def connect(url: str, options: AMQPOptions, name: str) -> AbstractConnection:
    """Open one AMQP connection (raises ConnectionError subclasses when unreachable)."""
    tls = options.ssl
    target = connection_url(url, heartbeat=options.heartbeat, name=name, tls=bool(tls))
    extra: dict[str, Any] = {}
    if isinstance(tls, Mapping):
        extra["context"] = tls_context(tls)
        if tls.get("server_hostname"):
            extra["server_hostname"] = str(tls["server_hostname"])
    try:
        async with asyncio.timeout(options.connect_timeout):
            connection: AbstractConnection = await aiormq.connect(target, **extra)
    except amqp_errors.InvalidFrameError as exc:
        if "Connection.OpenOk" not in str(exc):
            raise
        # The server closes instead of opening: the vhost is missing or this user may not use it.
        raise ImproperlyConfigured(_vhost_refused(url)) from None
    return connection


def _vhost_refused(url: str) -> str:
    """One line naming the vhost the server would not open, and how to fix it."""
    split = urlsplit(url)
    vhost = unquote(split.path[1:]) if len(split.path) > 1 else "/"
    where = f"{split.hostname or 'localhost'}:{split.port or 5672}"
    return (
        f"RabbitMQ at {where} refused to open vhost {vhost!r} for user "
        f"{unquote(split.username or 'guest')!r}: it does not exist or the user has no "
        f"permissions on it (rabbitmqctl add_vhost {vhost}; rabbitmqctl set_permissions "
        f"-p {vhost} <user> '.*' '.*' '.*')"
    )


_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def _verify_mode(value: Any) -> ssl.VerifyMode:
    """``cert_reqs`` as py-amqp takes it: an ``ssl.CERT_*`` constant or its name."""
    if isinstance(value, int):
        return ssl.VerifyMode(value)
    text = str(value).strip().lower().removeprefix("cert_")
    if text not in _CERT_REQS:
        raise ImproperlyConfigured(f"broker_use_ssl: invalid cert_reqs {value!r}")
    return _CERT_REQS[text]


def tls_context(options: Mapping[str, Any]) -> ssl.SSLContext:
    """The TLS context of ``broker_use_ssl``'s mapping (py-amqp's key names)."""
    context = ssl.create_default_context(
        cafile=options.get("ca_certs") or options.get("cafile"), capath=options.get("capath")
    )
    if options.get("certfile"):
        context.load_cert_chain(options["certfile"], options.get("keyfile"))
    if "cert_reqs" in options:
        mode = _verify_mode(options["cert_reqs"])
        if mode == ssl.CERT_NONE:
            context.check_hostname = False
        context.verify_mode = mode
    if "check_hostname" in options:
        context.check_hostname = bool(options["check_hostname"])
    return context


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


class Session:
    """One connection, reopened on demand, and its channels by role."""

    def __init__(
        self,
        url: str,
        options: AMQPOptions,
        name: str,
        on_connect: Callable[[], Awaitable[None]],
    ) -> None:
        self.failover = Failover(url, options.failover_strategy)
        self.url = self.failover.urls[0]
        """The URL connected to (or tried first)."""
        self.options = options
        self.name = name
        self.closed = False
        self.retry = options.retry
        self._on_connect = on_connect
        self._conn: AbstractConnection | None = None
        self._channels: dict[str, Channel] = {}
        self._lock = asyncio.Lock()

    async def connection(self) -> AbstractConnection:
        """The live connection; connects (and tells the owner) when there is none."""
        current = self._conn
        if current is not None and not current.is_closed:
            return current
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed:
                return self._conn
            if self.closed:
                raise RuntimeError(f"AMQP session for {mask_url(self.url)} is closed")
            self._channels.clear()
            self._conn = await self._connect_any()
            await self._on_connect()
            return self._conn

    async def _connect_any(self) -> AbstractConnection:
        """Connect to the first URL of the failover list that answers (the error of the
        last one when none does; the retry policy then tries the list again)."""
        error: BaseException | None = None
        for url in self.failover.candidates():
            try:
                connection = await connect(url, self.options, self.name)
            except TRANSIENT_ERRORS as exc:
                self.failover.failed(url, exc)
                error = exc
                continue
            self.failover.connected(url)
            self.url = url
            return connection
        assert error is not None
        raise error

    async def channel(self, role: str) -> Channel:
        """The live channel for ``role`` (``publish`` has confirms when configured)."""
        channel = self._channels.get(role)
        if channel is None or channel.is_closed:
            connection = await self.connection()
            confirms = role == "publish" and self.options.confirm_publish
            opened = await connection.channel(publisher_confirms=confirms)
            assert isinstance(opened, Channel)
            channel = self._channels[role] = opened
        return channel

    async def admin(self) -> Channel:
        """The channel for declarations and probes."""
        return await self.channel("admin")

    async def retrying(
        self, call: Callable[[], Awaitable[T]], policy: RetryPolicy | None = None
    ) -> T:
        """Run ``call``, again after connection errors as ``policy`` (default: the
        options') says; OperationalError (password masked) when out of tries."""
        return await (policy or self.retry).call(
            call,
            retry_on=TRANSIENT_ERRORS,
            fatal=PERMANENT_ERRORS,
            what="RabbitMQ operation",
            give_up=self._unreachable,
            stop=self._is_closed,
        )

    def _unreachable(self, exc: BaseException, attempts: int) -> ConnectionError:
        return unreachable(self.url, "RabbitMQ operation", exc, attempts)

    def _is_closed(self) -> bool:
        return self.closed

    async def close(self) -> None:
        """Close the connection for good (unacked deliveries go back to their queues)."""
        self.closed = True
        connection, self._conn = self._conn, None
        self._channels.clear()
        if connection is not None and not connection.is_closed:
            await connection.close()


def split_arguments(spec: QueueSpec) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(queue.declare arguments, binding arguments) for a spec."""
    arguments = dict(spec.queue_arguments)
    if spec.max_priority is not None:
        arguments["x-max-priority"] = int(spec.max_priority)
    if spec.exchange_type != "headers":
        return arguments, None
    queue_args = {k: v for k, v in arguments.items() if k in _QUEUE_ARGUMENTS}
    return queue_args, {k: v for k, v in arguments.items() if k not in _QUEUE_ARGUMENTS}


class Topology:
    """Declared specs and what is known to exist on the broker."""

    def __init__(
        self,
        admin: Callable[[], Awaitable[Channel]],
        native: NativeDelay | None = None,
        probes: Callable[[], Awaitable[Channel]] | None = None,
    ) -> None:
        self._admin = admin
        # A passive declare of something missing closes its channel: probes get a channel
        # of their own, one at a time, so that a "no" never cancels a declaration or
        # another probe running beside it (a broadcast to a missing exchange did).
        self._probes = probes or admin
        self._probing = asyncio.Lock()
        self._native = native
        """Binds quorum queues on topic/fanout exchanges for Celery's delayed tasks."""
        self.specs: dict[str, QueueSpec] = {}
        self._queues: set[str] = set()
        self._exchanges: set[str] = set()

    def reset(self) -> None:
        """Forget what exists (after a reconnect); the specs are kept to declare again."""
        self._queues.clear()
        self._exchanges.clear()
        if self._native is not None:
            self._native.reset()

    async def declare(self, specs: Sequence[QueueSpec]) -> None:
        """Declare exchanges, queues and bindings; remember the specs."""
        for spec in specs:
            self.specs[spec.name] = spec
        for spec in specs:
            queue_args, binding_args = split_arguments(spec)
            if spec.exchange:
                await self._declare_exchange(spec.exchange, spec.exchange_type)
            channel = await self._admin()
            await channel.queue_declare(
                spec.name, durable=spec.durable, auto_delete=spec.auto_delete, arguments=queue_args
            )
            if spec.exchange:
                await channel.queue_bind(
                    spec.name, spec.exchange, routing_key=spec.routing_key, arguments=binding_args
                )
            if self._native is not None and uses_native_delay(spec):
                await self._native.bind(channel, spec)
            self._queues.add(spec.name)

    async def unbind(self, specs: Sequence[QueueSpec]) -> None:
        """Remove the bindings of ``specs`` (and their queues, when auto-delete)."""
        for spec in specs:
            self.specs.pop(spec.name, None)
            _, binding_args = split_arguments(spec)
            self._queues.discard(spec.name)
            try:
                if spec.exchange:
                    await (await self._admin()).queue_unbind(
                        spec.name,
                        spec.exchange,
                        routing_key=spec.routing_key,
                        arguments=binding_args,
                    )
                if spec.auto_delete:
                    await (await self._admin()).queue_delete(spec.name)
            except amqp_errors.ChannelNotFoundEntity:
                pass  # expired already (x-expires) or never there: nothing left to remove

    async def _declare_exchange(self, name: str, kind: str) -> None:
        """Create a missing exchange with Celery's durability; leave an existing one alone."""
        if not await self.exchange_exists(name):
            durable = name not in _TRANSIENT_EXCHANGES
            await (await self._admin()).exchange_declare(name, exchange_type=kind, durable=durable)
            self._exchanges.add(name)

    async def redeclare(self) -> None:
        """Declare every remembered spec again."""
        if self.specs:
            await self.declare(list(self.specs.values()))

    async def probe(self, queue: str) -> int | None:
        """Ready messages in ``queue``, or None when it does not exist."""
        try:
            async with self._probing:
                ok = await (await self._probes()).queue_declare(queue, passive=True)
        except amqp_errors.ChannelNotFoundEntity:
            return None
        except amqp_errors.ChannelLockedResource:
            return 0  # another connection's exclusive queue: it exists
        return int(ok.message_count or 0)

    def forget(self, queue: str) -> None:
        """``queue`` may be gone: check it again on its next use."""
        self._queues.discard(queue)

    async def ensure_queue(self, queue: str) -> None:
        """Make sure ``queue`` exists: as declared before, else with Celery's defaults."""
        if queue in self._queues:
            return
        if await self.probe(queue) is None:
            spec = self.specs.get(queue)
            if spec is not None:
                await self.declare([spec])
            else:
                await (await self._admin()).queue_declare(queue, durable=True)
        self._queues.add(queue)

    async def exchange_exists(self, exchange: str) -> bool:
        """Whether ``exchange`` exists (the default exchange always does)."""
        if not exchange or exchange in self._exchanges:
            return True
        try:
            async with self._probing:
                await (await self._probes()).exchange_declare(exchange, passive=True)
        except amqp_errors.ChannelNotFoundEntity:
            return False
        self._exchanges.add(exchange)
        return True
