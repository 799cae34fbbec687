"""Reaching Redis: URL forms, options, clients and connections, for every Redis role.

Accepted URL forms (as Celery/kombu accept them)::

    redis://[user:password@]host[:port][/db]       plain TCP (db 0 by default)
    rediss://[user:password@]host[:port][/db]      TLS; certificate options below
    redis+socket:///path/to/redis.sock?db=N        Unix socket (also unix://, socket://)
    sentinel://[:password@]host:port[/db];sentinel://host2:port
                                                   Sentinel; needs option master_name
    redis+cluster://[user:password@]host:port[,host:port...]/
                                                   Redis Cluster seeds (rediss+cluster://
                                                   with TLS); option cluster_hash_tag
                                                   (:mod:`celeriac.engines.redis.cluster`)

Options (Celery's ``broker_transport_options`` / ``result_backend_transport_options``):
``max_connections`` (pool size, default 20), ``pool_timeout`` (wait for a free pooled
connection, default 20 s), ``socket_timeout``, ``socket_connect_timeout``,
``socket_keepalive``, ``health_check_interval``, ``username``/``password`` (override the
URL), ``master_name`` and ``sentinel_kwargs`` (Sentinel), ``ssl_cert_reqs``,
``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_check_hostname`` (also inside
an ``ssl`` dict, as ``broker_use_ssl`` gives them; an ``ssl`` option also turns TLS on for a
``redis://`` URL), and ``global_keyprefix`` (read by the
callers, which prefix every key with it as kombu does).

redis-py's own retries are switched off: the callers retry with the engine's
:class:`~celeriac.retry.RetryPolicy` (:func:`retry_policy`: ``max_retries``, default 6,
``retry_backoff_max``, default 2 s, and ``retry_deadline``; an app fills them from Celery's
settings, :mod:`celeriac.reconnect`) so that they can tell a retried write from a lost one.
redis-py's connections speak RESP2 (redis-py 8 would pick RESP3, which Redis < 6 lacks and
which turns pub/sub replies into push messages); the result-wait connection, which is ours,
says ``HELLO 3`` (:class:`Endpoint`).

redis-py's blocking client packs commands with ``hiredis.pack_command`` when hiredis is
installed; its asyncio client always packs in Python, about two microseconds per argument.
A batch of results or acks is a script call with a few arguments per task, so the asyncio
pool uses :class:`PackingConnection` and its siblings, which pack in C like the blocking
client does (without hiredis they are redis-py's classes unchanged).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

from celeriac.engines.redis.cluster import (
    CLUSTER_SCHEMES,
    DEFAULT_TAGS,
    cluster_client,
    cluster_prefix,
    parse_seeds,
    reachable_seeds,
)
from celeriac.exceptions import ImproperlyConfigured, MissingDependency
from celeriac.masking import mask_url
from celeriac.reconnect import unreachable
from celeriac.retry import RetryPolicy

try:
    import redis as blocking
    from redis import exceptions as redis_errors
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import (
        Connection,
        RedisSSLContext,
        SSLConnection,
        UnixDomainSocketConnection,
    )
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
    from redis.backoff import NoBackoff
    from redis.exceptions import DataError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis support: pip install 'celeriac[redis]'") from exc

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is part of the redis extra
    _hiredis_pack = None  # type: ignore[assignment, unused-ignore]

__all__ = [
    "DEFAULT_RETRY",
    "Endpoint",
    "TIMEOUTS",
    "TRANSIENT_ERRORS",
    "UNREACHABLE",
    "BlockingSentinelPool",
    "HandshakeError",
    "PackingConnection",
    "PackingSSLConnection",
    "PackingUnixConnection",
    "RedisSettings",
    "Resp3Unsupported",
    "check_handshake",
    "connect_redis",
    "connect_redis_blocking",
    "endpoint_for",
    "locator",
    "pack",
    "parse_redis_url",
    "release",
    "retried",
    "retry_policy",
]

T = TypeVar("T")

DEFAULT_RETRY = RetryPolicy(first=0.05, factor=2.0, max_delay=2.0, max_retries=6)
"""How the Redis engine retries when its options say nothing."""
_NO_SEED: type[Exception] = getattr(  # redis-py 5.1+; types-redis predates it
    redis_errors, "RedisClusterUnreachableError", redis_errors.SlotNotCoveredError
)
UNREACHABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
    # Redis Cluster: no node answers yet, no primary for a slot yet (mid-failover), or a
    # slot being moved.
    _NO_SEED,
    redis_errors.SlotNotCoveredError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
)
"""Errors that mean "Redis cannot be reached now"."""
TRANSIENT_ERRORS = (*UNREACHABLE, redis_errors.ReadOnlyError)
"""What the transport retries, never fatal to a consumer (a replica mid-failover too)."""
TIMEOUTS = (redis_errors.TimeoutError, TimeoutError)
"""A read, write or connect that took longer than its socket timeout."""

_SSL_KEYS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_CERT_REQS = {p + v: v for v in ("none", "optional", "required") for p in ("", "cert_")}
_SOCKET_SCHEMES = ("unix", "socket", "redis+socket")
_TLS_DEFAULTS = inspect.signature(SSLConnection.__init__).parameters
_UNBOUNDED = 2**31 - 1


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """A parsed Redis location: how to connect, which db, and the key prefix."""

    db: int = 0
    connection: dict[str, Any] = field(default_factory=dict)
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str | None = None
    sentinel_kwargs: dict[str, Any] = field(default_factory=dict)
    max_connections: int = 20
    pool_timeout: float = 20.0
    key_prefix: str = ""
    tls: bool = False
    cluster: tuple[tuple[str, int], ...] = ()
    """Redis Cluster seed nodes (empty: not a Cluster)."""


def _cert_reqs(value: Any) -> Any:
    """Normalise Celery's spellings of ``ssl_cert_reqs`` (CERT_NONE, 'none', ssl constants)."""
    if isinstance(value, ssl.VerifyMode):
        return value
    text = str(value).strip().lower()
    if text not in _CERT_REQS:
        raise ImproperlyConfigured(f"invalid ssl_cert_reqs {value!r}")
    return _CERT_REQS[text]


