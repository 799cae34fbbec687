"""Publishing to RabbitMQ from the calling thread, for the sync API (``task.delay()``).

Without it a sync publish is handed to the portal's event loop and waited for: two thread
switches and an asyncio round of aiormq per message, which cost more than the publisher
confirm itself. :class:`AMQPBlockingPublisher` speaks just enough AMQP 0-9-1 over a plain
socket (frames built and parsed by pamqp, aiormq's own codec) to open a connection, one
channel in confirm mode, and publish. The guarantee is the transport's: ``publish`` returns
once the broker confirmed every message (``basic.ack``); a ``basic.nack`` (a full
``x-overflow: reject-publish`` queue, say) raises :class:`Nacked`. A message that comes back
unroutable (``mandatory``) is logged and dropped, as the transport does. With
``confirm_publish`` off, messages are written and not waited for.

It handles messages due now, to queues and exchanges the caller declared first (the app
declares through the asyncio transport once per queue); ``publish`` returns False, having
sent nothing, for anything else (the delay ladder), and the caller uses the transport.
It does not retry: :class:`NotSent` when nothing was sent (the broker unreachable),
:class:`ReplyLost` when it was and the confirm is unknown; the caller's publish policy then
decides, through the transport.

Connections: one per thread publishing at the same moment, kept in an idle stack (a thread
pops one, publishes, pushes it back), at most ``max_connections`` (``broker_pool_limit``,
Celery's 10; a thread finding all busy waits up to ``pool_timeout``,
``broker_pool_acquire_timeout``). Heartbeats (``heartbeat``) are sent only while a
publish waits for its confirms, and a wait that hears nothing from the broker for two
intervals fails (ReplyLost) instead of hanging on a dead peer; while idle nobody answers
the broker's, so it closes a connection idle for two intervals: that (and any other close)
is noticed before the next publish (readable socket) and the connection replaced before
anything is sent. TCP keepalive is on. TLS and failover
lists are left to the transport (:func:`blocking_publisher` returns None).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pamqp import commands as cmd
from pamqp import frame as amqp_frame
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.constants import FRAME_END, FRAME_HEADER_SIZE
from pamqp.header import ContentHeader, ProtocolHeader
from pamqp.heartbeat import Heartbeat

from celeriac.engines.amqp import wire
from celeriac.engines.amqp.connection import AMQPOptions, Endpoint, properties_for
from celeriac.exceptions import OperationalError
from celeriac.masking import mask_url
from celeriac.transport.base import Outgoing

__all__ = [
    "CHANNEL",
    "CLIENT_PROPERTIES",
    "FRAME_MAX",
    "HEARTBEAT",
    "AMQPBlockingPublisher",
    "BlockingConnection",
    "Closed",
    "FrameBuffer",
    "Nacked",
    "NotSent",
    "ReplyLost",
    "blocking_publisher",
    "negotiate_heartbeat",
    "publish_frames",
]

logger = logging.getLogger("celeriac.engines.amqp.broker")

CHANNEL = 1
FRAME_MAX = 131072
CLIENT_PROPERTIES: dict[str, Any] = {
    "product": "celeriac",
    "capabilities": {
        "publisher_confirms": True,
        "basic.nack": True,
        "authentication_failure_close": True,
    },
}


HEARTBEAT = amqp_frame.marshal(Heartbeat(), 0)


class NotSent(OperationalError):
    """RabbitMQ could not be reached: nothing was sent."""

    maybe_sent = False


class ReplyLost(OperationalError):
    """Messages were sent and the connection lost before every confirm came back."""

    maybe_sent = True


class Nacked(OperationalError):
    """The broker refused messages (``basic.nack``): they are not queued."""

    maybe_sent = False
    refused = True
    """Not retried: the broker answered, and no."""


class Closed(ConnectionError):
    """The server closed the connection or the channel (its reply code and text)."""


def publish_frames(
    exchange: str,
    routing_key: str,
    properties: cmd.Basic.Properties,
    body: bytes,
    frame_max: int,
    mandatory: bool,
) -> bytes:
    """The frames of one ``basic.publish`` on :data:`CHANNEL`: method, header, body."""
    return wire.publish_frames(
        CHANNEL, exchange, routing_key, properties, body, frame_max, mandatory
    )


class FrameBuffer:
    """Bytes read from the socket, cut into frames."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Add bytes read."""
        self._data += chunk

    def next(self) -> tuple[int, Any] | None:
        """The next whole frame, (channel, value), or None until more bytes come."""
        data = self._data
        if len(data) < FRAME_HEADER_SIZE:
            return None
        size = int.from_bytes(data[3:7], "big") + FRAME_HEADER_SIZE + 1
        if len(data) < size:
            return None
        if data[size - 1] != FRAME_END:
            raise Closed("malformed AMQP frame")
        _, channel, value = amqp_frame.unmarshal(bytes(data[:size]))
        del data[:size]
        return channel, value

    def clear(self) -> None:
        """Forget what was read."""
        self._data.clear()


