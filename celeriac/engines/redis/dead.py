"""Dead-letter storage of the Redis transport.

``celeriac:dead`` is a zset of dead-letter ids scored by the time they were set aside;
``celeriac:dead:messages`` maps each id to its metadata JSON, a newline, and the stored
bytes of the message exactly as they were in the queue (garbage included), so requeueing
puts back what was taken.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from celeriac.engines.redis.keys import RedisKeys
from celeriac.engines.redis.leases import NOTIFY_CAP, owner_of
from celeriac.exceptions import MissingDependency
from celeriac.protocol import kombu
from celeriac.transport.base import DeadLetter, Delivery

try:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis transport: pip install 'celeriac[redis]'") from exc

__all__ = ["DeadLetters"]


class DeadLetters:
    """Sets deliveries aside with a reason, lists them, and puts them back."""

    def __init__(self, client: Redis[bytes], keys: RedisKeys, scripts: dict[str, AsyncScript]):
        self.client = client
        self.keys = keys
        self.scripts = scripts
        self._last = 0.0

    async def add(self, delivery: Delivery, reason: str) -> None:
        """Move a leased delivery to the dead letters and ack it, in one Lua step."""
        now = max(time.time(), self._last + 1e-6)  # strictly increasing: oldest-first order
        self._last = now
        dead_id = uuid.uuid4().hex
        meta = {
            "id": dead_id,
            "queue": delivery.queue,
            "reason": reason,
            "time": now,
            "exchange": delivery.exchange,
            "routing_key": delivery.routing_key,
        }
        keys = [
            self.keys.unacked,
            self.keys.unacked_index,
            self.keys.lease(owner_of(delivery.tag)),
            self.keys.dead,
            self.keys.dead_messages,
        ]
        # The script takes the stored bytes from the unacked entry; the fallback is only
        # used when that entry is already gone (the lease was lost).
        suffix = ',"",' + json.dumps(delivery.queue) + "]"
        args: list[Any] = [delivery.tag, dead_id, repr(now), json.dumps(meta), suffix]
        args.append(_stored_bytes(delivery))
        await self.scripts["DEAD_LETTER"](keys=keys, args=args)

    async def oldest(self, limit: int) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, oldest first."""
        ids = [i.decode() for i in await self.client.zrange(self.keys.dead, 0, limit - 1)]
        values = await self.client.hmget(self.keys.dead_messages, ids) if ids else []
        return [_parse(value) for value in values if value is not None]

    async def all_ids(self) -> list[str]:
        """Every dead-letter id, oldest first."""
        return [i.decode() for i in await self.client.zrange(self.keys.dead, 0, -1)]

    async def requeue(self, ids: Sequence[str]) -> int:
        """Put these dead letters back on their queues (each at most once); how many moved."""
        values = await self.client.hmget(self.keys.dead_messages, list(ids))
        keys = [self.keys.dead, self.keys.dead_messages]
        args: list[Any] = [NOTIFY_CAP]
        for dead_id, value in zip(ids, values, strict=True):
            if value is None:
                continue
            meta_text, _, raw = value.partition(b"\n")
            queue = str(json.loads(meta_text)["queue"])
            priority = kombu.decode(raw).envelope.priority
            keys += [self.keys.bucket(queue, priority), self.keys.notify(queue)]
            args += [dead_id, raw]
        if len(args) == 1:
            return 0
        return int(await self.scripts["REQUEUE_DEAD"](keys=keys, args=args))


def _stored_bytes(delivery: Delivery) -> bytes:
    """The delivery as stored bytes (an invalid envelope carries them as its body)."""
    if delivery.envelope.content_type == kombu.INVALID_CONTENT_TYPE:
        return delivery.envelope.body
    return kombu.encode(
        delivery.envelope,
        exchange=delivery.exchange,
        routing_key=delivery.routing_key,
        delivery_tag=delivery.tag,
    )


def _parse(value: bytes) -> DeadLetter:
    """A ``celeriac:dead:messages`` value: metadata JSON, newline, stored bytes."""
    meta_text, _, raw = value.partition(b"\n")
    meta = json.loads(meta_text)
    return DeadLetter(
        id=str(meta["id"]),
        queue=str(meta["queue"]),
        reason=str(meta["reason"]),
        dead_at=float(meta["time"]),
        envelope=kombu.decode(raw).envelope,
    )
