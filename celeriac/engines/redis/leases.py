"""What becomes of a fetched Redis message: leased, kept alive, put back, or set aside.

Leases instead of visibility timeouts. A consumer registers in ``celeriac:consumers`` and
keeps ``celeriac:consumer:<id>`` alive with ``PX lease_timeout``, renewed every
``heartbeat_interval`` by a background task that also refreshes the ``unacked_index``
scores of its leased tags (so a Celery visibility sweep never takes a live consumer's
messages). The same task sweeps: under a short lock (``celeriac:sweep``), it requeues the
leases of consumers whose liveness key has expired. A consumer that lost Redis waits
``lease_timeout`` after reconnecting before it sweeps, so that consumers cut off by the same
outage can heartbeat again before anyone is declared dead. A restore is atomic (Lua) and
checks that each unacked entry is still the one it read.

Dead letters. ``celeriac:dead`` is a zset of dead-letter ids scored by the time they were
set aside; ``celeriac:dead:messages`` maps each id to its metadata JSON, a newline, and the
stored bytes of the message exactly as they were in the queue (garbage included), so
requeueing puts back what was taken.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from celeriac.engines.redis.connection import TRANSIENT_ERRORS
from celeriac.engines.redis.scripts import NOTIFY_CAP, RedisKeys
from celeriac.exceptions import MissingDependency
from celeriac.protocol import kombu
from celeriac.retry import Backoff
from celeriac.transport.base import DeadLetter, Delivery

try:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis transport: pip install 'celeriac[redis]'") from exc

__all__ = ["CHUNK", "DeadLetters", "Leases", "by_owner", "owner_of"]

logger = logging.getLogger("celeriac.engines.redis.broker")

CHUNK = 200
"""Most messages one script call restores, requeues or schedules."""


def owner_of(tag: str) -> str:
    """The consumer id inside a delivery tag ``<consumer id>:<fetch seq>:<n>``."""
    return tag.split(":", 1)[0]


def by_owner(tags: Sequence[str]) -> dict[str, list[str]]:
    """Group delivery tags by the consumer that leased them."""
    groups: dict[str, list[str]] = {}
    for tag in tags:
        groups.setdefault(owner_of(tag), []).append(tag)
    return groups


def _unwrap(entry: bytes, queue: str) -> bytes:
    """The stored envelope inside an unacked entry ``[<envelope>,"",<queue JSON>]``."""
    suffix = b',"",' + json.dumps(queue).encode() + b"]"
    if entry.startswith(b"[") and entry.endswith(suffix):
        return entry[1 : -len(suffix)]
    try:  # an entry in kombu's own spelling
        value = json.loads(entry)
        return json.dumps(value[0], ensure_ascii=False).encode()
    except (ValueError, TypeError, IndexError, KeyError):
        return entry


class Leases:
    """One consumer's registration, heartbeat task, sweeps and restores."""

    def __init__(
        self,
        client: Redis[bytes],
        keys: RedisKeys,
        scripts: dict[str, AsyncScript],
        *,
        consumer_id: str,
        lease_timeout: float,
        heartbeat_interval: float,
        sweep_interval: float,
    ) -> None:
        self.client = client
        self.keys = keys
        self.scripts = scripts
        self.consumer_id = consumer_id
        self.lease_timeout = lease_timeout
        self.heartbeat_interval = heartbeat_interval
        self.sweep_interval = sweep_interval
        self.unsure: set[int] = set()
        """Sequence numbers of fetch calls whose reply was lost (their leases go back)."""
        self.registered = False
        self.last_beat = time.monotonic()
        """When the last heartbeat succeeded (monotonic clock)."""
        self.lost: set[str] = set()
        """Tags of our deliveries that a sweep requeued while we were thought dead."""
        self._stale_noted = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def stale_after(self) -> float:
        """Seconds without a heartbeat after which our lease may be taken over any moment:
        half a heartbeat interval before it would expire."""
        return max(self.lease_timeout - self.heartbeat_interval / 2, self.lease_timeout / 2)

    def holds(self, tag: str) -> bool | None:
        """Whether our lease on ``tag`` still holds: True; False when a sweep requeued it;
        None when we cannot tell (no heartbeat for :attr:`stale_after` seconds: frozen,
        cut off). Says so once per loss in the log."""
        if tag in self.lost:
            return False
        silent = time.monotonic() - self.last_beat
        if silent < self.stale_after:
            return True
        if not self._stale_noted:
            self._stale_noted = True
            logger.warning(
                "redis consumer %s: no heartbeat for %.1fs (lease %.0fs): its lease may be "
                "lost, so it starts none of the deliveries it holds; they go back to the queue",
                self.consumer_id,
                silent,
                self.lease_timeout,
            )
        return None

    async def ensure_registered(self) -> None:
        """Register before the first lease and keep the heartbeat task running."""
        if not self.registered:
            await self.beat()
            self.registered = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def beat(self) -> tuple[bool, list[str]]:
        """Renew liveness and our tags' unacked_index scores: whether we were (re)registered,
        and the tags a sweep requeued meanwhile."""
        me = self.consumer_id
        keys = [
            self.keys.live(me),
            self.keys.consumers,
            self.keys.lease(me),
            self.keys.unacked_index,
            self.keys.requeued(me),
        ]
        ms = int(self.lease_timeout * 1000)
        reply = await self.scripts["HEARTBEAT"](keys=keys, args=[me, ms, repr(time.time())])
        self.last_beat = time.monotonic()
        self._stale_noted = False
        return bool(reply[0]), [t.decode() if isinstance(t, bytes) else str(t) for t in reply[1:]]

    async def _run(self) -> None:
        """Background task: heartbeat, sweep dead consumers, reconcile lost fetch replies.

        After it could not reach Redis, a consumer waits ``lease_timeout`` before sweeping
        again: the others were probably cut off too, and their liveness keys may have
        expired meanwhile; they get that long to heartbeat before being declared dead.
        """
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        next_sweep = loop.time()
        delay = self.heartbeat_interval
        # After a failure, retry soon (at most every second), at a steady pace.
        soon = min(self.heartbeat_interval, 1.0)
        retry = Backoff(soon, 1.0, soon)
        failed = False
        while not self._stopping:
            await asyncio.sleep(delay)
            if self._stopping or (me is not None and me.cancelling()):
                return  # a cancellation that redis-py swallowed still means stop
            try:
                await self._tick()
                if failed:
                    failed, next_sweep = False, loop.time() + self.lease_timeout
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + self.sweep_interval
                    await self.sweep()
                if self.unsure:
                    await self.reconcile()
                delay = self.heartbeat_interval
            except Exception as exc:  # the heartbeat must outlive any bug: its death loses leases
                if me is not None and me.cancelling():
                    # redis-py can turn our cancellation into a connection error: stop anyway.
                    raise asyncio.CancelledError from exc
                failed, delay = True, retry.next()
                if isinstance(exc, TRANSIENT_ERRORS):
                    logger.warning("redis heartbeat failed (%s); retrying in %.1fs", exc, delay)
                else:
                    logger.exception("redis heartbeat: unexpected error; retrying in %.1fs", delay)

    async def _tick(self) -> None:
        """One heartbeat; says what happened when this consumer had to register again."""
        last = self.last_beat
        added, requeued = await self.beat()
        # Measured after the call: a heartbeat on a stalled connection (a partition, no
        # reset) can hang for the whole outage and complete once it heals.
        silent = time.monotonic() - last
        if not added:
            return
        if requeued:
            self.lost.update(requeued)
            logger.warning(
                "redis consumer %s was declared dead after %.1fs without a heartbeat (lease "
                "%.0fs): %d of its messages were requeued to other consumers; it will not "
                "run them",
                self.consumer_id,
                silent,
                self.lease_timeout,
                len(requeued),
            )
        else:
            logger.warning(
                "redis consumer %s registered again after %.1fs without a heartbeat (Redis "
                "restarted or lost its data); none of its messages were requeued",
                self.consumer_id,
                silent,
            )

    async def stop_heartbeat(self) -> None:
        """Stop the heartbeat task only (the lease then lapses after ``lease_timeout``)."""
        if self._task is not None:
            self._stopping = True
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=5.0)
            if not done:
                logger.warning("redis heartbeat task did not stop within 5 s; leaving it")
            self._task = None
            self._stopping = False

    async def stop(self) -> None:
        """Stop the heartbeat task; put every message this consumer holds back; unregister."""
        await self.stop_heartbeat()
        if not self.registered:
            return
        await self.restore(self.consumer_id, None, only_if_dead=False)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.live(self.consumer_id))
        pipe.srem(self.keys.consumers, self.consumer_id)
        await pipe.execute()
        self.registered = False

    async def sweep(self) -> int:
        """Requeue the leases of consumers whose liveness expired; one sweeper at a time."""
        lock_ms = max(int(self.sweep_interval * 1000), 100)
        if not await self.client.set(self.keys.sweep_lock, self.consumer_id, px=lock_ms, nx=True):
            return 0
        members = [m.decode() for m in await self.client.smembers(self.keys.consumers)]
        others = [m for m in members if m != self.consumer_id]
        if not others:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for member in others:
            pipe.exists(self.keys.live(member))
        alive = await pipe.execute()
        restored = 0
        for member, exists in zip(others, alive, strict=True):
            if not exists:
                count = await self.restore(member, None, only_if_dead=True)
                if count:
                    logger.warning("redis: requeued %d messages of dead consumer %s", count, member)
                restored += count
        return restored

    async def reconcile(self) -> None:
        """Requeue leases taken by fetch calls whose reply never arrived."""
        unsure = set(self.unsure)
        tags = [t.decode() for t in await self.client.hkeys(self.keys.lease(self.consumer_id))]
        lost = [t for t in tags if int(t.split(":")[1]) in unsure]
        if lost:
            logger.warning("redis: requeueing %d messages whose fetch reply was lost", len(lost))
            await self.restore(self.consumer_id, lost, only_if_dead=False)
        self.unsure -= unsure

    async def restore(self, owner: str, tags: Sequence[str] | None, only_if_dead: bool) -> int:
        """Put ``owner``'s leased messages (all when ``tags`` is None) back on their queues."""
        lease = self.keys.lease(owner)
        if tags is None:
            raw = await self.client.hgetall(lease)
            leased = {k.decode(): v.decode() for k, v in raw.items()}
        else:
            values = await self.client.hmget(lease, list(tags)) if tags else []
            leased = {t: v.decode() for t, v in zip(tags, values, strict=True) if v is not None}
        items = list(leased.items())
        restored = 0
        for start in range(0, max(len(items), 1), CHUNK):
            count = await self._restore_chunk(owner, items[start : start + CHUNK], only_if_dead)
            if count < 0:  # the owner came back to life: leave its leases alone
                return restored
            restored += count
        return restored

    async def _restore_chunk(
        self, owner: str, items: Sequence[tuple[str, str]], only_if_dead: bool
    ) -> int:
        """One atomic RESTORE call for a chunk of leased messages."""
        tags = [tag for tag, _ in items]
        entries = await self.client.hmget(self.keys.unacked, tags) if tags else []
        keys = [
            self.keys.unacked,
            self.keys.unacked_index,
            self.keys.lease(owner),
            self.keys.live(owner),
            self.keys.consumers,
            self.keys.requeued(owner),
        ]
        args: list[Any] = ["1" if only_if_dead else "0", owner, NOTIFY_CAP]
        for (tag, queue), entry in zip(items, entries, strict=True):
            payload, step = kombu.mark_redelivered(_unwrap(entry, queue) if entry else b"")
            keys += [self.keys.bucket(queue, step), self.keys.notify(queue)]
            args += [tag, entry or b"", payload]
        return int(await self.scripts["RESTORE"](keys=keys, args=args))


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

    async def drop(self, ids: Sequence[str]) -> int:
        """Delete these dead letters (one transaction); how many there were."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.keys.dead, *ids)
        pipe.hdel(self.keys.dead_messages, *ids)
        removed, _ = await pipe.execute()
        return int(removed)


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
