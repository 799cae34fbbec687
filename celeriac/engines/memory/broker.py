"""The in-memory transport: one store per URL, shared by every instance in the process.

``memory://`` and ``memory://name`` name a store (see :mod:`.connection`), so a client
publishing from a background event loop thread and a worker fetching on the main loop
see the same queues. The store is guarded by a ``threading.Lock`` and wakes waiting
consumers on their own loop with ``call_soon_threadsafe``. Nothing survives the process;
use it for tests and demos. Delayed messages wait in one heap ordered by due time, so a
consumer never holds them.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celeriac import clock
from celeriac.engines.memory.connection import Stores, store_name
from celeriac.protocol.envelope import Envelope
from celeriac.transport.base import DeadLetter, Delivery, Outgoing, QueueSpec
from celeriac.transport.exchanges import RoutingTable
from celeriac.transport.local import Doorbell, LeaseOptions, LocalConsumer

__all__ = ["MemoryTransport", "reset_store"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Message:
    seq: int
    queue: str
    envelope: Envelope
    exchange: str
    routing_key: str
    priority: int
    redelivered: bool = False
    consumer: str | None = None


def _copy_envelope(env: Envelope) -> Envelope:
    # Copies keep the store independent of what callers later do to their objects.
    return Envelope(
        body=bytes(env.body),
        headers=copy.deepcopy(env.headers),
        content_type=env.content_type,
        content_encoding=env.content_encoding,
        properties=copy.deepcopy(env.properties),
    )


class _Store:
    """Queues, leases, dead letters and revokes of one ``memory://`` URL (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bell = Doorbell()
        self.routing = RoutingTable()
        self._seq = itertools.count(1)
        self._ready: dict[str, list[tuple[int, int, _Message]]] = {}
        self._delayed: list[tuple[float, int, _Message]] = []
        self._delayed_count: Counter[str] = Counter()
        self._leased: dict[int, _Message] = {}
        self._consumers: dict[str, float] = {}  # consumer id -> monotonic expiry
        self._dead: dict[str, tuple[DeadLetter, str, str]] = {}
        self._revoked: dict[str, float] = {}

    def _push_ready(self, msg: _Message) -> None:
        heapq.heappush(self._ready.setdefault(msg.queue, []), (-msg.priority, msg.seq, msg))

    def publish(self, messages: Sequence[Outgoing], now: float) -> int:
        """Route and store messages; return how many were unroutable."""
        unroutable = 0
        with self.lock:
            for out in messages:
                queues = self.routing.route(out.exchange, out.routing_key, out.envelope.headers)
                unroutable += not queues and not out.optional
                for queue in queues:
                    self._add(queue, out, now)
        self.bell.ring()
        return unroutable

    def _add(self, queue: str, out: Outgoing, now: float) -> None:
        env = _copy_envelope(out.envelope)
        msg = _Message(next(self._seq), queue, env, out.exchange, out.routing_key, env.priority)
        if out.not_before is not None and out.not_before > now:
            heapq.heappush(self._delayed, (out.not_before, msg.seq, msg))
            self._delayed_count[queue] += 1
        else:
            self._push_ready(msg)

    def _promote_due(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, msg = heapq.heappop(self._delayed)
            self._delayed_count[msg.queue] -= 1
            self._push_ready(msg)

    def next_due(self) -> float | None:
        """Epoch time the earliest delayed message becomes due, if any."""
        with self.lock:
            return self._delayed[0][0] if self._delayed else None

    def claim(
        self, consumer: str, queues: Sequence[str], limit: int, now: float, expires: float
    ) -> list[_Message]:
        """Lease up to ``limit`` due messages, taking from each queue in turn.

        The consumer's heartbeat is recorded under the same lock, so a lease never
        exists without a live consumer entry.
        """
        with self.lock:
            self._promote_due(now)
            taken: list[_Message] = []
            heaps = [self._ready[q] for q in queues if self._ready.get(q)]
            while heaps and len(taken) < limit:
                for heap in heaps:
                    if heap and len(taken) < limit:
                        taken.append(heapq.heappop(heap)[2])
                heaps = [h for h in heaps if h]
            for msg in taken:
                msg.consumer = consumer
                self._leased[msg.seq] = msg
            if taken:
                self._consumers[consumer] = max(expires, self._consumers.get(consumer, expires))
            return taken

    def _owned(self, consumer: str, tags: Sequence[str]) -> list[_Message]:
        msgs = (self._leased.get(int(tag)) for tag in tags if tag.isdigit())
        return [m for m in msgs if m is not None and m.consumer == consumer]

    def settle(self, consumer: str, tags: Sequence[str], requeue: bool) -> list[_Message]:
        """End the leases (ack or drop, or requeue as redelivered); return the messages."""
        with self.lock:
            msgs = self._owned(consumer, tags)
            for msg in msgs:
                del self._leased[msg.seq]
                if requeue:
                    self._requeue(msg)
        if requeue and msgs:
            self.bell.ring()
        return msgs

    def _requeue(self, msg: _Message) -> None:
        msg.consumer = None
        msg.redelivered = True
        self._push_ready(msg)

    def defer(self, consumer: str, tag: str, not_before: float) -> bool:
        """End a lease by delaying its message until ``not_before``; False when it was lost."""
        with self.lock:
            msgs = self._owned(consumer, [tag])
            for msg in msgs:
                del self._leased[msg.seq]
                msg.consumer = None
                heapq.heappush(self._delayed, (not_before, msg.seq, msg))
                self._delayed_count[msg.queue] += 1
        if msgs:
            self.bell.ring()  # a waiting consumer recomputes the next due time
        return bool(msgs)

    def unbind(self, specs: Sequence[QueueSpec]) -> None:
        """Forget the bindings of ``specs``; drop the waiting messages of auto-delete ones."""
        with self.lock:
            for spec in specs:
                self.routing.unbind(spec)
        doomed = [spec.name for spec in specs if spec.auto_delete]
        if doomed:
            self.purge(doomed)

    def bury(self, consumer: str, tag: str, reason: str, now: float) -> bool:
        """Move a leased message to the dead letters; False when the lease was lost."""
        with self.lock:
            msgs = self._owned(consumer, [tag])
            for msg in msgs:
                del self._leased[msg.seq]
                dead = DeadLetter(uuid.uuid4().hex, msg.queue, reason, now, msg.envelope)
                self._dead[dead.id] = (dead, msg.exchange, msg.routing_key)
            return bool(msgs)

    def list_dead(self, limit: int) -> list[DeadLetter]:
        """Dead letters, oldest first (dicts keep insertion order)."""
        with self.lock:
            entries = list(itertools.islice(self._dead.values(), limit))
        return [
            DeadLetter(d.id, d.queue, d.reason, d.dead_at, _copy_envelope(d.envelope))
            for d, _, _ in entries
        ]

    def requeue_dead(self, ids: Sequence[str] | None) -> int:
        """Put dead letters back on their queues as fresh messages."""
        with self.lock:
            chosen = list(self._dead) if ids is None else [i for i in ids if i in self._dead]
            for dead_id in chosen:
                dead, exchange, key = self._dead.pop(dead_id)
                env = dead.envelope
                msg = _Message(next(self._seq), dead.queue, env, exchange, key, env.priority)
                self._push_ready(msg)
        if chosen:
            self.bell.ring()
        return len(chosen)

    def purge_dead(self, ids: Sequence[str] | None) -> int:
        """Delete dead letters for good."""
        with self.lock:
            chosen = list(self._dead) if ids is None else [i for i in set(ids) if i in self._dead]
            for dead_id in chosen:
                del self._dead[dead_id]
        return len(chosen)

    def beat(self, consumer: str, expires: float) -> None:
        """Record that ``consumer`` is alive until ``expires`` (monotonic)."""
        with self.lock:
            self._consumers[consumer] = expires

    def sweep(self, now: float) -> int:
        """Requeue deliveries of consumers whose heartbeat expired; return how many."""
        with self.lock:
            dead = {c for c, exp in self._consumers.items() if exp < now}
            for consumer in dead:
                del self._consumers[consumer]
            lost = [m for m in self._leased.values() if m.consumer not in self._consumers]
            for msg in lost:
                del self._leased[msg.seq]
                self._requeue(msg)
        if lost:
            log.warning("requeued %d deliveries of %d lost consumer(s)", len(lost), len(dead))
            self.bell.ring()
        return len(lost)

    def release(self, consumer: str) -> int:
        """Forget ``consumer`` and requeue everything it still holds."""
        with self.lock:
            self._consumers.pop(consumer, None)
            held = [m for m in self._leased.values() if m.consumer == consumer]
            for msg in held:
                del self._leased[msg.seq]
                self._requeue(msg)
        if held:
            self.bell.ring()
        return len(held)

    def purge(self, queues: Sequence[str]) -> int:
        """Delete waiting messages (due or not) of ``queues``."""
        names = set(queues)
        with self.lock:
            count = sum(len(self._ready.pop(q, [])) for q in names)
            kept = [entry for entry in self._delayed if entry[2].queue not in names]
            count += len(self._delayed) - len(kept)
            heapq.heapify(kept)
            self._delayed = kept
            for q in names:
                self._delayed_count.pop(q, None)
        return count

    def queue_sizes(self, queues: Sequence[str]) -> dict[str, int]:
        """Waiting (unleased) messages per queue, due or not."""
        with self.lock:
            return {q: len(self._ready.get(q, ())) + self._delayed_count[q] for q in queues}

    def revoke(self, task_ids: Sequence[str], expires: float) -> None:
        """Remember revoked ids until ``expires`` (epoch)."""
        with self.lock:
            for task_id in task_ids:
                self._revoked[task_id] = max(expires, self._revoked.get(task_id, expires))

    def revoked(self, now: float) -> set[str]:
        """Ids whose revoke has not expired; expired ones are forgotten."""
        with self.lock:
            for task_id in [t for t, exp in self._revoked.items() if exp <= now]:
                del self._revoked[task_id]
            return set(self._revoked)


_STORES: Stores[_Store] = Stores(_Store)


def reset_store(url: str = "memory://") -> None:
    """Forget the store of ``url`` (``memory://name``); instances connected later get a new one.

    Instances already connected keep using the old store.
    """
    _STORES.forget(url)


class MemoryTransport:
    """A :class:`~celeriac.transport.base.Transport` over a process-wide in-memory store.

    Options (``broker_transport_options``): ``lease_timeout`` (30 s), ``heartbeat_interval``
    (lease_timeout / 3); ``poll_interval`` is accepted for symmetry with SQLite and unused.
    """

    def __init__(self, url: str = "memory://", *, options: Mapping[str, Any] | None = None) -> None:
        store_name(url)
        self.url = url
        self._store: _Store | None = None
        self._consumer = LocalConsumer(
            LeaseOptions.from_options(options), beat=self._beat, label=f"MemoryTransport {url}"
        )

    def __repr__(self) -> str:
        return repr(self._consumer)

    async def connect(self) -> None:
        """Attach to the store of this URL (created on first use); idempotent."""
        if self._store is None:
            self._store = _STORES.get(self.url)
        self._consumer.attach(self._store.bell)

    async def close(self) -> None:
        """Stop the heartbeat and requeue every delivery still held (as redelivered)."""
        store, self._store = self._store, None
        if store is None:
            return
        await self._consumer.close()  # a fetch waiting right now returns empty
        store.release(self._consumer.id)

    async def _connected(self) -> _Store:
        if self._store is None:
            if self._consumer.closed:
                raise RuntimeError(f"{self!r} is closed")
            await self.connect()
        assert self._store is not None
        return self._store

    async def declare(self, queues: Sequence[QueueSpec]) -> None:
        """Record exchanges and bindings; queues themselves need no declaring."""
        store = await self._connected()
        with store.lock:
            for spec in queues:
                store.routing.declare(spec)

    async def unbind(self, queues: Sequence[QueueSpec]) -> None:
        """Forget the bindings (and the waiting messages of auto-delete queues)."""
        (await self._connected()).unbind(queues)

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Route and store copies of ``messages``; unroutable ones are dropped with a warning."""
        store = await self._connected()
        unroutable = store.publish(messages, clock.wall())
        if unroutable:
            log.warning("dropped %d unroutable message(s) (no queue bound)", unroutable)

    async def fetch(self, queues: Sequence[str], *, limit: int, timeout: float) -> list[Delivery]:
        """Lease up to ``limit`` due messages, waiting up to ``timeout`` s for one."""
        await self._connected()
        return await self._consumer.fetch(queues, limit, timeout, self._claim)

    async def _claim(
        self, queues: list[str], limit: int, sweep: bool
    ) -> tuple[list[Delivery], float | None]:
        store = await self._connected()
        now = time.monotonic()
        if sweep:
            store.sweep(now)
        expires = now + self._consumer.options.lease_timeout
        msgs = store.claim(self._consumer.id, queues, limit, clock.wall(), expires)
        if not msgs:
            return [], store.next_due()
        return [_delivery(msg) for msg in msgs], None

    async def _beat(self) -> None:
        store = await self._connected()
        now = time.monotonic()
        store.beat(self._consumer.id, now + self._consumer.options.lease_timeout)
        store.sweep(now)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove finished deliveries (ones whose lease this consumer lost are ignored)."""
        store = await self._connected()
        store.settle(self._consumer.id, [d.tag for d in deliveries], requeue=False)

    async def reject(self, deliveries: Sequence[Delivery], *, requeue: bool) -> None:
        """Requeue deliveries at once (marked redelivered) or drop them."""
        store = await self._connected()
        store.settle(self._consumer.id, [d.tag for d in deliveries], requeue=requeue)

    async def defer(self, delivery: Delivery, not_before: float) -> None:
        """Delay a leased delivery until ``not_before``, ending its lease, under one lock."""
        store = await self._connected()
        if not store.defer(self._consumer.id, delivery.tag, not_before):
            log.warning("defer: delivery %s is no longer leased here", delivery.tag)

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a delivery to the dead letters with ``reason``."""
        store = await self._connected()
        if not store.bury(self._consumer.id, delivery.tag, reason, clock.wall()):
            log.warning("dead_letter: delivery %s is no longer leased here", delivery.tag)

    async def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        return (await self._connected()).list_dead(limit)

    async def requeue_dead(self, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all when ``ids`` is None) back on their original queues."""
        return (await self._connected()).requeue_dead(ids)

    async def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (all when ``ids`` is None) for good; return how many."""
        return (await self._connected()).purge_dead(ids)

    async def purge(self, queues: Sequence[str]) -> int:
        """Delete waiting messages (due or not) in ``queues``; return how many."""
        return (await self._connected()).purge(queues)

    async def queue_sizes(self, queues: Sequence[str]) -> dict[str, int]:
        """Waiting messages (due or not) per queue."""
        return (await self._connected()).queue_sizes(queues)

    async def revoke(self, task_ids: Sequence[str], *, expires: float) -> None:
        """Remember revoked task ids until ``expires`` (epoch seconds)."""
        (await self._connected()).revoke(task_ids, expires)

    async def revoked(self) -> set[str]:
        """Currently revoked task ids."""
        return (await self._connected()).revoked(clock.wall())


def _delivery(msg: _Message) -> Delivery:
    return Delivery(
        envelope=_copy_envelope(msg.envelope),
        queue=msg.queue,
        tag=str(msg.seq),
        exchange=msg.exchange,
        routing_key=msg.routing_key,
        redelivered=msg.redelivered,
    )
