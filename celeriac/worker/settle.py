"""Write what tasks leave behind, in batches: result documents first, then acks.

At least once: a delivery is acked only after the result of its task is stored, so a
crash in between runs the task again instead of losing its result. Both travel in one
batch: ``settle(result, delivery)`` queues the pair, and a flush stores every result of
the batch (one backend call) before it acks every delivery (one transport call).

A write that fails is retried by the engine's policy (:mod:`celeriac.reconnect`) for as long
as the lease holds (30 s by default), so an outage shorter than that delays the batch
instead of sending its tasks round again. Only a batch whose results still could not be
stored then gives its deliveries back to the queue (by then another worker may have them).

A result whose delivery the transport says was taken over meanwhile (``holds()`` is False,
:class:`~celeriac.transport.LeaseHolder`: a worker cut off or frozen past its lease, whose
messages went to another worker) is dropped, not stored: the run that took over owns the
task's result, and a late write from the lost run would overwrite it. Its ack still goes
to the transport, which ignores it but forgets the delivery.

When results travel to each task's sender (rpc://, ``ResultBackend.replies``), a document
is queued with the ``reply_to`` of its task's message and sent there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from celeriac import states
from celeriac.backends.base import Meta, ReplySender, ResultBackend
from celeriac.exceptions import SerializationError
from celeriac.protocol.results import make_meta
from celeriac.transport import Delivery, LeaseHolder, Transport
from celeriac.worker.batcher import NOW, Batcher

__all__ = ["LINGER", "Document", "Settler"]

logger = logging.getLogger("celeriac.worker")

LINGER = 0.0005
"""Seconds a flush waits for more items while other tasks are still running."""

Document = tuple[str, Meta]
"""(task id, result document)."""
Item = tuple[Document | None, Delivery | None, str | None]
"""A document and/or a delivery to ack once it is stored, and the ``reply_to`` of the
document's task (rpc://; None when it was sent without one)."""


