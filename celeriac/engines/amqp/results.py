"""The rpc:// result backend: results travel back to the sender as AMQP messages (SPEC §5.4).

Client side: :meth:`RPCBackend.connect` declares the reply queue ``<oid>`` (durable,
auto-delete, ``x-expires`` = ``result_expires`` in ms, as Celery declares it) and consumes it;
tasks must be published with ``reply_to = backend.oid``. Every result document that arrives is
kept by its ``correlation_id`` (the task id), the latest state per id, so :meth:`get` and
:meth:`wait` answer from memory: results belong to the process that sent the tasks, as in
Celery. Up to ``max_cached_results`` (option, 10000) ids are kept, least recently used first out.

Worker side: :meth:`store_for` publishes each document to the default exchange with routing key
= the task message's ``reply_to``, ``correlation_id`` = task id and ``delivery_mode`` 1 (2 with
the option ``persistent``, Celery's ``result_persistent``), which a Celery client (or a celeriac
one) reads; a batch of documents goes out in one write on a publishing connection of its own
(:mod:`~celeriac.engines.amqp.pipeline`), confirmed before ``store_for`` returns.
:meth:`store` has no ``reply_to`` to route by, so it drops the documents (Celery drops results
of tasks sent without ``reply_to`` too) and says so once in the log. Groups cannot be saved and
chords are not supported (:class:`NotImplementedError`, as Celery's rpc backend).

The AMQP broker is the URL's own address when it has one (``rpc://user:pass@host//``), else the
option ``broker_url`` (the app's broker), else ``$CELERIAC_BROKER_URL``/``$CELERY_BROKER_URL``,
else ``amqp://guest:guest@localhost:5672//``. ``broker_transport_options`` given as the option of
that name apply to the connection (``heartbeat``, ``connect_timeout``, ``max_retries``,
``retry_backoff_max``). After a lost connection the reply queue (auto-delete) is declared and
consumed again, retried with the connection's backoff (from 0.1 s, doubling up to
``retry_backoff_max``); results published while it was gone are lost, as in Celery.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac.backends.base import ChordPart, Meta
from celeriac.backends.waiting import Waiters
from celeriac.engines.amqp.connection import (
    TRANSIENT_ERRORS,
    AMQPOptions,
    Basic,
    Channel,
    DeliveredMessage,
    Session,
)
from celeriac.engines.amqp.pipeline import PipelinedPublisher, Sending, open_publisher
from celeriac.engines.options import option_flag
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.serializers import Serializer, check_accept, serializer_for_content_type
from celeriac.states import READY_STATES

__all__ = ["RPCBackend"]

logger = logging.getLogger(__name__)

_DEFAULT_BROKER = "amqp://guest:guest@localhost:5672//"
_CHORDS = (
    "The rpc:// result backend does not support chords (as in Celery): use a backend that can "
    "count, e.g. result_backend='redis://...'"
)


def broker_url_for(url: str, options: Mapping[str, Any]) -> str:
    """The AMQP URL an ``rpc://`` backend talks to (see the module docstring)."""
    _, _, rest = url.partition("://")
    if rest.strip("/"):
        return "amqp://" + rest
    for candidate in (
        options.get("broker_url"),
        os.environ.get("CELERIAC_BROKER_URL"),
        os.environ.get("CELERY_BROKER_URL"),
    ):
        if candidate:
            scheme = str(candidate).partition("://")[0].lower()
            if scheme not in {"amqp", "amqps", "pyamqp"}:
                raise ImproperlyConfigured(
                    f"result_backend rpc:// needs an AMQP broker, not {scheme}://"
                )
            return str(candidate)
    return _DEFAULT_BROKER