def _ssl_options(query: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
    """TLS keyword arguments from the URL query, an ``ssl`` dict and top-level options."""
    merged: dict[str, Any] = {k: v for k, v in query.items() if k in _SSL_KEYS}
    nested = options.get("ssl")
    if isinstance(nested, Mapping):
        merged.update({k: v for k, v in nested.items() if k in _SSL_KEYS})
    merged.update({k: v for k, v in options.items() if k in _SSL_KEYS})
    if "ssl_cert_reqs" in merged:
        merged["ssl_cert_reqs"] = _cert_reqs(merged["ssl_cert_reqs"])
    if "ssl_check_hostname" in merged:
        merged["ssl_check_hostname"] = str(merged["ssl_check_hostname"]).lower() in (
            "1",
            "true",
            "yes",
        )
    return merged


def _db_from(path: str, query: Mapping[str, str]) -> int:
    """The db number from ``?db=N`` or the URL path ``/N``."""
    text = query.get("db") or path.strip("/") or "0"
    try:
        return int(text)
    except ValueError as exc:
        raise ImproperlyConfigured(f"invalid Redis db number {text!r}") from exc


def _seconds_or_none(value: Any) -> float | None:
    """A timeout option: seconds, or None for none (as Celery's ``redis_socket_*``)."""
    return None if value is None else float(value)


def _pool_size(options: Mapping[str, Any]) -> int:
    """``max_connections`` (default 20); None or 0 means no limit."""
    value = options.get("max_connections", 20)
    return int(value) if value else _UNBOUNDED


def _common_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Socket and auth options passed straight to every connection."""
    kwargs: dict[str, Any] = {
        "socket_timeout": _seconds_or_none(options.get("socket_timeout", 30.0)),
        "socket_connect_timeout": _seconds_or_none(options.get("socket_connect_timeout", 5.0)),
        "socket_keepalive": bool(options.get("socket_keepalive", True)),
        "health_check_interval": int(options.get("health_check_interval", 25)),
        # RESP2: understood by every Redis version; pub/sub replies stay plain arrays.
        "protocol": 2,
    }
    for key in ("username", "password", "client_name"):
        if options.get(key) is not None:
            kwargs[key] = options[key]
    return kwargs


def _parse_sentinel(url: str, options: Mapping[str, Any]) -> RedisSettings:
    """``sentinel://h1:p1;sentinel://h2:p2`` plus ``master_name``."""
    master = options.get("master_name")
    if not master:
        raise ImproperlyConfigured("sentinel:// URLs need the transport option 'master_name'")
    hosts: list[tuple[str, int]] = []
    db = 0
    auth: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in url.split(";"))):
        split = urlsplit(part)
        hosts.append((split.hostname or "localhost", split.port or 26379))
        query = {k: v[0] for k, v in parse_qs(split.query).items()}
        if split.path.strip("/") or "db" in query:
            db = _db_from(split.path, query)
        if split.password:
            auth["password"] = unquote(split.password)
        if split.username:
            auth["username"] = unquote(split.username)
    connection = {**auth, **_common_options(options), "db": db}
    tls_options = _ssl_options({}, options)
    if tls_options or options.get("ssl"):
        connection.update(tls_options, ssl=True)
    sentinel_kwargs = dict(options.get("sentinel_kwargs") or {})
    return RedisSettings(
        db=db,
        connection=connection,
        sentinels=tuple(hosts),
        master_name=str(master),
        sentinel_kwargs=sentinel_kwargs,
        max_connections=_pool_size(options),
        pool_timeout=float(options.get("pool_timeout", 20.0)),
        key_prefix=str(options.get("global_keyprefix") or ""),
    )


