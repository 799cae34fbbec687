"""RESP3 result-wait connections: where to connect, the handshake, and the wire format.

Why RESP3: on a RESP2 connection a subscriber may only (un)subscribe and PING, so a waiter
must read its key on another connection, and it can do so safely only after the SUBSCRIBE
is confirmed: two round trips. A RESP3 connection (``HELLO 3``, Redis 6+) may run any
command while subscribed, and Redis runs one connection's commands in the order they were
sent. So ``SUBSCRIBE key`` + ``GET key`` written together cost one round trip and miss
nothing: a document written before the GET runs is in its reply, and one published after
the SUBSCRIBE ran arrives as a push message (a writer SETs before it PUBLISHes, in one
MULTI or script for Celery and celeriac workers alike).

Pub/sub messages and (un)subscribe confirmations are RESP3 *push* replies, which hiredis
returns as lists. The only other commands these connections send (``GET``, ``PING``, and
``HELLO``/``SELECT`` during the handshake) never answer with an array, so a list is always
a push and anything else is the next reply in command order.

Sentinel locations return no :class:`Endpoint`: their callers keep redis-py's RESP2 path,
which does the master discovery.
"""

from __future__ import annotations

import enum
import inspect
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Final

from celeriac.engines.redis.connection import RedisSettings
from celeriac.exceptions import MissingDependency

try:
    import hiredis
    from redis.asyncio.connection import RedisSSLContext, SSLConnection
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis result backend: pip install 'celeriac[redis]'") from exc

__all__ = [
    "HANDSHAKE_REPLIES",
    "MORE",
    "TIMEOUT",
    "Endpoint",
    "Expired",
    "HandshakeError",
    "Item",
    "ProtocolError",
    "Resp3Unsupported",
    "check_handshake",
    "endpoint_for",
    "is_push",
    "new_parser",
    "pack",
]

ProtocolError = hiredis.ProtocolError
"""What the parser raises on bytes that are not the Redis protocol."""

MORE: Final = object()
"""What :meth:`hiredis.Reader.gets` returns when it needs more bytes."""

Item = bytes | None | Exception
"""What a waiter receives: a GET reply (the document, None when absent, an error reply)
or a published document."""


class Expired(enum.Enum):
    """The type of :data:`TIMEOUT`."""

    TIMEOUT = "timeout"


TIMEOUT: Final = Expired.TIMEOUT
"""What a waiter receives instead of an item once its deadline passed."""

HANDSHAKE_REPLIES: Final = 2
"""How many replies :attr:`Endpoint.handshake` gets (HELLO's and SELECT's)."""

_TLS_DEFAULTS = inspect.signature(SSLConnection.__init__).parameters


class Resp3Unsupported(Exception):
    """The server refused ``HELLO 3`` (Redis before 6, or HELLO not allowed)."""


class HandshakeError(ConnectionError):
    """The server refused ``SELECT`` (or the handshake got an unexpected reply)."""


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

    def __str__(self) -> str:
        return self.path or f"{self.host}:{self.port}"

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


def endpoint_for(settings: RedisSettings) -> Endpoint | None:
    """The endpoint of ``settings``, or None for Sentinel (master discovery is redis-py's)."""
    if settings.sentinels:
        return None
    conn = settings.connection
    return Endpoint(
        host=str(conn.get("host", "")),
        port=int(conn.get("port", 6379)),
        path=str(conn.get("path", "")),
        tls=_tls_context(conn) if settings.tls else None,
        connect_timeout=float(conn.get("socket_connect_timeout") or 5.0),
        write_timeout=float(conn.get("socket_timeout") or 30.0),
        keepalive=bool(conn.get("socket_keepalive", False)),
        handshake=_handshake(conn, settings.db),
    )


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


def check_handshake(hello: Any, select: Any) -> None:
    """Raise unless the replies to :attr:`Endpoint.handshake` say the connection is ready."""
    if not isinstance(hello, dict):
        raise Resp3Unsupported(f"HELLO 3 refused: {hello!r}")
    if select != b"OK":
        raise HandshakeError(f"SELECT refused: {select!r}")


def new_parser() -> hiredis.Reader:
    """A reply parser: error replies come back as exception objects, never raised."""
    return hiredis.Reader(notEnoughData=MORE)


def is_push(reply: Any) -> bool:
    """A push message (pub/sub), as opposed to the reply to the oldest pending command."""
    return isinstance(reply, list)


def pack(*args: str | bytes | int) -> bytes:
    """One command in the Redis protocol."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)