class RPCBackend:
    """A ResultBackend whose results come back as messages (see the module docstring)."""

    supports_chords = False

    def __init__(
        self,
        url: str,
        *,
        serializer: Serializer,
        expires: float | None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        opts = dict(options or {})
        self.url = url
        self.serializer = serializer
        self.expires = expires
        self.oid = str(opts.get("oid") or uuid.uuid4())
        self._cap = int(opts.get("max_cached_results", 10_000))
        self._delivery_mode = 2 if option_flag(opts.get("persistent")) else 1
        amqp_options = AMQPOptions.from_options(opts.get("broker_transport_options"))
        broker = broker_url_for(url, opts)
        self._session = Session(
            broker, amqp_options, f"celeriac-rpc-{os.getpid()}", self._on_connect
        )
        self._latest: OrderedDict[str, Meta] = OrderedDict()
        self._waiters: Waiters[None] = Waiters()  # woken by every document of their id
        self._reply_channel: Channel | None = None
        self._publisher: PipelinedPublisher | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._warned_store = False

    def __repr__(self) -> str:
        return f"<RPCBackend oid={self.oid}>"

    @property
    def replies(self) -> RPCBackend:
        """Results travel to each task's sender: :meth:`store_for` sends them."""
        return self

    @property
    def reply_queue(self) -> str:
        """This client's reply queue, ``oid``."""
        return self.oid

    # connection ---------------------------------------------------------------------------
    async def connect(self) -> None:
        """Connect, declare and consume the reply queue; idempotent."""
        self._session.closed = False
        await self._session.retrying(self._session.connection)
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _on_connect(self) -> None:
        channel = await self._session.channel("replies")
        arguments: dict[str, Any] = {}
        if self.expires:
            arguments["x-expires"] = round(self.expires * 1000)
        await channel.queue_declare(self.oid, durable=True, auto_delete=True, arguments=arguments)
        await channel.basic_consume(self.oid, self._on_result, no_ack=True)
        self._reply_channel = channel

    async def _supervise(self) -> None:
        """Reconnect (and consume again) when the reply channel goes away."""
        backoff = self._session.retry.backoff()
        while not self._session.closed:
            channel = self._reply_channel
            if channel is not None and not channel.is_closed:
                await asyncio.wait([channel.closing])
                continue
            try:
                await self._session.connection()
                if self._reply_channel is None or self._reply_channel.is_closed:
                    await self._on_connect()
                backoff.reset()
            except TRANSIENT_ERRORS as exc:
                logger.warning("rpc:// reply queue unavailable (%s); retrying", exc)
                await backoff.sleep()

    async def close(self) -> None:
        """Stop consuming and close the connection (the reply queue goes with it)."""
        self._session.closed = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.close()
        await self._session.close()
        self._reply_channel = None

    # results arriving ---------------------------------------------------------------------------
    async def _on_result(self, message: DeliveredMessage) -> None:
        props = message.header.properties
        task_id = props.correlation_id
        if not task_id:
            return
        try:
            content_type = props.content_type or self.serializer.content_type
            codec = self.serializer
            if content_type != codec.content_type:
                accept = getattr(
                    codec, "accept", None
                )  # result_accept_content: pickle only if listed
                if accept is not None:
                    check_accept(content_type, accept)
                codec = serializer_for_content_type(content_type)
            meta = codec.loads(bytes(message.body))
        except Exception as exc:
            logger.warning("rpc:// result for %s cannot be decoded: %s", task_id, exc)
            return
        if isinstance(meta, dict):
            self._remember(task_id, meta)

    def _remember(self, task_id: str, meta: Meta) -> None:
        self._latest[task_id] = meta
        self._latest.move_to_end(task_id)
        while len(self._latest) > self._cap:
            self._latest.popitem(last=False)
        self._waiters.resolve(task_id, None)

    # ResultBackend --------------------------------------------------------------------------------
    async def store(self, items: Sequence[tuple[str, Meta]]) -> None:
        """Drop ``items``: without the task's ``reply_to`` nobody can be told (see store_for)."""
        if items and not self._warned_store:
            self._warned_store = True
            logger.warning(
                "rpc:// results need the task's reply_to; store() dropped %d result(s) "
                "(the worker must call store_for(reply_to, items))",
                len(items),
            )

    async def store_for(self, reply_to: str, items: Sequence[tuple[str, Meta]]) -> None:
        """Send result documents to the client whose reply queue is ``reply_to``."""
        if not reply_to or not items:
            return
        content_encoding = "utf-8" if "json" in self.serializer.content_type else "binary"
        messages = [
            (
                self.serializer.dumps(meta),
                Basic.Properties(
                    content_type=self.serializer.content_type,
                    content_encoding=content_encoding,
                    correlation_id=task_id,
                    delivery_mode=self._delivery_mode,
                    priority=0,
                ),
            )
            for task_id, meta in items
        ]

        async def publish() -> None:
            publisher = await self._publisher_for()
            # Not mandatory: a result for a client that is gone is dropped, as in Celery.
            done = await publisher.publish(
                [Sending("", reply_to, props, body) for body, props in messages], mandatory=False
            )
            if done.nacked:
                raise ConnectionError(f"{len(done.nacked)} result message(s) nacked")

        await self._session.retrying(publish)

    async def _publisher_for(self) -> PipelinedPublisher:
        """The connection results are published on (:mod:`.pipeline`: one write per batch)."""
        session = self._session
        self._publisher = await open_publisher(
            self._publisher, session.url, session.options, f"{session.name}-publish"
        )
        return self._publisher

    async def get(self, task_ids: Sequence[str]) -> list[Meta | None]:
        """The latest document this process received for each id (None: nothing yet)."""
        return [self._latest.get(task_id) for task_id in task_ids]

    async def wait(self, task_id: str, timeout: float | None) -> Meta | None:
        """Wait until a ready document for ``task_id`` arrived; the latest one at timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            meta = self._latest.get(task_id)
            if meta is not None and meta.get("status") in READY_STATES:
                return meta
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return meta
            await self._waiters.wait(task_id, remaining)  # until any document of it arrives

    async def forget(self, task_ids: Sequence[str]) -> None:
        """Forget what arrived for these ids."""
        for task_id in task_ids:
            self._latest.pop(task_id, None)

    async def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Not supported by rpc:// (as in Celery)."""
        raise NotImplementedError("the rpc:// result backend cannot save groups")

    async def restore_group(self, group_id: str) -> list[str] | None:
        """Not supported by rpc:// (as in Celery)."""
        raise NotImplementedError("the rpc:// result backend cannot restore groups")

    async def forget_group(self, group_id: str) -> None:
        """Not supported by rpc:// (as in Celery)."""
        raise NotImplementedError("the rpc:// result backend cannot delete groups")

    async def set_chord_size(self, group_id: str, size: int) -> None:
        """Chords need counters, which rpc:// does not have."""
        raise NotImplementedError(_CHORDS)

    async def add_to_chord(self, group_id: str, count: int) -> int:
        """Chords need counters, which rpc:// does not have."""
        raise NotImplementedError(_CHORDS)

    async def chord_part_done(
        self, group_id: str, index: int, part: ChordPart, size: int
    ) -> list[ChordPart] | None:
        """Chords need counters, which rpc:// does not have."""
        raise NotImplementedError(_CHORDS)

    async def cleanup(self) -> int:
        """Nothing to clean: reply queues expire by themselves (``x-expires``)."""
        return 0
