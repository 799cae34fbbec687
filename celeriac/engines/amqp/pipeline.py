"""The transport's publishing connection: whole batches in one write, confirms pipelined.

aiormq writes each ``basic.publish`` separately (a lock, a queue hand-off, a future and a
socket write per message), which caps a batch at a few thousand messages a second and costs
a system call per message. :class:`PipelinedPublisher` is the asyncio twin of
:class:`~celeriac.engines.amqp.blocking.BlockingConnection` (same frames, same handshake):
one connection with one confirm-mode channel, owned by the
:class:`~celeriac.engines.amqp.broker.AMQPTransport`. A publish writes all its frames at
once and waits until the broker settled each of its delivery tags; publishes of several
coroutines share the channel, their confirms read by one reader task, so concurrent
``adelay()`` calls wait for the broker together instead of one after the other.

Heartbeats (``heartbeat``, as negotiated with the broker) are sent while the connection is
idle, and two intervals without a word from the broker count as a lost connection.

What a publish returns: the (exchange, routing key) of messages returned unroutable, and
the indexes of nacked ones. When the connection fails, every publish still waiting raises
ConnectionError: what it sent is unconfirmed, and the transport sends it again.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pamqp import commands as cmd
from pamqp import frame as amqp_frame
from pamqp.base import Frame
from pamqp.header import ContentHeader, ProtocolHeader

from celeriac.engines.amqp.blocking import (
    CHANNEL,
    CLIENT_PROPERTIES,
    FRAME_MAX,
    HEARTBEAT,
    Closed,
    FrameBuffer,
    negotiate_heartbeat,
    publish_frames,
)
from celeriac.engines.amqp.connection import AMQPOptions, Endpoint, tls_context

__all__ = ["PipelinedPublisher", "Published", "Sending", "open_publisher"]


@dataclass(frozen=True, slots=True)
class Sending:
    """One message as it goes on the wire (after routing and the delay ladder)."""

    exchange: str
    routing_key: str
    properties: cmd.Basic.Properties
    body: bytes


@dataclass(slots=True)
class Published:
    """What became of a publish: returned (unroutable) and nacked messages."""

    returned: list[tuple[str, str]] = field(default_factory=list)
    nacked: list[int] = field(default_factory=list)
    """Indexes (in the publish) of the messages the broker refused."""


@dataclass(slots=True)
class _Batch:
    first: int
    unsettled: set[int]
    done: asyncio.Future[Published]
    result: Published = field(default_factory=Published)


async def open_publisher(
    current: PipelinedPublisher | None, url: str, options: AMQPOptions, name: str
) -> PipelinedPublisher:
    """``current`` if it is for ``url``, else a new publisher for it (``current`` closed);
    opened (again, after the broker closed it) before it is returned."""
    publisher = current
    if publisher is None or publisher.url != url:
        if publisher is not None:
            await publisher.close()
        publisher = PipelinedPublisher(url, options, name)
    if not publisher.is_open:
        await publisher.open()
    return publisher


class PipelinedPublisher:
    """One AMQP connection with one confirm-mode channel, for asyncio publishing."""

    def __init__(self, url: str, options: AMQPOptions, name: str) -> None:
        self.url = url
        self.endpoint = Endpoint.parse(url, tls=bool(options.ssl))
        self.options = options
        self.name = name
        self.confirms = options.confirm_publish
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._frames = FrameBuffer()
        self._frame_max = FRAME_MAX
        self._next_tag = 1
        self._batches: list[_Batch] = []
        self._returned: list[tuple[str, str]] = []
        self._reading: asyncio.Task[None] | None = None
        self._beating: asyncio.Task[None] | None = None
        self._heartbeat = 0
        self._last_read = self._last_write = 0.0
        self._lock = asyncio.Lock()
        self.error: BaseException | None = None

    @property
    def is_open(self) -> bool:
        """Connected, with its reader running."""
        return self._writer is not None and self._reading is not None and not self._reading.done()

    async def open(self) -> None:
        """Connect and set the channel up (raises OSError, Closed, TimeoutError)."""
        async with self._lock:
            if self.is_open:
                return
            await self._close_socket()
            ep = self.endpoint
            context = self._tls()
            async with asyncio.timeout(self.options.connect_timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    ep.host, ep.port, ssl=context, server_hostname=self._server_hostname(context)
                )
                try:
                    await self._handshake()
                except BaseException:
                    await self._close_socket()
                    raise
            self.error = None
            loop = asyncio.get_running_loop()
            self._reading = loop.create_task(self._read_confirms())
            if self._heartbeat:
                self._beating = loop.create_task(self._beat(self._reading))

    def _tls(self) -> ssl.SSLContext | None:
        option = self.options.ssl
        if isinstance(option, Mapping):
            return tls_context(option)
        if option or self.endpoint.tls:
            return ssl.create_default_context()
        return None

    def _server_hostname(self, context: ssl.SSLContext | None) -> str | None:
        if context is None:
            return None
        option = self.options.ssl
        if isinstance(option, Mapping) and option.get("server_hostname"):
            return str(option["server_hostname"])
        return self.endpoint.host

    async def _handshake(self) -> None:
        ep = self.endpoint
        self._write(amqp_frame.marshal(ProtocolHeader(), 0))
        await self._expect(cmd.Connection.Start)
        properties = {**CLIENT_PROPERTIES, "connection_name": self.name}
        response = f"\0{ep.user}\0{ep.password}"
        self._send(0, cmd.Connection.StartOk(client_properties=properties, response=response))
        tune = await self._expect(cmd.Connection.Tune)
        assert isinstance(tune, cmd.Connection.Tune)
        self._frame_max = min(tune.frame_max or FRAME_MAX, FRAME_MAX)
        self._heartbeat = negotiate_heartbeat(self.options.heartbeat, tune.heartbeat)
        self._send(0, cmd.Connection.TuneOk(tune.channel_max, self._frame_max, self._heartbeat))
        self._send(0, cmd.Connection.Open(virtual_host=ep.vhost))
        await self._expect(cmd.Connection.OpenOk)
        self._send(CHANNEL, cmd.Channel.Open())
        await self._expect(cmd.Channel.OpenOk)
        self._next_tag = 1
        if self.confirms:
            self._send(CHANNEL, cmd.Confirm.Select())
            await self._expect(cmd.Confirm.SelectOk)

    async def publish(
        self, messages: Sequence[Sending], *, mandatory: bool | None = None
    ) -> Published:
        """Write ``messages`` in one go and wait for their confirms (ConnectionError when
        the connection fails first: nothing of this publish counts as confirmed).

        ``mandatory`` (default: with confirms) has unroutable messages returned and logged.
        """
        if not messages:
            return Published()
        if not self.is_open:
            await self.open()
        if mandatory is None:
            mandatory = self.confirms
        data = b"".join(
            [
                publish_frames(
                    m.exchange, m.routing_key, m.properties, m.body, self._frame_max, mandatory
                )
                for m in messages
            ]
        )
        first = self._next_tag
        self._next_tag += len(messages)
        batch: _Batch | None = None
        if self.confirms:
            done = asyncio.get_running_loop().create_future()
            batch = _Batch(first, set(range(first, self._next_tag)), done)
            self._batches.append(batch)
        try:
            self._write(data)
        except (OSError, RuntimeError) as exc:
            self._fail(ConnectionError(f"RabbitMQ publish connection lost: {exc}"))
        if batch is None:
            writer = self._writer
            if writer is None:
                raise self.error or ConnectionError("RabbitMQ publish connection is closed")
            await writer.drain()
            return Published()
        return await asyncio.shield(batch.done)

    async def _beat(self, reading: asyncio.Task[None]) -> None:
        """Send heartbeats when idle; stop the reader after two silent intervals."""
        loop = asyncio.get_running_loop()
        interval = self._heartbeat
        while not reading.done():
            await asyncio.sleep(interval / 2)
            now = loop.time()
            if now - self._last_read > 2 * interval:
                reading.cancel()  # a dead peer: the waiting publishes raise and retry
                return
            if now - self._last_write >= interval / 2:
                try:
                    self._write(HEARTBEAT)
                except ConnectionError:
                    return

    # reading ------------------------------------------------------------------------------------
    async def _read_confirms(self) -> None:
        try:
            while True:
                channel, value = await self._read()
                if isinstance(value, (cmd.Basic.Ack, cmd.Basic.Nack)):
                    self._settle(value)
                elif isinstance(value, cmd.Basic.Return):
                    await self._skip_content()
                    self._returned.append((value.exchange, value.routing_key or ""))
                else:
                    await self._unexpected(channel, value)
        except asyncio.CancelledError:
            self._fail(ConnectionError("RabbitMQ publish connection closed"))
            raise
        except (OSError, EOFError, Closed, asyncio.IncompleteReadError) as exc:
            self._fail(ConnectionError(f"RabbitMQ publish connection lost: {exc}"))
        except Exception as exc:  # a frame we cannot parse: this connection is done
            self._fail(ConnectionError(f"RabbitMQ publish connection failed: {exc!r}"))

    def _settle(self, frame: cmd.Basic.Ack | cmd.Basic.Nack) -> None:
        tag, nack = frame.delivery_tag, isinstance(frame, cmd.Basic.Nack)
        returned, self._returned = self._returned, []
        finished = 0
        for batch in self._batches:
            if batch.first > tag:
                break
            if frame.multiple:
                done = {t for t in batch.unsettled if t <= tag}
            else:
                done = {tag} & batch.unsettled
            if done:
                batch.unsettled -= done
                if nack:
                    batch.result.nacked += sorted(t - batch.first for t in done)
                if returned:  # a return comes just before the ack of its message
                    batch.result.returned += returned
                    returned = []
            if not batch.unsettled:
                finished += 1
                if not batch.done.done():
                    batch.done.set_result(batch.result)
        if finished:
            self._batches = [b for b in self._batches if b.unsettled]

    def _fail(self, exc: BaseException) -> None:
        """The connection is gone: every waiting publish raises ``exc``."""
        self.error = exc
        batches, self._batches = self._batches, []
        for batch in batches:
            if not batch.done.done():
                batch.done.set_exception(exc)
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    async def _unexpected(self, channel: int, value: object) -> None:
        if isinstance(value, cmd.Connection.Close):
            self._try_send(0, cmd.Connection.CloseOk())
            raise Closed(f"connection closed by RabbitMQ: {value.reply_code} {value.reply_text}")
        if isinstance(value, cmd.Channel.Close):
            self._try_send(channel, cmd.Channel.CloseOk())
            raise Closed(f"channel closed by RabbitMQ: {value.reply_code} {value.reply_text}")
        if type(value).__name__ != "Heartbeat":
            raise Closed(f"unexpected AMQP frame {type(value).__name__}")

    async def _skip_content(self) -> None:
        _, header = await self._read()
        size = header.body_size if isinstance(header, ContentHeader) else 0
        got = 0
        while got < size:
            _, body = await self._read()
            got += len(getattr(body, "value", b"")) or size

    async def _expect(self, kind: type[Frame]) -> Frame:
        channel, value = await self._read()
        if not isinstance(value, kind):
            await self._unexpected(channel, value)
        assert isinstance(value, Frame)
        return value

    async def _read(self) -> tuple[int, Any]:
        while True:
            parsed = self._frames.next()
            if parsed is not None:
                return parsed
            assert self._reader is not None
            chunk = await self._reader.read(65536)
            if not chunk:
                raise EOFError("connection closed by RabbitMQ")
            self._last_read = asyncio.get_running_loop().time()
            self._frames.feed(chunk)

    # writing ------------------------------------------------------------------------------------
    def _send(self, channel: int, value: Frame) -> None:
        self._write(amqp_frame.marshal(value, channel))

    def _write(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise ConnectionError("RabbitMQ publish connection is closed")
        self._writer.write(data)
        self._last_write = asyncio.get_running_loop().time()

    def _try_send(self, channel: int, value: Frame) -> None:
        try:
            self._send(channel, value)
        except (OSError, ConnectionError):
            pass

    async def _close_socket(self) -> None:
        writer, self._writer = self._writer, None
        self._frames = FrameBuffer()
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass

    async def close(self) -> None:
        """Stop reading and close the connection (waiting publishes raise)."""
        beating, self._beating = self._beating, None
        if beating is not None:
            beating.cancel()
        reading, self._reading = self._reading, None
        if reading is not None:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        self._fail(ConnectionError("RabbitMQ publish connection closed"))
        await self._close_socket()
