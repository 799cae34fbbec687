"""``app.connection()``, ``app.connection_for_write()`` and ``app.pool``: the part of
kombu's ``Connection`` that projects call, over the app's own broker connection.

Projects use these to check that the broker is up (``ensure_connection``,
``connect``), to read where it is (``as_uri``, ``info()``, ``hostname``) and to pass a
connection on to ``apply_async(connection=...)``. celeriac has no kombu channels, so
``channel()``, ``Producer``, ``SimpleQueue`` and the like raise :class:`NoKombuChannels`
(a ``NotImplementedError`` and an ``AttributeError``) saying what to use instead.

A :class:`Connection` opens its own connection to the app's broker, in one attempt per
``connect()`` (``ensure_connection`` retries as asked), and closes it on ``release()``.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from celeriac.conf.report import mask_url
from celeriac.engines.options import broker_options
from celeriac.retry import RetryPolicy
from celeriac.transport import Transport, transport_from_url

if TYPE_CHECKING:
    from celeriac.app import Celery

__all__ = ["Connection", "ConnectionPool", "NoKombuChannels", "not_offered"]

_INSTEAD = "publish with task.apply_async() / app.send_task(), read results with AsyncResult"
_KOMBU_ONLY = frozenset(
    {
        "channel", "default_channel", "Producer", "Consumer", "SimpleQueue", "SimpleBuffer",
        "Pool", "ChannelPool", "drain_events", "transport", "connection", "autoretry",
        "ensure", "revive", "collect", "heartbeat_check", "get_heartbeat_interval",
    }
)  # fmt: skip


class NoKombuChannels(NotImplementedError, AttributeError):
    """A kombu or Celery backend feature celeriac's app objects do not have; an
    AttributeError too, so ``hasattr()`` and ``getattr(obj, name, default)`` work."""


def not_offered(obj: object, name: str, known: frozenset[str], advice: str) -> AttributeError:
    """The error for ``obj.name``: what to use instead when ``name`` is one of Celery's
    (``known``), a plain AttributeError's message otherwise."""
    if name in known:
        return NoKombuChannels(f"{type(obj).__name__}.{name}: {advice}")
    return AttributeError(f"{type(obj).__name__!r} object has no attribute {name!r}")


class Connection:
    """What projects call on kombu's ``Connection``, for the app's broker."""

    def __init__(self, app: Celery, url: str | None = None) -> None:
        self._app = app
        self.url = url or app.broker_url
        parts = urlsplit(self.url)
        self.transport_cls = parts.scheme
        self.hostname = parts.hostname
        self.port = parts.port
        self.userid = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.virtual_host = unquote(parts.path[1:]) if parts.path[1:] else "/"
        self._transport: Transport | None = None

    def as_uri(self, include_password: bool = False, mask: str = "**", **_: Any) -> str:
        """The broker URL; the password is replaced by ``mask`` unless ``include_password``
        (kombu's default mask)."""
        if include_password or self.password is None:
            return self.url
        parts = urlsplit(self.url)
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:{mask}@{host}"))

    def info(self) -> dict[str, Any]:
        """Where the broker is (a subset of kombu's ``Connection.info()``)."""
        return {
            "hostname": self.hostname,
            "userid": self.userid,
            "port": self.port,
            "virtual_host": self.virtual_host,
            "transport": self.transport_cls,
            "uri": self.as_uri(),
        }

    def connect(self) -> Connection:
        """Open a connection to the broker now, in one attempt (``ensure_connection``
        retries); raises the engine's error (an OperationalError) if it cannot."""
        if self.url != self._app.broker_url:
            raise NotImplementedError(
                f"celeriac connects to the app's broker only ({mask_url(self._app.broker_url)}), "
                f"not to {mask_url(self.url)}: set broker_url instead"
            )
        if self._transport is None:
            self._transport = self._app.run_sync(self._open())
        return self

    async def _open(self) -> Transport:
        # One attempt: the retries are ensure_connection's, as kombu's are.
        options = {**broker_options(self._app.conf, self.url), "connect_max_retries": 0}
        transport = transport_from_url(self.url, options)
        await transport.connect()
        return transport

    def ensure_connection(
        self,
        errback: Any = None,
        max_retries: int | None = None,
        interval_start: float = 2,
        interval_step: float = 2,
        interval_max: float = 30,
        callback: Any = None,
        **_: Any,
    ) -> Connection:
        """Connect, retrying ``max_retries`` times (for ever when None, as kombu does);
        ``errback(exc, interval)`` is called before each wait."""
        # kombu's interval grows by ``interval_step`` each time; ours by a factor that
        # reaches the same second interval.
        policy = RetryPolicy(
            first=float(interval_start),
            factor=1 + float(interval_step) / max(float(interval_start), 1e-9),
            max_delay=float(interval_max),
            max_retries=max_retries,
        )
        delays = policy.delays()
        while True:
            try:
                if callback is not None:
                    callback()
                return self.connect()
            except OSError as exc:  # ConnectionError and the engines' socket errors
                delay = next(delays, None)
                if delay is None:
                    raise
                if errback is not None:
                    errback(exc, delay)
                time.sleep(delay)

    @property
    def connected(self) -> bool:
        """Whether :meth:`connect` succeeded and the connection was not closed since."""
        return self._transport is not None

    def close(self) -> None:
        """Close the connection (the app's own, which ``delay()`` uses, stays open)."""
        transport, self._transport = self._transport, None
        if transport is not None:
            self._app.run_sync(transport.close())

    release = close

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __getattr__(self, name: str) -> Any:
        raise not_offered(self, name, _KOMBU_ONLY, f"celeriac has no kombu channels; {_INSTEAD}")

    def __repr__(self) -> str:
        return f"<Connection: {self.as_uri()}>"


class ConnectionPool:
    """``app.pool``: hands out :class:`Connection` views (``with app.pool.acquire() as c``)."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self.limit = app.conf["broker_pool_limit"]

    def acquire(self, block: bool = False, timeout: float | None = None) -> Connection:
        """A connection to the app's broker, released by its ``with`` block."""
        return Connection(self._app)

    def release(self, resource: Connection) -> None:
        """Give a connection back."""
        resource.release()

    def force_close_all(self) -> None:
        """Close the app's connections (the sync API opens them again when needed)."""
        self._app.close()