def _parse_cluster(url: str, options: Mapping[str, Any], store: str) -> RedisSettings:
    """``redis+cluster://[user:pass@]h1:p1,h2:p2/`` plus ``cluster_hash_tag``."""
    scheme, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    path, _, query_text = path.partition("?")
    query = {k: v[0] for k, v in parse_qs(query_text).items()}
    if _db_from(path, query) != 0:
        raise ImproperlyConfigured(
            f"{mask_url(url)!r}: Redis Cluster has only db 0; drop the db number from the URL"
        )
    if options.get("master_name"):
        raise ImproperlyConfigured("master_name is a Sentinel option; a Redis Cluster has none")
    userinfo, _, hosts = netloc.rpartition("@")
    connection: dict[str, Any] = {}
    user, _, password = userinfo.partition(":")
    if user:
        connection["username"] = unquote(user)
    if password:
        connection["password"] = unquote(password)
    tls = scheme.lower() == "rediss+cluster" or bool(options.get("ssl"))
    if tls:
        connection.update(_ssl_options(query, options), ssl=True)
    connection.update(_common_options(options))
    tag = options.get("cluster_hash_tag", DEFAULT_TAGS[store])
    return RedisSettings(
        connection=connection,
        max_connections=_pool_size(options),
        pool_timeout=float(options.get("pool_timeout", 20.0)),
        key_prefix=cluster_prefix(tag, str(options.get("global_keyprefix") or "")),
        tls=tls,
        cluster=parse_seeds(hosts),
    )


def parse_redis_url(
    url: str, options: Mapping[str, Any] | None = None, *, store: str = "broker"
) -> RedisSettings:
    """Parse ``url`` and ``options`` into :class:`RedisSettings` (no I/O). ``store``
    (broker, results, schedules) picks the default hash tag on a Redis Cluster."""
    opts: Mapping[str, Any] = options or {}
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sentinel":
        return _parse_sentinel(url, opts)
    if scheme in CLUSTER_SCHEMES:
        return _parse_cluster(url, opts, store)
    split = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(split.query).items()}
    # An ``ssl`` option (Celery's broker_use_ssl / redis_backend_use_ssl) turns TLS on for
    # redis:// as well, as kombu and Celery do.
    tls = scheme == "rediss" or (scheme == "redis" and bool(opts.get("ssl")))
    connection: dict[str, Any] = {}
    if split.username:
        connection["username"] = unquote(split.username)
    if split.password:
        connection["password"] = unquote(split.password)
    if scheme in _SOCKET_SCHEMES:
        connection["path"] = unquote(split.path)
        db = _db_from("", query)
    elif scheme in ("redis", "rediss"):
        connection["host"] = split.hostname or "localhost"
        connection["port"] = split.port or 6379
        db = _db_from(split.path, query)
        if tls:
            connection.update(_ssl_options(query, opts))
    else:
        raise ImproperlyConfigured(f"not a Redis URL: {mask_url(url)!r}")
    connection.update(_common_options(opts))
    if "path" in connection:
        connection.pop("socket_keepalive")  # a TCP option; Unix sockets refuse it
    connection["db"] = db
    return RedisSettings(
        db=db,
        connection=connection,
        max_connections=_pool_size(opts),
        pool_timeout=float(opts.get("pool_timeout", 20.0)),
        key_prefix=str(opts.get("global_keyprefix") or ""),
        tls=tls,
    )


