"""The Transport interface: how messages move between clients and workers.

A transport only moves envelopes. It knows queues, exchanges and routing keys,
holds not-yet-due messages until they are due (so workers never hold them), leases
deliveries to live consumers, and keeps a dead-letter place and a persisted revoke
list. It knows nothing about tasks.

Delivery guarantee: at least once. A fetched delivery is leased to this transport
instance (the consumer) until it is acked or rejected. While the consumer is alive
its lease is renewed by the transport itself; when the consumer dies (its heartbeat
stops for ``lease_timeout`` seconds), its unacked deliveries become visible again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from celeriac.protocol.envelope import Envelope

_T = TypeVar("_T")

__all__ = [
    "BlockingPublisher",
    "DeadLetter",
    "Delivery",
    "LeaseHolder",
    "Outgoing",
    "QueueSpec",
    "Reclaimer",
    "Rotation",
    "Transport",
]


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue and its binding to an exchange, as Celery's ``Queue`` declares it.

    An empty ``exchange`` means the default exchange, where the routing key is the
    queue name. ``exchange_type`` is ``direct``, ``topic``, ``fanout`` or ``headers``.
    """

    name: str
    exchange: str = ""
    exchange_type: str = "direct"
    routing_key: str = ""
    max_priority: int | None = None
    durable: bool = True
    queue_arguments: dict[str, Any] = field(default_factory=dict)
    auto_delete: bool = False


@dataclass(slots=True)
class Outgoing:
    """One message to publish: where to, and not before when (epoch seconds).

    ``optional`` marks a message nobody may be listening for (a broadcast, a reply to a
    client that gave up): reaching no queue is then normal, and dropped without a warning.
    """

    envelope: Envelope
    exchange: str = ""
    routing_key: str = "celery"
    not_before: float | None = None
    optional: bool = False


@dataclass(slots=True)
class Delivery:
    """A message handed to a consumer; ack or reject it through its transport."""

    envelope: Envelope
    queue: str
    tag: str
    exchange: str = ""
    routing_key: str = ""
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be processed, with the reason it was set aside."""

    id: str
    queue: str
    reason: str
    dead_at: float
    envelope: Envelope


@runtime_checkable
class LeaseHolder(Protocol):
    """A transport that can tell whether its consumer still holds a delivery (optional).

    ``holds(delivery)``: True while the lease holds; False once another consumer took the
    message over (it must not run here); None when the consumer cannot tell (it has not
    renewed its lease for most of the lease's length: frozen, cut off). Workers start a
    task only on True, and put back a delivery with a late ack otherwise.
    """

    def holds(self, delivery: Delivery) -> bool | None:
        """See the class docstring."""
        ...


@runtime_checkable
class Reclaimer(Protocol):
    """A transport whose consumer has an id, and that can put back at once what another
    consumer held once that consumer is known dead (optional).

    The slots' supervisor knows when a slot's process died (it reaped it); the slot that
    replaces it reclaims its predecessor's messages instead of waiting for their lease to
    run out. Transports whose broker does this by itself (RabbitMQ requeues a closed
    channel's messages) need not implement it.
    """

    consumer_id: str

    async def reclaim(self, consumer_id: str) -> int:
        """Requeue (as redelivered) every message ``consumer_id`` holds; how many."""
        ...


@runtime_checkable
class Transport(Protocol):
    """Moves envelopes; one instance per event loop. All methods are coroutines."""

    url: str

    async def connect(self) -> None:
        """Open connections; idempotent."""

    async def close(self) -> None:
        """Release connections; unacked deliveries of this consumer become visible again."""

    async def declare(self, queues: Sequence[QueueSpec]) -> None:
        """Create queues, exchanges and bindings (idempotent)."""

    async def unbind(self, queues: Sequence[QueueSpec]) -> None:
        """Remove the bindings these specs declared (idempotent); an ``auto_delete`` queue
        goes with its binding, as a broker deletes it when its consumer leaves."""

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Route and store messages, in one batch where the engine allows it.

        Raises if the broker did not take them; never drops silently. A message routed
        to no queue is dropped, as AMQP does with an unroutable message.
        """

    async def fetch(self, queues: Sequence[str], *, limit: int, timeout: float) -> list[Delivery]:
        """Return up to ``limit`` due deliveries from ``queues``, waiting up to ``timeout`` s.

        Higher priority first within a queue (AMQP numbering: 9 before 0), then FIFO.
        Returns an empty list on timeout.
        """

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove finished deliveries for good."""

    async def reject(self, deliveries: Sequence[Delivery], *, requeue: bool) -> None:
        """Give deliveries back (requeue) or drop them."""

    async def defer(self, delivery: Delivery, not_before: float) -> None:
        """Hide a leased delivery in its own queue until ``not_before`` (epoch s); acks it.

        The move is one atomic step where the engine allows it (Redis, SQLite, memory):
        a crash leaves the message either leased here or delayed, never both, never
        neither. Where it does not (RabbitMQ), the delayed copy is confirmed before the
        delivery is acked. A delivery whose lease was lost is left to its new holder.
        """

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a delivery to the dead-letter place, with the reason; acks it."""

    async def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        """The dead letters, oldest first."""

    async def requeue_dead(self, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all when ``ids`` is None) back on their queues."""

    async def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters for good (all when ``ids`` is None); return how many."""

    async def purge(self, queues: Sequence[str]) -> int:
        """Delete waiting (not leased) messages in ``queues``; return how many."""

    async def queue_sizes(self, queues: Sequence[str]) -> dict[str, int]:
        """Number of waiting messages (due or not) per queue."""

    async def revoke(self, task_ids: Sequence[str], *, expires: float) -> None:
        """Persist revoked task ids until ``expires`` (epoch seconds)."""

    async def revoked(self) -> set[str]:
        """All currently revoked task ids (workers poll this cheaply)."""


class BlockingPublisher(Protocol):
    """Publishes from the calling thread (the sync API), where an engine has one.

    A fast path only: ``publish`` returns False, having sent nothing, for messages it
    does not handle; those then go through the asyncio :class:`Transport`. It does not
    retry: when the broker cannot be reached it raises
    :class:`~celeriac.exceptions.OperationalError` (the caller retries as its publish
    policy says, through the Transport).
    """

    def publish(self, messages: Sequence[Outgoing]) -> bool:
        """Store ``messages`` and return True, or return False (nothing sent)."""

    def close(self) -> None:
        """Release connections."""


class Rotation:
    """Starts each fetch at the next queue of the list, so that no consumed queue starves."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def order(self, queues: Sequence[_T]) -> list[_T]:
        """``queues`` rotated by one more place than the previous call's."""
        if not queues:
            return []
        start = self._next % len(queues)
        self._next = start + 1
        return [*queues[start:], *queues[:start]]
