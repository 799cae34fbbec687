"""The Redis transport: kombu's key layout on the wire, leases instead of visibility timeouts.

Wire compatibility (SPEC §3). Messages are kombu JSON envelopes (:mod:`celeriac.protocol.kombu`)
``LPUSH``ed onto ``<queue>`` or its priority buckets ``<queue>\\x06\\x16{3,6,9}`` and taken
from the right end (FIFO). The default exchange ``""`` routes to the list named by the routing
key; named exchanges are resolved through kombu's binding sets, fanout ones are also
``PUBLISH``ed on kombu's channel (:mod:`celeriac.engines.redis.publishing`, which also
stores published messages in one round trip).
Fetched messages are recorded in kombu's ``unacked`` hash (tag -> ``[envelope, "", queue]``,
which makes a kombu restore route it back to the queue it came from) and ``unacked_index``
zset, so a Celery worker sharing the database could restore them. Every key, channel included,
starts with the ``global_keyprefix`` option, as in kombu.

Priorities. The Transport interface uses AMQP numbering (9 before 0). Producers place a message
in the same bucket Celery would (largest step of 0/3/6/9 not above its priority), and this
consumer serves buckets 9, 6, 3, 0 in that order, so celeriac clients and workers agree with
the interface and Celery producers' messages land where Celery puts them. A *Celery* worker on
the same queue serves bucket 0 first (Redis' inverted order); for a mixed fleet set the option
``priority_order="lower_first"`` to make this consumer do the same.

Reliability. A Lua script pops up to ``limit`` messages and, in the same atomic step, records
each in ``unacked``/``unacked_index`` and in this consumer's lease hash
``celeriac:lease:<consumer id>`` (tag -> queue): a popped message is never only in client
memory. Heartbeats keep the leases of live consumers, which are never taken; those of a
consumer that stopped heartbeating go back to the consuming end of their lists with kombu's
redelivered flags (:mod:`celeriac.engines.redis.leases`, also the dead letters). ``close()``
puts back this instance's unacked messages at once. A fetch whose reply was lost (connection
drop, cancellation) is remembered and its leases are put back on the next round trip.

Waiting. celeriac producers push a token to ``celeriac:notify:<queue>`` in the same round
trip as the message. An idle consumer sends ``BLPOP`` on those keys pipelined with the fetch
script, so Redis runs the fetch the moment a token arrives and the message comes back in that
same round trip. Celery producers push no token, so the wait is capped at ``poll_interval``
(default 1 s). A consumer that fills its ``limit`` while messages remain pushes a token on,
waking the next waiting consumer; one that empties them deletes the tokens left, which would
only wake consumers for nothing. A fetch that follows one which came back short (the queues
were emptied) starts with that blocking step: a worker fed one task at a time spends no
round trip on a fetch that would find nothing.

Not-yet-due messages (``Outgoing.not_before``) go to ``celeriac:delayed:<queue>`` (score = due
time, member = priority step digit + envelope) and the index ``celeriac:delayed`` holds each
queue's earliest due time. Any consumer moves due messages to their lists with a Lua script
when the earliest due time (returned by every fetch) has passed; workers never hold them.
Clients set ``not_before`` only with the ``broker_delayed_delivery`` setting (all-celeriac
fleets: Celery workers never read this set); by default an ETA task goes on the list with its
``eta`` header, as Celery sends it, and the worker moves a far one
here with one Lua step (:meth:`~RedisTransport.defer`: unacked entry out, delayed member in).

Revokes: zset ``celeriac:revoked`` scored by expiry, pruned on read.

Bad input. Stored bytes that are not a kombu envelope are fetched like any message, as an
envelope with content type ``application/x-celeriac-invalid``, the bytes as body and a header
``x-celeriac-invalid`` with the reason, so the worker dead-letters them (nothing lost, no loop).

Connections: see :mod:`celeriac.engines.redis.connection` for URL forms and options.
Transient errors are retried with the engine's retry policy (``max_retries``,
``retry_backoff_max``); publish, ack and the other calls then raise :class:`ConnectionError`.
``fetch`` never raises for a lost connection: it logs, backs off and keeps trying, returning
an empty list at its timeout.

Other options: ``lease_timeout`` (30 s), ``heartbeat_interval`` (lease_timeout / 3),
``sweep_interval`` (heartbeat_interval), ``poll_interval`` (1 s), ``priority_order``
(``higher_first``), ``fanout_exchanges``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar, cast

from celeriac.engines.redis import scripts as lua
from celeriac.engines.redis.connection import (
    TRANSIENT_ERRORS,
    connect_redis,
    pack,
    parse_redis_url,
    release,
    retried,
    retry_policy,
)
from celeriac.engines.redis.leases import CHUNK, DeadLetters, Leases, by_owner, owner_of
from celeriac.engines.redis.publishing import (
    PUSH_LIMIT,
    AsyncPusher,
    Router,
    push_commands,
    push_of,
)
from celeriac.engines.redis.replication import NotReplicated, replicas_from
from celeriac.engines.redis.scripts import NOTIFY_CAP, RedisKeys
from celeriac.exceptions import ImproperlyConfigured, MissingDependency
from celeriac.masking import mask_url
from celeriac.protocol import kombu
from celeriac.retry import RetryPolicy
from celeriac.transport.base import DeadLetter, Delivery, Outgoing, QueueSpec, Rotation

try:
    from redis import exceptions as redis_errors
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis transport: pip install 'celeriac[redis]'") from exc

__all__ = ["RedisTransport"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_FETCH = 1000
MOVE_BATCH = 1000
BLPOP_RESOLUTION = 0.1
_FETCH_SHA = hashlib.sha1(lua.FETCH.encode()).hexdigest()


class RedisTransport:
    """A Transport over Redis lists, wire-compatible with kombu (see the module docstring)."""

    def __init__(self, url: str, *, options: Mapping[str, Any] | None = None) -> None:
        opts = dict(options or {})
        self.url = url
        self._settings = parse_redis_url(url, opts)
        self.keys = RedisKeys(self._settings.key_prefix)
        self.lease_timeout = float(opts.get("lease_timeout", 30.0))
        self.heartbeat_interval = float(opts.get("heartbeat_interval") or self.lease_timeout / 3)
        self.sweep_interval = float(opts.get("sweep_interval") or self.heartbeat_interval)
        self.poll_interval = float(opts.get("poll_interval", 1.0))
        order = opts.get("priority_order", "higher_first")
        if order not in ("higher_first", "lower_first"):
            raise ImproperlyConfigured(f"priority_order: higher_first or lower_first, not {order}")
        self._steps = (9, 6, 3, 0) if order == "higher_first" else (0, 3, 6, 9)
        self.retry = retry_policy(opts)
        self.replicas = replicas_from(opts)
        """``min_replicas``: how many replicas must have each publish and ack (None: off)."""
        if self.replicas is not None and self._settings.cluster:
            raise ImproperlyConfigured(
                "min_replicas is not supported on Redis Cluster (WAIT has no key to route by)"
            )
        self._fence = self.keys.prefix + "celeriac:replicated"
        self.connect_retry = RetryPolicy.from_options(opts, default=self.retry, prefix="connect_")
        """The first connection's policy (``broker_connection_retry_on_startup``)."""
        self.consumer_id = uuid.uuid4().hex
        self._client: Redis[bytes] | None = None
        self._leases: Leases | None = None
        self._dead: DeadLetters | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._pusher: AsyncPusher | None = None
        # Celery's broadcast exchanges are fanout on Redis even when nobody declared them here.
        fanout = opts.get("fanout_exchanges", ("celery.pidbox", "celeryev"))
        self.router = Router(self.keys, self._settings.db, fanout)
        self._seq = 0
        self._rotation = Rotation()
        self._next_due: float | None = None
        self._fetch_backoff = self.retry.backoff()
        self._fetch_failing = False
        self._drained: tuple[str, ...] | None = None
        """The queues of the last fetch, if it came back with fewer messages than it asked
        for (None otherwise)."""

    # -- connection -----------------------------------------------------------------------

    @property
    def client(self) -> Redis[bytes]:
        """The connected client; raises if :meth:`connect` was not awaited."""
        return _connected(self._client)

    @property
    def leases(self) -> Leases:
        """This consumer's lease keeper (exists once connected)."""
        return _connected(self._leases)

    async def connect(self) -> None:
        """Create the connection pool and check that Redis answers (retrying)."""
        if self._client is not None:
            return
        client = connect_redis(self._settings)
        self._scripts = {name: client.register_script(src) for name, src in lua.SCRIPTS.items()}
        try:
            await retried(
                self.connect_retry, TRANSIENT_ERRORS, "redis connect", client.ping, url=self.url
            )
        except BaseException:
            await release(client)
            raise
        self._client = client
        if not self._settings.cluster:  # the pusher writes to one server's connections
            self._pusher = AsyncPusher(
                client.connection_pool,
                self._settings.max_connections,
                self._settings.pool_timeout,
                self._settings.connection.get("socket_timeout"),
            )
        self._leases = Leases(
            client,
            self.keys,
            self._scripts,
            consumer_id=self.consumer_id,
            lease_timeout=self.lease_timeout,
            heartbeat_interval=self.heartbeat_interval,
            sweep_interval=self.sweep_interval,
        )
        self._dead = DeadLetters(client, self.keys, self._scripts)

    async def reclaim(self, consumer_id: str) -> int:
        """Requeue, as redelivered, what consumer ``consumer_id`` (known dead) leased."""
        await self.connect()
        assert self._leases is not None
        return await self._leases.restore(consumer_id, None, only_if_dead=False)

    async def close(self) -> None:
        """Stop heartbeats, put this consumer's unacked messages back, release connections."""
        client, leases = self._client, self._leases
        if client is None or leases is None:
            return
        try:
            await leases.stop()
        except TRANSIENT_ERRORS as exc:
            logger.warning(
                "redis close: cannot requeue unacked messages now (%s); the sweep will "
                "requeue them %.0fs after the last heartbeat",
                exc,
                self.lease_timeout,
            )
        pusher = self._pusher
        self._client, self._leases, self._dead, self._pusher = None, None, None, None
        if pusher is not None:
            await pusher.close()
        await release(client)

    def _retry(self, what: str, op: Callable[[], Awaitable[T]]) -> Coroutine[Any, Any, T]:
        """Run ``op``, retrying transient errors with backoff; then raise ConnectionError."""
        return retried(self.retry, TRANSIENT_ERRORS, f"redis {what}", op, url=self.url)

    # -- declare and publish --------------------------------------------------------------

    async def declare(self, queues: Sequence[QueueSpec]) -> None:
        """Record bindings as kombu does (see :mod:`celeriac.engines.redis.publishing`)."""

        async def op() -> None:
            pipe = self.client.pipeline(transaction=False)
            self.router.declare(pipe, queues)
            await pipe.execute()

        if queues:
            await self._retry("declare", op)

    async def unbind(self, queues: Sequence[QueueSpec]) -> None:
        """Remove the bindings kombu's way (``SREM``), and the lists of auto-delete queues."""

        async def op() -> None:
            pipe = self.client.pipeline(transaction=True)
            self.router.unbind(pipe, queues)
            await pipe.execute()

        if queues:
            await self._retry("unbind", op)

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Route and store ``messages``: usually one round trip (plus one for bindings)."""
        if messages:
            await self._retry("publish", lambda: self._publish_once(messages))
            await self._replicated("publish")

    async def _publish_once(self, messages: Sequence[Outgoing]) -> None:
        routes = await self.router.load(self.client, messages)
        batch = self.router.batch(messages, routes, delayed=True, poll_interval=self.poll_interval)
        if batch.plain and self._pusher is not None:
            await self._pusher.push(push_of(self.keys, batch.pushes, batch.wake))  # atomic
            return
        pipe = self.client.pipeline(transaction=True)  # all or nothing, for retries
        for start in range(0, len(batch.pushes), PUSH_LIMIT):
            self._push(pipe, batch.pushes[start : start + PUSH_LIMIT], {})
        for queue, items in batch.delayed.items():
            await self._schedule(pipe, queue, items)
        for channel, payload in batch.broadcasts:
            pipe.publish(channel, payload)
        self._push(pipe, [], batch.wake)
        await pipe.execute()

    def _push(self, pipe: Any, pushes: list[tuple[str, bytes]], wake: dict[str, int]) -> None:
        """Queue on a pipeline the commands storing messages, then wake-up tokens."""
        for command in push_commands(self.keys, pushes, wake)[0]:
            pipe.execute_command(*command)

    async def _schedule(self, pipe: Any, queue: str, items: list[tuple[str, bytes]]) -> None:
        """Queue SCHEDULE calls (in chunks) storing not-yet-due messages of ``queue``."""
        keys = [self.keys.delayed(queue), self.keys.delayed_index]
        for start in range(0, len(items), CHUNK):
            args: list[Any] = [queue]
            for score, member in items[start : start + CHUNK]:
                args += [score, member]
            await self._scripts["SCHEDULE"](keys=keys, args=args, client=pipe)

    # -- consume --------------------------------------------------------------------------

    async def fetch(self, queues: Sequence[str], *, limit: int, timeout: float) -> list[Delivery]:
        """Lease up to ``limit`` due messages, waiting up to ``timeout`` s for the first one.

        Never raises for a lost connection: it logs, backs off and retries until ``timeout``.
        """
        if not queues or limit <= 0:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        limit = min(limit, MAX_FETCH)
        block = 0.0
        if self._drained == tuple(queues) and timeout >= BLPOP_RESOLUTION:
            # The last fetch emptied the queues, and what is published next comes with a
            # wake-up token: wait for it at once instead of first spending a round trip
            # on a fetch that finds nothing (a worker fed one task at a time would pay it
            # on every task). A message Celery pushed meanwhile waits for poll_interval at
            # most, as it would have if it had arrived a moment later.
            block = max(await self._block_time(timeout), 0.0)
        while True:
            try:
                deliveries = await self._fetch_step(queues, limit, block)
                if deliveries:
                    self._drained = tuple(queues) if len(deliveries) < limit else None
                    return deliveries
                block = await self._block_time(deadline - loop.time())
                if block < 0:
                    self._drained = tuple(queues)
                    return []
            except TRANSIENT_ERRORS as exc:
                block = 0.0
                self._fetch_failing = True
                delay = self._fetch_backoff.next()
                logger.warning("redis fetch failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(min(delay, max(deadline - loop.time(), 0.05)))
                if loop.time() >= deadline:
                    return []

    async def _block_time(self, remaining: float) -> float:
        """How long the next fetch may block in Redis: 0 = fetch now, < 0 = give up."""
        if self._next_due is not None and self._next_due <= time.time():
            return 0.0
        if remaining <= 0:
            return -1.0
        wait = min(remaining, self.poll_interval)
        if self._next_due is not None:
            wait = min(wait, self._next_due - time.time())
        if wait < BLPOP_RESOLUTION:
            # Redis times out blocked clients on its ``hz`` tick (100 ms by default): a short
            # BLPOP would overshoot, so a due time or deadline this close is slept here.
            await asyncio.sleep(max(wait, 0.0))
            return 0.0
        return wait

    async def _fetch_step(self, queues: Sequence[str], limit: int, block: float) -> list[Delivery]:
        """Register, move due delayed messages, lease what is there, reconcile lost replies."""
        leases = self.leases
        await leases.ensure_registered()
        if self._next_due is not None and self._next_due <= time.time():
            await self._move_due()
        try:
            deliveries = await self._fetch_once(queues, limit, block)
        except redis_errors.NoScriptError:  # the server restarted empty: load and go on
            await self._load_scripts()
            deliveries = await self._fetch_once(queues, limit, 0.0)
        if self._fetch_failing:
            logger.warning("redis fetch: connection restored")
            self._fetch_failing = False
            self._fetch_backoff.reset()
        if leases.unsure:
            await leases.reconcile()
        return deliveries

    async def _fetch_once(self, queues: Sequence[str], limit: int, block: float) -> list[Delivery]:
        """Pop and lease up to ``limit`` messages atomically (the FETCH script).

        With ``block`` > 0 the script is pipelined after a ``BLPOP`` on the wake-up tokens:
        Redis runs it the moment a token arrives (or at the timeout), saving a round trip.
        """
        order = self._rotation.order(queues)
        self._seq += 1
        seq = self._seq
        keys = [
            self.keys.unacked,
            self.keys.unacked_index,
            self.keys.lease(self.consumer_id),
            self.keys.delayed_index,
        ]
        keys += [self.keys.bucket(q, step) for step in self._steps for q in order]
        keys += [self.keys.notify(q) for q in order]
        args: list[Any] = [repr(time.time()), limit, f"{self.consumer_id}:{seq}:"]
        args += [len(order), NOTIFY_CAP, *order, *(json.dumps(q) for q in order)]
        try:
            reply = await self._fetch_reply(order, keys, args, block)
        except redis_errors.NoScriptError:
            raise  # the script did not run: nothing was leased
        except BaseException:
            # The script may have run although its reply was lost: reconcile later.
            self.leases.unsure.add(seq)
            raise
        self._next_due = float(reply[0]) if reply[0] else None
        return [
            _delivery(order[int(reply[i]) - 1], reply[i + 1].decode(), reply[i + 2])
            for i in range(1, len(reply), 3)
        ]

    async def _fetch_reply(
        self, order: Sequence[str], keys: list[str], args: list[Any], block: float
    ) -> Any:
        """The FETCH script's reply, after a ``BLPOP`` of up to ``block`` s if positive."""
        notify = [self.keys.notify(q) for q in order]
        pusher = self._pusher
        if pusher is None:  # Redis Cluster: redis-py routes the commands
            if block <= 0:
                return await self._scripts["FETCH"](keys=keys, args=args)
            pipe = cast(Any, self.client.pipeline(transaction=False))
            pipe.execute_command("BLPOP", *notify, round(block, 3))
            pipe.evalsha(_FETCH_SHA, len(keys), *keys, *args)
            return (await pipe.execute())[1]
        data = pack("EVALSHA", _FETCH_SHA, len(keys), *keys, *args)
        if block > 0:
            data = pack("BLPOP", *notify, str(round(block, 3))) + data
        replies = await pusher.call(data, 2 if block > 0 else 1, blocks=max(block, 0.0))
        return _checked(replies)[-1]

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run script ``name`` in one round trip (loading it first if the server lost it)."""
        script, pusher = self._scripts[name], self._pusher
        if pusher is not None:
            sha = cast(Any, script).sha  # (redis-py's stubs do not declare it)
            [reply] = await pusher.call(pack("EVALSHA", sha, len(keys), *keys, *args), 1)
            if not isinstance(reply, redis_errors.NoScriptError):
                return _checked([reply])[0]
        return await script(keys=keys, args=args)  # (redis-py loads a missing script)

    async def _load_scripts(self) -> None:
        """Load every script (after a server restart emptied its script cache)."""
        for source in lua.SCRIPTS.values():
            await cast(Any, self.client).script_load(source)

    async def _move_due(self) -> None:
        """Move due delayed messages (of every queue) onto their lists."""
        args: list[Any] = [repr(time.time()), MOVE_BATCH, self.keys.prefix, kombu.SEP, NOTIFY_CAP]
        moved, nxt = await self._scripts["MOVE_DUE"](keys=[self.keys.delayed_index], args=args)
        self._next_due = float(nxt) if nxt else None
        if moved:
            logger.debug("redis: moved %d due delayed messages", moved)

    def holds(self, delivery: Delivery) -> bool | None:
        """Whether this consumer's lease on ``delivery`` still holds (True), was taken over by
        a sweep (False), or may have been (None: no heartbeat for most of a lease). A worker
        starts a task only while it holds its message (:class:`~celeriac.transport.LeaseHolder`)."""
        leases = self._leases
        return True if leases is None else leases.holds(delivery.tag)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Forget finished deliveries: one MULTI removing them from unacked and the lease."""
        leases = self._leases
        if leases is not None and leases.lost:  # taken over: the ack is a no-op, forget them
            leases.lost.difference_update(d.tag for d in deliveries)
        if deliveries:
            await self._retry("ack", lambda: self._drop(deliveries))
            await self._replicated("ack")

    async def _replicated(self, what: str) -> None:
        """With ``min_replicas``: wait until enough replicas have what was just written
        (:mod:`celeriac.engines.redis.replication`), else raise NotReplicated.

        Not retried: a retry after a reconnect could ask a newly promoted master, whose
        replicas say nothing of a write made on the old one. The caller is told instead
        (a publisher's retry policy publishes again; a failed ack is redelivered)."""
        replicas = self.replicas
        if replicas is None:
            return
        try:
            await replicas.confirm(self.client, self._fence, f"redis {what}")
        except NotReplicated:
            raise
        except TRANSIENT_ERRORS as exc:
            raise NotReplicated(
                f"redis {what}: could not confirm min_replicas={replicas.need} at "
                f"{mask_url(self.url)}: {exc}"
            ) from exc

    async def _drop(self, deliveries: Sequence[Delivery]) -> None:
        """One ACK script call: unacked entries, index scores and lease records go."""
        owners = by_owner([d.tag for d in deliveries])
        keys = [self.keys.unacked, self.keys.unacked_index]
        args: list[Any] = []
        for number, (owner, tags) in enumerate(owners.items(), start=1):
            keys.append(self.keys.lease(owner))
            for tag in tags:
                args += [number, tag]
        await self._script("ACK", keys, args)

    async def reject(self, deliveries: Sequence[Delivery], *, requeue: bool) -> None:
        """Drop deliveries, or put them back first in line with kombu's redelivered flags."""
        if not deliveries:
            return
        leases = self._leases
        if leases is not None and leases.lost:  # taken over: nothing of ours to put back
            leases.lost.difference_update(d.tag for d in deliveries)
        if not requeue:
            await self._retry("reject", lambda: self._drop(deliveries))
            return
        for owner, tags in by_owner([d.tag for d in deliveries]).items():
            restore = functools.partial(self.leases.restore, owner, tags, only_if_dead=False)
            await self._retry("requeue", restore)

    async def defer(self, delivery: Delivery, not_before: float) -> None:
        """Move a leased delivery to its queue's delayed set and ack it (the DEFER script)."""
        keys = [
            self.keys.unacked,
            self.keys.unacked_index,
            self.keys.lease(owner_of(delivery.tag)),
            self.keys.delayed(delivery.queue),
            self.keys.delayed_index,
        ]
        suffix = ',"",' + json.dumps(delivery.queue) + "]"
        step = str(kombu.bucket_of(delivery.envelope.priority))
        args = [delivery.tag, repr(float(not_before)), delivery.queue, suffix, step]

        async def op() -> None:
            moved = await self._scripts["DEFER"](keys=keys, args=args)
            if not moved:
                logger.warning("defer: delivery %s is no longer leased here", delivery.tag)

        await self._retry("defer", op)
        if self._next_due is None or not_before < self._next_due:
            self._next_due = not_before

    # -- dead letters, purge, sizes, revokes ------------------------------------------------

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Set the delivery aside (stored bytes kept exactly) with ``reason``; acks it."""
        dead = _connected(self._dead)
        await self._retry("dead_letter", lambda: dead.add(delivery, reason))

    async def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        """The dead letters, oldest first."""
        dead = _connected(self._dead)
        return await self._retry("list_dead", lambda: dead.oldest(limit)) if limit > 0 else []

    async def requeue_dead(self, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all when ``ids`` is None) back on their queues."""
        dead = _connected(self._dead)
        wanted = list(ids) if ids is not None else await self._retry("dead", dead.all_ids)
        moved = 0
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            moved += await self._retry("requeue_dead", functools.partial(dead.requeue, chunk))
        return moved

    async def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (all when ``ids`` is None) for good; return how many."""
        dead = _connected(self._dead)
        wanted = list(ids) if ids is not None else await self._retry("dead", dead.all_ids)
        dropped = 0
        for start in range(0, len(wanted), CHUNK):
            chunk = list(dict.fromkeys(wanted[start : start + CHUNK]))
            dropped += await self._retry("purge_dead", functools.partial(dead.drop, chunk))
        return dropped

    async def purge(self, queues: Sequence[str]) -> int:
        """Delete waiting messages (due or not) of ``queues``; return how many there were."""

        async def op() -> int:
            pipe = self.client.pipeline(transaction=True)
            for queue in queues:
                for key in self.keys.buckets(queue):
                    pipe.llen(key)
                pipe.zcard(self.keys.delayed(queue))
                pipe.delete(*self.keys.buckets(queue), self.keys.delayed(queue))
                pipe.zrem(self.keys.delayed_index, queue)
            replies = await pipe.execute()
            per_queue = len(kombu.PRIORITY_STEPS) + 3
            return sum(
                sum(replies[i : i + per_queue - 2]) for i in range(0, len(replies), per_queue)
            )

        return await self._retry("purge", op) if queues else 0

    async def queue_sizes(self, queues: Sequence[str]) -> dict[str, int]:
        """Waiting messages (due or not) per queue: the four lists plus the delayed set."""

        async def op() -> dict[str, int]:
            pipe = self.client.pipeline(transaction=False)
            for queue in queues:
                for key in self.keys.buckets(queue):
                    pipe.llen(key)
                pipe.zcard(self.keys.delayed(queue))
            replies = await pipe.execute()
            width = len(kombu.PRIORITY_STEPS) + 1
            return {q: sum(replies[i * width : (i + 1) * width]) for i, q in enumerate(queues)}

        return await self._retry("queue_sizes", op) if queues else {}

    async def revoke(self, task_ids: Sequence[str], *, expires: float) -> None:
        """Persist revoked ids in ``celeriac:revoked`` until ``expires``."""
        if task_ids:
            mapping: dict[str | bytes, Any] = dict.fromkeys(task_ids, expires)
            await self._retry("revoke", lambda: self.client.zadd(self.keys.revoked, mapping))

    async def revoked(self) -> set[str]:
        """Currently revoked ids (expired ones are pruned on the way)."""

        async def op() -> set[str]:
            pipe = self.client.pipeline(transaction=True)
            pipe.zremrangebyscore(self.keys.revoked, "-inf", repr(time.time()))
            pipe.zrange(self.keys.revoked, 0, -1)
            _, ids = await pipe.execute()
            return {i.decode() for i in ids}

        return await self._retry("revoked", op)


def _delivery(queue: str, tag: str, raw: bytes) -> Delivery:
    """A Delivery from one fetched message (undecodable bytes give an invalid envelope)."""
    message = kombu.decode(raw)
    return Delivery(
        envelope=message.envelope,
        queue=queue,
        tag=tag,
        exchange=message.exchange,
        routing_key=message.routing_key,
        redelivered=message.redelivered,
    )


def _checked(replies: list[Any]) -> list[Any]:
    """``replies``, unless one is an error reply: then that error is raised."""
    for reply in replies:
        if isinstance(reply, redis_errors.ResponseError):
            raise reply
    return replies


def _connected(part: T | None) -> T:
    """``part`` of a connected transport; raises if :meth:`RedisTransport.connect` was not
    awaited."""
    if part is None:
        raise RuntimeError("RedisTransport used before connect()")
    return part