def retry_policy(options: Mapping[str, Any]) -> RetryPolicy:
    """The retry policy an engine's options ask for, over :data:`DEFAULT_RETRY`."""
    return RetryPolicy.from_options(options, default=DEFAULT_RETRY)


def retried(
    policy: RetryPolicy,
    errors: tuple[type[BaseException], ...],
    what: str,
    op: Callable[[], Awaitable[T]],
    fatal: tuple[type[BaseException], ...] = (),
    url: str = "redis://",
) -> Coroutine[Any, Any, T]:
    """``op()``, again after ``errors`` as ``policy`` says; then OperationalError naming
    ``what`` and ``url`` (password masked). ``fatal`` errors are raised at once, even when
    they are among ``errors``.

    A plain function returning the policy's coroutine: no coroutine frame of its own on
    every publish, ack and store."""
    return policy.call(
        op,
        retry_on=errors,
        what=what,
        give_up=lambda exc, attempts: unreachable(url, what, exc, attempts),
        fatal=fatal,
    )


def _sentinel(settings: RedisSettings) -> Sentinel:
    """redis-py's Sentinel client for ``settings`` (it finds the master). It asks the
    sentinels in turn, so the reachable ones go first and a dead one is logged once."""
    timeout = float(settings.connection.get("socket_connect_timeout") or 5.0)
    return Sentinel(
        list(reachable_seeds(settings.sentinels, timeout, "redis sentinel")),
        sentinel_kwargs=settings.sentinel_kwargs or None,
        retry=AsyncRetry(NoBackoff(), 0),
        **{k: v for k, v in settings.connection.items() if k != "db"},
    )


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):  # type: ignore[type-arg]
    """redis-py's Sentinel pool whose callers wait up to ``pool_timeout`` for one of
    ``max_connections`` (as on plain Redis) instead of failing with MaxConnectionsError."""


def connect_redis(settings: RedisSettings) -> Redis[bytes]:
    """A client with a bounded connection pool for ``settings`` (connects lazily)."""
    no_retries = AsyncRetry(NoBackoff(), 0)
    if settings.cluster:
        # The same commands over the cluster (see celeriac.engines.redis.cluster); callers
        # close it with release(), the only call that differs.
        found = cluster_client(
            settings.cluster, settings.connection, settings.max_connections, settings.pool_timeout
        )
        return cast("Redis[bytes]", found)
    if settings.sentinels:
        # Each new connection asks the sentinels where the master is; a connection that
        # gets READONLY (a demoted primary) is dropped as lost (redis-py's
        # SentinelManagedConnection), so the callers' retries land on the new master.
        client: Redis[bytes] = _sentinel(settings).master_for(
            settings.master_name or "",
            connection_pool_class=BlockingSentinelPool,
            db=settings.db,
            max_connections=settings.max_connections,
            timeout=math.ceil(settings.pool_timeout),
        )
        return client
    classes = (PackingConnection, PackingUnixConnection, PackingSSLConnection)
    pool = BlockingConnectionPool(**_pool_options(settings, *classes), retry=no_retries)
    return Redis(connection_pool=pool)


async def release(client: Redis[bytes]) -> None:
    """Close ``client``'s connections (a cluster client's on every node)."""
    if isinstance(client, RedisCluster):
        await cast(Any, client).aclose()  # (missing from types-redis)
    else:
        await client.connection_pool.disconnect()