class Settler:
    """The worker's one batch of result documents and acks (see the module docstring).

    ``busy()`` says whether tasks are running: only then does a flush linger, since
    more items are on their way; an idle worker's result goes out at once, without
    even waiting for the rest of the loop turn.
    ``progressed()`` is called when a batch leaves the queue and again once it is written
    (the consumer may be waiting for the queue of writes to shrink).
    """

    def __init__(
        self,
        transport: Transport,
        backend: ResultBackend | None,
        *,
        busy: Callable[[], bool],
        progressed: Callable[[], None] = lambda: None,
    ) -> None:
        self.transport = transport
        self.backend = backend
        self._busy = busy
        self._progressed = progressed
        self._replies = backend.replies if backend is not None else None
        self.batch: Batcher[Item] = Batcher(self._flush, linger=self._linger)

    def settle(
        self, document: Document | None, delivery: Delivery | None, reply_to: str | None = None
    ) -> None:
        """Queue a result and/or an ack (the ack is written after the result)."""
        self.batch.add((document, delivery, reply_to))

    def state(self, task_id: str, meta: Meta, reply_to: str | None = None) -> None:
        """Queue a state document with no ack (STARTED, a task's own ``update_state``)."""
        self.batch.add(((task_id, meta), None, reply_to))

    def ack(self, delivery: Delivery) -> None:
        """Queue an ack with no result."""
        self.batch.add((None, delivery, None))

    async def store(self, task_id: str, meta: Meta, reply_to: str | None = None) -> None:
        """Queue a document and wait until it is written (raises what the write raised)."""
        await self.batch.put(((task_id, meta), None, reply_to))

    @property
    def queued(self) -> int:
        """Items waiting to be written."""
        return self.batch.queued

    async def drain(self) -> None:
        """Wait until everything queued so far is written."""
        await self.batch.drain()

    # flushing ---------------------------------------------------------------------------
    def _linger(self, items: Sequence[Item]) -> float:
        # Nothing else running: nothing else will join this batch, so it goes out at once
        # (a lone task's result must not wait for a loop turn, let alone the linger).
        if not self._busy():
            return NOW
        # A batch of only STARTED/progress documents goes out at the next turn: holding
        # it would make the task's final result queue behind it.
        for document, delivery, _ in items:
            if delivery is not None or (
                document is not None and document[1]["status"] in states.READY_STATES
            ):
                return LINGER
        return 0.0

    async def _flush(self, items: Sequence[Item]) -> None:
        # These items have left the queue: a consumer that a long queue held back may fetch
        # again now, while they are written, instead of waiting for the write to finish.
        self._progressed()
        try:
            await self._write(items)
        finally:
            self._progressed()

    async def _write(self, items: Sequence[Item]) -> None:
        items = self._held(items)
        documents = [document for document, _, _ in items if document is not None]
        if documents:
            try:
                await self._store(documents, items)
            except Exception:
                await self._after_failed_store(items)
                raise
        deliveries = [delivery for _, delivery, _ in items if delivery is not None]
        if deliveries:
            await self._ack(deliveries)

    def _held(self, items: Sequence[Item]) -> Sequence[Item]:
        """``items`` without the documents of deliveries another worker took over."""
        transport = self.transport
        if not isinstance(transport, LeaseHolder):
            return items
        kept: list[Item] = []
        for document, delivery, reply_to in items:
            if document is not None and delivery is not None and transport.holds(delivery) is False:
                logger.warning(
                    "Task %s: its message was given to another worker while this one was cut "
                    "off or frozen past its lease; this run's result is dropped",
                    document[0],
                )
                document = None
            kept.append((document, delivery, reply_to))
        return kept

    async def _after_failed_store(self, items: Sequence[Item]) -> None:
        """Results not stored: their deliveries go back to the queue, the others are acked."""
        stranded = [d for doc, d, _ in items if doc is not None and d is not None]
        plain = [d for doc, d, _ in items if doc is None and d is not None]
        if stranded:
            logger.error("storing results failed; requeueing %d deliveries", len(stranded))
            try:
                await self.transport.reject(stranded, requeue=True)
            except Exception:
                logger.exception("requeueing %d deliveries failed", len(stranded))
        if plain:
            await self._ack(plain)

    async def _ack(self, deliveries: Sequence[Delivery]) -> None:
        try:
            await self.transport.ack(deliveries)
        except Exception:
            logger.exception(
                "ack of %d deliveries failed; they will be redelivered", len(deliveries)
            )

    async def _store(self, documents: list[Document], items: Sequence[Item]) -> None:
        backend = self.backend
        if backend is None:
            return
        if self._replies is not None:
            await self._send_replies(self._replies, items)
            return
        latest = dict(documents)  # a later state of the same task replaces an earlier one
        try:
            await backend.store(list(latest.items()))
        except SerializationError:
            await self._store_one_by_one(backend, list(latest.items()))

    async def _send_replies(self, replies: ReplySender, items: Sequence[Item]) -> None:
        """rpc:// results go to each task's own reply queue."""
        by_reply: dict[str, dict[str, Meta]] = {}
        for document, _, reply_to in items:
            if document is not None:
                task_id, meta = document
                by_reply.setdefault(reply_to or "", {})[task_id] = meta
        for reply_to, latest in by_reply.items():
            await replies.store_for(reply_to, list(latest.items()))

    async def _store_one_by_one(self, backend: ResultBackend, items: list[Document]) -> None:
        """Store documents singly; one that cannot be serialized becomes a FAILURE."""
        for task_id, meta in items:
            try:
                await backend.store([(task_id, meta)])
            except SerializationError as exc:
                logger.error("Task %s: result cannot be serialized: %s", task_id, exc)
                await backend.store([(task_id, _encode_error(task_id, exc))])


def _encode_error(task_id: str, exc: Exception) -> Meta:
    error: dict[str, Any] = {
        "exc_type": "EncodeError",
        "exc_message": [f"result cannot be serialized: {exc}"],
        "exc_module": "celeriac.exceptions",
    }
    return make_meta(task_id, states.FAILURE, error)