class BlockingConnection:
    """One AMQP connection with one confirm-mode channel, used by one thread at a time."""

    def __init__(self, endpoint: Endpoint, options: AMQPOptions, name: str) -> None:
        self.endpoint = endpoint
        self.options = options
        self.name = name
        self.confirms = options.confirm_publish
        self._sock: socket.socket | None = None
        self._buffer = FrameBuffer()
        self._frame_max = FRAME_MAX
        self._heartbeat = 0
        self._next_tag = 1

    # connection -----------------------------------------------------------------------------
    def open(self) -> None:
        """Connect, log in, open channel 1 and put it in confirm mode (raises OSError)."""
        ep = self.endpoint
        sock = socket.create_connection((ep.host, ep.port), timeout=self.options.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            self._sock = sock
            self._handshake()
            # Waiting for confirms wakes up every half interval to send a heartbeat (a broker
            # in flow control may take long, and must hear from us meanwhile).
            sock.settimeout(self._heartbeat / 2 if self._heartbeat else None)
        except BaseException:
            self.close()
            raise

    def _handshake(self) -> None:
        ep = self.endpoint
        self._write(amqp_frame.marshal(ProtocolHeader(), 0))
        self._expect(cmd.Connection.Start)
        properties = {**CLIENT_PROPERTIES, "connection_name": self.name}
        self._send(
            0,
            cmd.Connection.StartOk(
                client_properties=properties, response=f"\0{ep.user}\0{ep.password}"
            ),
        )
        tune = self._expect(cmd.Connection.Tune)
        assert isinstance(tune, cmd.Connection.Tune)
        self._frame_max = min(tune.frame_max or FRAME_MAX, FRAME_MAX)
        self._heartbeat = negotiate_heartbeat(self.options.heartbeat, tune.heartbeat)
        self._send(0, cmd.Connection.TuneOk(tune.channel_max, self._frame_max, self._heartbeat))
        self._send(0, cmd.Connection.Open(virtual_host=ep.vhost))
        self._expect(cmd.Connection.OpenOk)
        self._open_channel()

    def _open_channel(self) -> None:
        self._send(CHANNEL, cmd.Channel.Open())
        self._expect(cmd.Channel.OpenOk)
        self._next_tag = 1
        if self.confirms:
            self._send(CHANNEL, cmd.Confirm.Select())
            self._expect(cmd.Confirm.SelectOk)

    @property
    def is_open(self) -> bool:
        """Connected, and not closed by the server while it sat idle."""
        sock = self._sock
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable  # nothing is due while idle: data is a Close (or EOF)

    def close(self) -> None:
        """Drop the socket (the broker cleans up the channel)."""
        sock, self._sock = self._sock, None
        self._buffer.clear()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # publishing -----------------------------------------------------------------------------
    def publish(self, messages: Sequence[Outgoing]) -> tuple[list[tuple[str, str]], int]:
        """Write ``messages`` and wait for their confirms: the (exchange, routing key) of
        each one returned unroutable, and how many were nacked.

        OSError or :class:`Closed` when the connection or channel failed on the way.
        """
        data = b"".join([self._frames(out) for out in messages])
        first = self._next_tag
        self._next_tag += len(messages)
        self._write(data)
        if not self.confirms:
            return [], 0
        return self._await_confirms(messages, first, self._next_tag - 1)

    def _frames(self, out: Outgoing) -> bytes:
        properties = properties_for(out.envelope)
        body = out.envelope.body
        return publish_frames(
            out.exchange, out.routing_key, properties, body, self._frame_max, self.confirms
        )

    def _await_confirms(
        self, messages: Sequence[Outgoing], first: int, last: int
    ) -> tuple[list[tuple[str, str]], int]:
        """Read until every tag from ``first`` to ``last`` is acked or nacked (RabbitMQ may
        confirm out of order, or several at once with ``multiple``)."""
        pending = set(range(first, last + 1))
        nacked = 0
        returned: list[tuple[str, str]] = []
        while pending:
            channel, value = self._read()
            if isinstance(value, cmd.Basic.Return):
                self._skip_content()  # its ack follows: the message was not queued
                returned.append((value.exchange, value.routing_key or ""))
            elif isinstance(value, (cmd.Basic.Ack, cmd.Basic.Nack)):
                tag = value.delivery_tag
                done = {t for t in pending if t <= tag} if value.multiple else {tag} & pending
                pending -= done
                if isinstance(value, cmd.Basic.Nack):
                    nacked += len(done)
            else:
                self._unexpected(channel, value)
        return returned, nacked

    # frames -----------------------------------------------------------------------------------
    def _send(self, channel: int, value: Frame) -> None:
        self._write(amqp_frame.marshal(value, channel))

    def _write(self, data: bytes) -> None:
        if self._sock is None:
            raise ConnectionError("not connected")
        self._sock.sendall(data)

    def _expect(self, kind: type[Frame]) -> Frame:
        channel, value = self._read()
        if not isinstance(value, kind):
            self._unexpected(channel, value)
        assert isinstance(value, Frame)
        return value

    def _unexpected(self, channel: int, value: object) -> None:
        """Answer a Close from the server and raise :class:`Closed`; ignore heartbeats."""
        if isinstance(value, cmd.Connection.Close):
            self._try_send(0, cmd.Connection.CloseOk())
            self.close()
            raise Closed(f"connection closed by RabbitMQ: {value.reply_code} {value.reply_text}")
        if isinstance(value, cmd.Channel.Close):
            self._try_send(channel, cmd.Channel.CloseOk())
            self.close()  # (simplest: the next publish opens a new connection)
            raise Closed(f"channel closed by RabbitMQ: {value.reply_code} {value.reply_text}")
        if type(value).__name__ == "Heartbeat":
            return
        self.close()
        raise Closed(f"unexpected AMQP frame {type(value).__name__}")

    def _try_send(self, channel: int, value: Frame) -> None:
        try:
            self._send(channel, value)
        except OSError:
            pass

    def _skip_content(self) -> None:
        """Read the header and body frames of a returned message."""
        _, header = self._read()
        size = header.body_size if isinstance(header, ContentHeader) else 0
        got = 0
        while got < size:
            _, body = self._read()
            got += len(body.value) if isinstance(body, ContentBody) else size

    def _read(self) -> tuple[int, Any]:
        """The next frame: (channel, value)."""
        while True:
            parsed = self._buffer.next()
            if parsed is not None:
                return parsed
            chunk = self._recv()
            if not chunk:
                raise ConnectionError("connection closed by RabbitMQ")
            self._buffer.feed(chunk)

    def _recv(self) -> bytes:
        """Bytes from the socket; a heartbeat every half interval of silence, and
        TimeoutError after two intervals of it."""
        silent = 0.0
        while True:
            if self._sock is None:
                raise ConnectionError("not connected")
            try:
                return self._sock.recv(65536)
            except TimeoutError:
                silent += self._heartbeat / 2
                if silent >= 2 * self._heartbeat:
                    raise TimeoutError(f"no word from RabbitMQ for {silent:.0f} s") from None
                self._write(HEARTBEAT)


def negotiate_heartbeat(ours: int, servers: int) -> int:
    """The interval to use: ours (0: none), capped by the server's when it has one."""
    return min(ours, servers) if ours and servers else ours


class AMQPBlockingPublisher:
    """Publishes messages due now from the calling thread (see the module docstring)."""

    def __init__(
        self, url: str, options: AMQPOptions, max_connections: int = 0, pool_timeout: float = 20.0
    ) -> None:
        self.url = url
        self._max = max_connections
        self._pool_timeout = pool_timeout
        self.endpoint = Endpoint.parse(url)
        self.options = options
        self._idle: list[BlockingConnection] = []
        self._name = f"celeriac-{os.getpid()}-sync"
        self._lock = threading.Lock()
        self._all: list[BlockingConnection] = []

    def publish(self, messages: Sequence[Outgoing]) -> bool:
        """Publish and wait for confirms, True; False (nothing sent) when not ours.

        :class:`NotSent`, :class:`ReplyLost`, :class:`Nacked`: see the module docstring.
        """
        if not messages or any(out.not_before is not None for out in messages):
            return False
        connection = self._checkout()
        try:
            returned, nacked = connection.publish(messages)
        except (OSError, Closed) as exc:
            connection.close()
            raise ReplyLost(f"RabbitMQ publish at {mask_url(self.url)}: {exc}") from exc
        except BaseException:
            connection.close()  # interrupted halfway: the stream is out of step
            raise
        finally:
            self._idle.append(connection)
        for exchange, routing_key in returned:
            logger.warning(
                "message to exchange %r with routing key %r was unroutable and dropped",
                exchange,
                routing_key,
            )
        if nacked:
            raise Nacked(
                f"RabbitMQ refused {nacked} of {len(messages)} published message(s) "
                "(basic.nack: a full queue with x-overflow=reject-publish, or an internal error)"
            )
        return True

    def _checkout(self) -> BlockingConnection:
        """An idle open connection, or a new one (NotSent when RabbitMQ is unreachable, or
        when ``max_connections`` are busy for ``pool_timeout`` seconds)."""
        connection = self._idle_or_new()
        if not connection.is_open:
            connection.close()
            try:
                connection.open()
            except (OSError, Closed) as exc:
                self._idle.append(connection)
                raise NotSent(f"RabbitMQ publish at {mask_url(self.url)}: {exc}") from exc
        return connection

    def _idle_or_new(self) -> BlockingConnection:
        deadline: float | None = None
        while True:
            try:
                return self._idle.pop()
            except IndexError:
                pass
            with self._lock:
                if not self._max or len(self._all) < self._max:
                    connection = BlockingConnection(self.endpoint, self.options, self._name)
                    self._all.append(connection)
                    return connection
            now = time.monotonic()
            deadline = deadline or now + self._pool_timeout
            if now >= deadline:
                raise NotSent(
                    f"RabbitMQ publish at {mask_url(self.url)}: all {self._max} connections "
                    f"busy for {self._pool_timeout:g} s (broker_pool_limit)"
                )
            time.sleep(0.001)

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            for connection in self._all:
                connection.close()
            self._all.clear()
            self._idle.clear()


def blocking_publisher(url: str, options: Mapping[str, Any]) -> AMQPBlockingPublisher | None:
    """A calling-thread publisher for ``url``; None for TLS and failover lists."""
    opts = AMQPOptions.from_options(options)
    if ";" in url.strip(";") or opts.ssl:
        return None
    if Endpoint.parse(url.strip(";")).tls:
        return None
    limit = int(options.get("max_connections") or 0)
    timeout = float(options.get("pool_timeout") or 20.0)
    return AMQPBlockingPublisher(url.strip(";"), opts, limit, timeout)