def connect_redis_blocking(settings: RedisSettings) -> blocking.Redis[bytes]:
    """The same pool as :func:`connect_redis` for redis-py's blocking client (no Sentinel,
    no Cluster)."""
    if settings.sentinels or settings.cluster:
        raise ImproperlyConfigured("the blocking client has no Sentinel or Cluster support here")
    classes = (blocking.Connection, blocking.UnixDomainSocketConnection, blocking.SSLConnection)
    no_retries = Retry(NoBackoff(), 0)
    pool = blocking.BlockingConnectionPool(**_pool_options(settings, *classes), retry=no_retries)
    return blocking.Redis(connection_pool=pool)


def _pool_options(settings: RedisSettings, plain: type, unix: type, tls: type) -> dict[str, Any]:
    """Connection-pool keyword arguments, with the connection class the location needs."""
    kwargs = dict(settings.connection)
    connection_class = unix if "path" in kwargs else tls if settings.tls else plain
    return {
        "max_connections": settings.max_connections,
        "timeout": math.ceil(settings.pool_timeout),
        "connection_class": connection_class,
        **kwargs,
    }


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to open a result-wait connection."""

    host: str
    port: int
    path: str
    tls: ssl.SSLContext | None
    connect_timeout: float
    write_timeout: float
    keepalive: bool
    handshake: bytes
    """``HELLO 3`` (with AUTH and SETNAME when configured) then ``SELECT db``, packed."""
    fallback: tuple[bytes, int]
    """The RESP2 handshake (``AUTH``, ``CLIENT SETNAME``, ``SELECT``) and its reply count."""

    def __str__(self) -> str:
        return self.path or f"{self.host}:{self.port}"

    async def connect(self, protocol: asyncio.Protocol) -> None:
        """Open an asyncio connection served by ``protocol`` (TLS-wrapped when configured)."""
        loop = asyncio.get_running_loop()
        if self.path:
            await loop.create_unix_connection(lambda: protocol, self.path, ssl=self.tls)
            return
        hostname = self.host if self.tls is not None else None
        transport, _ = await loop.create_connection(
            lambda: protocol, self.host, self.port, ssl=self.tls, server_hostname=hostname
        )
        if self.keepalive:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def open_socket(self) -> socket.socket:
        """A connected socket (TLS-wrapped when configured) for the sync API, its timeout
        still ``connect_timeout`` for the handshake."""
        if self.path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.connect_timeout)
            try:
                sock.connect(self.path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        return sock


def endpoint_for(
    settings: RedisSettings, *, master: tuple[str, int] | None = None
) -> Endpoint | None:
    """The endpoint of ``settings``; for Sentinel and Cluster, None unless ``master`` says
    where it is."""
    if (settings.sentinels or settings.cluster) and master is None:
        return None
    conn = settings.connection
    host, port = master or (str(conn.get("host", "")), int(conn.get("port", 6379)))
    tls = settings.tls or bool(conn.get("ssl"))
    return Endpoint(
        host=host,
        port=port,
        path=str(conn.get("path", "")),
        tls=_tls_context(conn) if tls else None,
        connect_timeout=float(conn.get("socket_connect_timeout") or 5.0),
        write_timeout=float(conn.get("socket_timeout") or 30.0),
        keepalive=bool(conn.get("socket_keepalive", False)),
        handshake=_handshake(conn, settings.db),
        fallback=_resp2_handshake(conn, settings.db),
    )


def locator(settings: RedisSettings) -> Callable[[], Awaitable[Endpoint]]:
    """Where to open a result-wait connection now: fixed, the master Sentinel names, or
    the Cluster primary serving the key prefix's hash slot (all of a store's keys)."""
    fixed = endpoint_for(settings)
    if fixed is not None:

        async def here() -> Endpoint:
            return fixed

        return here
    if settings.cluster:
        return _slot_owner(settings)
    sentinel = _sentinel(settings)

    async def master() -> Endpoint:
        address = await sentinel.discover_master(settings.master_name or "")
        found = endpoint_for(settings, master=(str(address[0]), int(address[1])))
        assert found is not None
        return found

    return master


def _slot_owner(settings: RedisSettings) -> Callable[[], Awaitable[Endpoint]]:
    """The locator of a Cluster store: the primary that serves its keys now."""

    async def owner() -> Endpoint:
        client = cluster_client(settings.cluster, settings.connection, 1)
        try:
            await client.initialize()
            node = client.get_node_from_key(settings.key_prefix)
        finally:
            await cast(Any, client).aclose()
        if node is None:
            raise redis_errors.ClusterDownError(f"no primary serves {settings.key_prefix!r}")
        found = endpoint_for(settings, master=(str(node.host), int(node.port)))
        assert found is not None
        return found

    return owner


def _tls_context(conn: dict[str, Any]) -> ssl.SSLContext:
    """The TLS context redis-py's own connections would use (same options, same defaults)."""
    context = RedisSSLContext(
        keyfile=conn.get("ssl_keyfile"),
        certfile=conn.get("ssl_certfile"),
        cert_reqs=conn.get("ssl_cert_reqs", _TLS_DEFAULTS["ssl_cert_reqs"].default),
        ca_certs=conn.get("ssl_ca_certs"),
        check_hostname=conn.get("ssl_check_hostname", _TLS_DEFAULTS["ssl_check_hostname"].default),
    )
    return context.get()


def _handshake(conn: dict[str, Any], db: int) -> bytes:
    """``HELLO 3 [AUTH user pass] [SETNAME name]`` and ``SELECT db``."""
    hello: list[Any] = ["HELLO", 3]
    if conn.get("password") is not None:
        hello += ["AUTH", conn.get("username") or "default", conn["password"]]
    if conn.get("client_name"):
        hello += ["SETNAME", conn["client_name"]]
    return pack(*hello) + pack("SELECT", db)


def _resp2_handshake(conn: dict[str, Any], db: int) -> tuple[bytes, int]:
    """``[AUTH [user] pass]``, ``[CLIENT SETNAME name]``, ``SELECT db``, and their count."""
    commands: list[tuple[Any, ...]] = []
    if conn.get("password") is not None:
        user = conn.get("username")
        commands.append(("AUTH", user, conn["password"]) if user else ("AUTH", conn["password"]))
    if conn.get("client_name"):
        commands.append(("CLIENT", "SETNAME", conn["client_name"]))
    commands.append(("SELECT", db))
    return b"".join(pack(*command) for command in commands), len(commands)


class Resp3Unsupported(Exception):
    """The server refused ``HELLO 3`` (Redis before 6, or HELLO not allowed)."""


class HandshakeError(ConnectionError):
    """The server refused ``AUTH`` or ``SELECT`` (or the handshake got an unexpected reply)."""


def check_handshake(*replies: Any, resp3: bool = True) -> None:
    """Raise unless the replies to :attr:`Endpoint.handshake` (``resp3``) or to
    :attr:`Endpoint.fallback` say the connection is ready."""
    if resp3 and not isinstance(replies[0], dict):
        raise Resp3Unsupported(f"HELLO 3 refused: {replies[0]!r}")
    refused = [reply for reply in replies[1 if resp3 else 0 :] if reply != b"OK"]
    if refused:
        raise HandshakeError(f"handshake refused: {refused!r}")


def pack(*args: bytes | str | int) -> bytes:
    """One Redis command in RESP, built with a single join (strings as UTF-8)."""
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        data = arg if type(arg) is bytes else str(arg).encode()
        append(b"$%d\r\n" % len(data))
        append(data)
        append(b"\r\n")
    return b"".join(parts)


class _HiredisPacking:
    """Mixin: ``pack_command`` through hiredis, with redis-py's handling of the command name."""

    def pack_command(self, *args: Any) -> list[bytes]:
        """Pack one command into the Redis protocol (one buffer)."""
        if _hiredis_pack is None:
            packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
            return packed
        first = args[0]
        # A command name may carry literal arguments ("CONFIG GET"): Redis wants them apart.
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [_hiredis_pack(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from exc


class PackingConnection(_HiredisPacking, Connection):
    """A TCP connection packing with hiredis."""


class PackingUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    """A Unix-socket connection packing with hiredis."""


class PackingSSLConnection(_HiredisPacking, SSLConnection):
    """A TLS connection packing with hiredis."""
