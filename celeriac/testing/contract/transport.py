"""The transport contract: one pytest suite every Transport implementation must pass.

Subclass :class:`TransportContract` in a test module and provide two fixtures:

``make_transport``
    A factory: ``await make_transport(**options)`` returns a *connected* transport on the
    same store as every other instance the factory made in this test (think: another
    worker process's view). ``options`` are ``broker_transport_options``. The fixture
    closes every instance it made when the test ends.
``transport``
    A connected transport on a store that is fresh and isolated for this test (usually
    ``await make_transport()``).

Only the public Transport interface is used, so any implementation can run the suite.
Queue names are unique per test anyway; timeouts are generous and no test asserts speed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from celeriac.protocol.envelope import Envelope
from celeriac.transport.base import Delivery, Outgoing, QueueSpec, Transport

__all__ = ["MakeTransport", "TransportContract"]

MakeTransport = Callable[..., Awaitable[Transport]]

# Short leases for the tests that need a lease to (not) expire.
SHORT_LEASE = {"lease_timeout": 1.0}
WAIT = 10.0  # generous upper bound for "it happens promptly"


def qname(tag: str) -> str:
    """A queue name unique to this test run."""
    return f"contract.{tag}.{uuid.uuid4().hex[:10]}"


def envelope(body: bytes = b"{}", **properties: Any) -> Envelope:
    """An envelope with a task-like header and the given AMQP properties."""
    return Envelope(body=body, headers={"id": uuid.uuid4().hex}, properties=properties)


def out(routing_key: str, body: bytes = b"{}", **kwargs: Any) -> Outgoing:
    """A message for the default exchange (so ``routing_key`` is the queue name)."""
    priority = kwargs.pop("priority", None)
    env = envelope(body) if priority is None else envelope(body, priority=priority)
    return Outgoing(env, routing_key=routing_key, **kwargs)


def bodies(deliveries: Sequence[Delivery]) -> list[bytes]:
    """The bodies of ``deliveries``, in order."""
    return [d.envelope.body for d in deliveries]


async def drain(t: Transport, queues: Sequence[str], count: int, limit: int = 10) -> list[Delivery]:
    """Fetch until ``count`` deliveries arrived or WAIT seconds passed (no ack)."""
    got: list[Delivery] = []
    deadline = time.monotonic() + WAIT
    while len(got) < count and time.monotonic() < deadline:
        got += await t.fetch(queues, limit=min(limit, count - len(got)), timeout=0.5)
    return got


class TransportContract:
    """Behaviour every transport shares; subclass it with the two fixtures above."""

    # --- publishing and routing -------------------------------------------------

    async def test_roundtrip_on_default_exchange_is_exact(self, transport: Transport) -> None:
        q = qname("roundtrip")
        sent = Envelope(
            body=b"\x00\x01binary\xff\xfe" + bytes(range(256)),
            headers={
                "task": "t.add",
                "id": "abc",
                "argsrepr": "(1, 2)",
                "nested": {"a": [1, None]},
            },
            content_type="application/x-msgpack",
            content_encoding="binary",
            properties={"correlation_id": "abc", "reply_to": "r.1", "delivery_mode": 2},
        )
        await transport.publish([Outgoing(sent, exchange="", routing_key=q)])
        [got] = await transport.fetch([q], limit=10, timeout=WAIT)
        assert got.envelope == sent
        assert (got.queue, got.exchange, got.routing_key) == (q, "", q)
        assert got.redelivered is False
        assert isinstance(got.tag, str) and got.tag
        await transport.ack([got])

    async def test_direct_exchange_routes_by_exact_key(self, transport: Transport) -> None:
        ex, qa, qb = qname("direct"), qname("a"), qname("b")
        await transport.declare(
            [QueueSpec(qa, ex, "direct", "key.a"), QueueSpec(qb, ex, "direct", "key.b")]
        )
        await transport.publish([Outgoing(envelope(b"A"), ex, "key.a")])
        await transport.publish([Outgoing(envelope(b"B"), ex, "key.b")])
        got_a = await transport.fetch([qa], limit=10, timeout=WAIT)
        got_b = await transport.fetch([qb], limit=10, timeout=WAIT)
        assert bodies(got_a) == [b"A"] and bodies(got_b) == [b"B"]
        assert (got_a[0].exchange, got_a[0].routing_key) == (ex, "key.a")

    async def test_topic_exchange_matches_amqp_wildcards(self, transport: Transport) -> None:
        ex, star, hash_, exact = qname("topic"), qname("star"), qname("hash"), qname("exact")
        await transport.declare(
            [
                QueueSpec(star, ex, "topic", "video.*"),
                QueueSpec(hash_, ex, "topic", "video.#"),
                QueueSpec(exact, ex, "topic", "video.compress"),
            ]
        )
        keys = ["video.compress", "video.compress.hd", "video", "audio.compress"]
        await transport.publish([Outgoing(envelope(k.encode()), ex, k) for k in keys])
        sizes = await transport.queue_sizes([star, hash_, exact])
        assert sizes == {star: 1, hash_: 3, exact: 1}
        assert bodies(await drain(transport, [hash_], 3)) == [
            b"video.compress",
            b"video.compress.hd",
            b"video",
        ]

    async def test_fanout_exchange_reaches_every_bound_queue(self, transport: Transport) -> None:
        ex, q1, q2 = qname("fanout"), qname("f1"), qname("f2")
        await transport.declare([QueueSpec(q1, ex, "fanout"), QueueSpec(q2, ex, "fanout", "x")])
        await transport.publish([Outgoing(envelope(b"all"), ex, "whatever")])
        assert await transport.queue_sizes([q1, q2]) == {q1: 1, q2: 1}
        assert bodies(await transport.fetch([q1], limit=5, timeout=WAIT)) == [b"all"]
        assert bodies(await transport.fetch([q2], limit=5, timeout=WAIT)) == [b"all"]

    async def test_headers_exchange_matches_all_or_any(self, transport: Transport) -> None:
        ex, q_all, q_any = qname("headers"), qname("all"), qname("any")
        specs = [
            QueueSpec(q_all, ex, "headers", queue_arguments={"x-match": "all", "a": 1, "b": 2}),
            QueueSpec(q_any, ex, "headers", queue_arguments={"x-match": "any", "a": 1, "b": 2}),
        ]
        messages = [
            Outgoing(Envelope(b"ab", {"a": 1, "b": 2}), ex, ""),
            Outgoing(Envelope(b"a", {"a": 1, "b": 3}), ex, ""),
            Outgoing(Envelope(b"none", {"c": 1}), ex, ""),
        ]
        try:
            await transport.declare(specs)
            await transport.publish(messages)
        except NotImplementedError as exc:
            pytest.skip(f"headers exchange not supported: {exc}")
        assert bodies(await drain(transport, [q_all], 1)) == [b"ab"]
        assert bodies(await drain(transport, [q_any], 2)) == [b"ab", b"a"]

    async def test_unroutable_message_is_dropped_with_a_warning(
        self, transport: Transport, caplog: pytest.LogCaptureFixture
    ) -> None:
        ex, q = qname("unroutable"), qname("bound")
        await transport.declare([QueueSpec(q, ex, "direct", "yes")])
        with caplog.at_level(logging.WARNING, logger="celeriac"):
            await transport.publish([Outgoing(envelope(b"lost"), ex, "no")])
            await transport.publish([Outgoing(envelope(b"lost"), qname("undeclared"), "yes")])
        assert await transport.queue_sizes([q]) == {q: 0}
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) >= 2

    async def test_declare_is_idempotent(self, transport: Transport) -> None:
        ex, q = qname("idem"), qname("q")
        spec = QueueSpec(q, ex, "direct", "k")
        await transport.declare([spec])
        await transport.declare([spec, spec])
        await transport.publish([Outgoing(envelope(b"once"), ex, "k")])
        assert await transport.queue_sizes([q]) == {q: 1}

    async def test_binding_is_visible_to_other_instances(
        self, transport: Transport, make_transport: MakeTransport
    ) -> None:
        ex, q = qname("shared-binding"), qname("q")
        await transport.declare([QueueSpec(q, ex, "topic", "jobs.#")])
        other = await make_transport()
        await other.publish([Outgoing(envelope(b"routed"), ex, "jobs.mail")])
        assert bodies(await transport.fetch([q], limit=5, timeout=WAIT)) == [b"routed"]

    async def test_batch_publish_keeps_fifo_order(self, transport: Transport) -> None:
        q = qname("fifo")
        await transport.publish([out(q, str(i).encode()) for i in range(20)])
        got = await drain(transport, [q], 20, limit=7)
        assert bodies(got) == [str(i).encode() for i in range(20)]

    async def test_higher_priority_first_then_fifo(self, transport: Transport) -> None:
        q = qname("prio")
        plan = [(0, b"low-1"), (9, b"high-1"), (5, b"mid"), (0, b"low-2"), (9, b"high-2")]
        await transport.publish([out(q, body, priority=p) for p, body in plan])
        got = await drain(transport, [q], 5, limit=5)
        assert bodies(got) == [b"high-1", b"high-2", b"mid", b"low-1", b"low-2"]
        assert [d.envelope.priority for d in got] == [9, 9, 5, 0, 0]

    # --- fetching ----------------------------------------------------------------

    async def test_fetch_respects_limit(self, transport: Transport) -> None:
        q = qname("limit")
        await transport.publish([out(q) for _ in range(5)])
        first = await transport.fetch([q], limit=3, timeout=WAIT)
        assert len(first) == 3
        assert len({d.tag for d in first}) == 3  # each delivery has its own tag
        assert len(await transport.fetch([q], limit=3, timeout=WAIT)) == 2

    async def test_fetch_waits_then_returns_empty(self, transport: Transport) -> None:
        q = qname("empty")
        start = time.monotonic()
        assert await transport.fetch([q], limit=1, timeout=0.3) == []
        assert time.monotonic() - start >= 0.2  # it did wait, roughly the timeout
        assert await transport.fetch([q], limit=1, timeout=0) == []

    async def test_fetch_ignores_unlisted_queues(self, transport: Transport) -> None:
        q, other = qname("listed"), qname("unlisted")
        await transport.publish([out(other, b"no")])
        assert await transport.fetch([q], limit=5, timeout=0.2) == []
        assert bodies(await transport.fetch([other, q], limit=5, timeout=WAIT)) == [b"no"]

    async def test_waiting_fetch_wakes_on_publish(self, transport: Transport) -> None:
        q = qname("wake")

        async def later() -> None:
            await asyncio.sleep(0.2)
            await transport.publish([out(q, b"hello")])

        task = asyncio.create_task(later())
        start = time.monotonic()
        got = await transport.fetch([q], limit=1, timeout=30)
        await task
        assert bodies(got) == [b"hello"]
        assert time.monotonic() - start < WAIT  # woken, not timed out

    async def test_waiting_fetch_wakes_on_publish_by_another_instance(
        self, transport: Transport, make_transport: MakeTransport
    ) -> None:
        q = qname("wake-other")
        client = await make_transport()

        async def later() -> None:
            await asyncio.sleep(0.2)
            await client.publish([out(q, b"from-client")])

        task = asyncio.create_task(later())
        start = time.monotonic()
        got = await transport.fetch([q], limit=1, timeout=30)
        await task
        assert bodies(got) == [b"from-client"]
        assert time.monotonic() - start < WAIT

    async def test_queues_are_served_fairly(self, transport: Transport) -> None:
        busy, quiet = qname("busy"), qname("quiet")
        await transport.publish([out(busy, b"busy") for _ in range(10)])
        await transport.publish([out(quiet, b"quiet") for _ in range(2)])
        one_at_a_time = [
            (await transport.fetch([busy, quiet], limit=1, timeout=WAIT))[0].queue for _ in range(2)
        ]
        assert set(one_at_a_time) == {busy, quiet}
        batch = await transport.fetch([busy, quiet], limit=4, timeout=WAIT)
        assert {d.queue for d in batch} == {busy, quiet}

    # --- delayed messages --------------------------------------------------------

    async def test_not_before_hides_message_until_due(self, transport: Transport) -> None:
        q = qname("eta")
        due = time.time() + 1.0
        await transport.publish([out(q, b"later", not_before=due)])
        asked_at = time.time()
        early = await transport.fetch([q], limit=1, timeout=0)
        if asked_at < due - 0.1:  # a slow publish on a loaded machine may already be past due
            assert early == []
        got = early or await transport.fetch([q], limit=1, timeout=WAIT)
        assert bodies(got) == [b"later"]
        assert time.time() >= due - 0.05  # never handed out early

    async def test_due_message_wakes_a_waiting_fetch(self, transport: Transport) -> None:
        q = qname("eta-wake")
        waiter = asyncio.create_task(transport.fetch([q], limit=1, timeout=30))
        await asyncio.sleep(0.1)
        await transport.publish([out(q, b"soon", not_before=time.time() + 0.3)])
        start = time.monotonic()
        got = await waiter
        assert bodies(got) == [b"soon"]
        assert time.monotonic() - start < WAIT

    async def test_far_future_message_is_counted_and_purgeable(self, transport: Transport) -> None:
        q = qname("eta-far")
        await transport.publish([out(q, not_before=time.time() + 3600)])
        assert await transport.fetch([q], limit=1, timeout=0.2) == []
        assert await transport.queue_sizes([q]) == {q: 1}
        assert await transport.purge([q]) == 1
        assert await transport.queue_sizes([q]) == {q: 0}

    async def test_many_delayed_messages_do_not_hide_ready_ones(self, transport: Transport) -> None:
        q = qname("eta-many")
        later = time.time() + 3600
        await transport.publish([out(q, b"wait", not_before=later) for _ in range(1000)])
        await transport.publish([out(q, b"now")])
        assert bodies(await transport.fetch([q], limit=10, timeout=WAIT)) == [b"now"]
        assert await transport.queue_sizes([q]) == {q: 1000}

    async def test_defer_hides_a_delivery_in_its_own_queue_once(
        self, transport: Transport, make_transport: MakeTransport
    ) -> None:
        # Two queues get a copy: deferring one copy must not route it again to both.
        ex, qa, qb = qname("defer-ex"), qname("defer-a"), qname("defer-b")
        await transport.declare(
            [QueueSpec(qa, ex, "direct", "k"), QueueSpec(qb, ex, "direct", "k")]
        )
        await transport.publish([Outgoing(envelope(b"eta"), ex, "k")])
        [got] = await transport.fetch([qa], limit=1, timeout=WAIT)
        due = time.time() + 1.5
        await transport.defer(got, due)
        assert await transport.queue_sizes([qa, qb]) == {qa: 1, qb: 1}
        await transport.close()  # nothing unacked left to put back: defer acked it
        other = await make_transport()
        asked_at = time.time()
        early = await other.fetch([qa], limit=5, timeout=0)
        if asked_at < due - 0.2:
            assert early == []
        later = early or await drain(other, [qa], 1)
        assert bodies(later) == [b"eta"]
        assert time.time() >= due - 0.05  # never handed out early
        assert await other.fetch([qa], limit=5, timeout=0.5) == []  # exactly one copy
        await other.ack(later)

    async def test_unbind_stops_routing_to_the_queue(self, transport: Transport) -> None:
        ex, kept, gone = qname("unbind-ex"), qname("kept"), qname("unbound")
        specs = [QueueSpec(kept, ex, "direct", "k"), QueueSpec(gone, ex, "direct", "k")]
        await transport.declare(specs)
        await transport.unbind([specs[1]])
        await transport.unbind([specs[1]])  # idempotent
        await transport.publish([Outgoing(envelope(b"after"), ex, "k")])
        assert await transport.queue_sizes([kept, gone]) == {kept: 1, gone: 0}

    # --- ack, reject, leases ------------------------------------------------------

    async def test_ack_removes_for_good(
        self, transport: Transport, make_transport: MakeTransport
    ) -> None:
        q = qname("ack")
        await transport.publish([out(q, str(i).encode()) for i in range(3)])
        got = await drain(transport, [q], 3)
        await transport.ack(got)  # one batch
        await transport.close()
        other = await make_transport()
        assert await other.fetch([q], limit=10, timeout=0.3) == []
        assert await other.queue_sizes([q]) == {q: 0}

    async def test_leased_message_is_invisible_to_others(
        self, transport: Transport, make_transport: MakeTransport
    ) -> None:
        q = qname("leased")
        await transport.publish([out(q)])
        assert len(await transport.fetch([q], limit=1, timeout=WAIT)) == 1
        other = await make_transport()
        assert await other.fetch([q], limit=1, timeout=0.3) == []
        assert await other.queue_sizes([q]) == {q: 0}

    async def test_reject_with_requeue_redelivers_at_once(
        self, transport: Transport, make_transport: MakeTransport
    ) -> None:
        q = qname("requeue")
        await transport.publish([out(q, b"again")])
        [first] = await transport.fetch([q], limit=1, timeout=WAIT)
        await transport.reject([first], requeue=True)
        other = await make_transport()
        [second] = await other.fetch([q], limit=1, timeout=WAIT)
        assert second.envelope == first.envelope
        assert second.redelivered is True
        await other.ack([second])
        assert await other.queue_sizes([q]) == {q: 0}

    async def test_reject_without_requeue_drops(self, transport: Transport) -> None:
        q = qname("drop")
        await transport.publish([out(q), out(q)])
        got = await drain(transport, [q], 2)
        await transport.reject(got, requeue=False)
        assert await transport.fetch([q], limit=5, timeout=0.3) == []
        assert await transport.queue_sizes([q]) == {q: 0}

    async def test_competing_consumers_never_share_a_message(
        self, transport: Transport, make_transport: MakeTransport
    ) -> None:
        q = qname("compete")
        await transport.publish([out(q, str(i).encode()) for i in range(60)])
        others = [await make_transport() for _ in range(2)]

        async def consume(t: Transport) -> list[bytes]:
            seen: list[bytes] = []
            while batch := await t.fetch([q], limit=7, timeout=0.5):
                seen += bodies(batch)
                await t.ack(batch)
            return seen

        results = await asyncio.gather(consume(transport), *(consume(t) for t in others))
        everything = [body for seen in results for body in seen]
        assert sorted(everything) == sorted(str(i).encode() for i in range(60))

    async def test_close_releases_unacked_deliveries(self, make_transport: MakeTransport) -> None:
        q = qname("close")
        first = await make_transport()
        await first.publish([out(q, b"a"), out(q, b"b")])
        got = await drain(first, [q], 2)
        await first.ack(got[:1])
        await first.close()
        second = await make_transport()
        back = await second.fetch([q], limit=5, timeout=WAIT)
        assert bodies(back) == [b"b"]
        assert back[0].redelivered is True

    async def test_live_consumer_keeps_its_lease(self, make_transport: MakeTransport) -> None:
        q = qname("live-lease")
        holder = await make_transport(**SHORT_LEASE)
        other = await make_transport(**SHORT_LEASE)
        await holder.publish([out(q, b"long task")])
        [held] = await holder.fetch([q], limit=1, timeout=WAIT)
        # Hold it for more than three lease timeouts while someone else keeps fetching.
        deadline = time.monotonic() + 3.5 * SHORT_LEASE["lease_timeout"]
        while time.monotonic() < deadline:
            assert await other.fetch([q], limit=1, timeout=0.5) == []
        await holder.ack([held])
        assert await other.queue_sizes([q]) == {q: 0}

    # --- dead letters -------------------------------------------------------------

    async def test_dead_letter_keeps_message_and_reason(self, transport: Transport) -> None:
        q = qname("dead")
        await transport.publish([out(q, b"poison")])
        [got] = await transport.fetch([q], limit=1, timeout=WAIT)
        before = time.time()
        await transport.dead_letter(got, "cannot decode")
        [dead] = await transport.list_dead()
        assert (dead.queue, dead.reason) == (q, "cannot decode")
        assert dead.envelope == got.envelope
        assert before - 5 <= dead.dead_at <= time.time() + 5
        assert await transport.fetch([q], limit=1, timeout=0.3) == []  # it was acked

    async def test_requeue_dead_by_id_and_all(self, transport: Transport) -> None:
        q = qname("dead-requeue")
        await transport.publish([out(q, str(i).encode()) for i in range(3)])
        for delivery in await drain(transport, [q], 3):
            await transport.dead_letter(delivery, f"reason {delivery.envelope.body!r}")
        dead = await transport.list_dead()
        assert [d.envelope.body for d in dead] == [b"0", b"1", b"2"]  # oldest first
        assert len(await transport.list_dead(limit=2)) == 2
        assert await transport.requeue_dead([dead[1].id]) == 1
        assert bodies(await transport.fetch([q], limit=5, timeout=WAIT)) == [b"1"]
        assert await transport.requeue_dead() == 2
        assert await transport.list_dead() == []
        assert sorted(bodies(await drain(transport, [q], 2))) == [b"0", b"2"]

    async def test_purge_dead_by_id_and_all(self, transport: Transport) -> None:
        q = qname("dead-purge")
        await transport.publish([out(q, str(i).encode()) for i in range(3)])
        for delivery in await drain(transport, [q], 3):
            await transport.dead_letter(delivery, "poison")
        dead = await transport.list_dead()
        assert await transport.purge_dead([dead[1].id, "no-such-letter"]) == 1
        assert [d.envelope.body for d in await transport.list_dead()] == [b"0", b"2"]
        assert await transport.purge_dead() == 2
        assert await transport.list_dead() == []
        assert await transport.purge_dead() == 0
        assert await transport.fetch([q], limit=5, timeout=0.3) == []  # deleted, not requeued

    async def test_dead_letters_listed_while_requeued_are_all_moved(
        self, transport: Transport
    ) -> None:
        # The dashboard lists the dead letters (its live refresh) while a button requeues
        # or purges one; a list in flight must not hide a letter from the action.
        q = qname("dead-concurrent")
        await transport.publish([out(q, str(i).encode()) for i in range(6)])
        for delivery in await drain(transport, [q], 6):
            await transport.dead_letter(delivery, "poison")
        dead = await transport.list_dead()
        for letter in dead[:3]:
            listing = [asyncio.ensure_future(transport.list_dead()) for _ in range(3)]
            assert await transport.requeue_dead([letter.id]) == 1
            await asyncio.gather(*listing)
        for letter in dead[3:]:
            listing = [asyncio.ensure_future(transport.list_dead()) for _ in range(3)]
            assert await transport.purge_dead([letter.id]) == 1
            await asyncio.gather(*listing)
        assert await transport.list_dead() == []
        assert sorted(bodies(await drain(transport, [q], 3))) == [b"0", b"1", b"2"]

    # --- purge, sizes, revokes ---------------------------------------------------

    async def test_purge_deletes_waiting_messages_only(self, transport: Transport) -> None:
        q, kept = qname("purge"), qname("kept")
        await transport.publish([out(q, b"leased")])
        [leased] = await transport.fetch([q], limit=1, timeout=WAIT)
        await transport.publish([out(q), out(q), out(q, not_before=time.time() + 3600)])
        await transport.publish([out(kept)])
        assert await transport.purge([q]) == 3
        assert await transport.queue_sizes([q, kept]) == {q: 0, kept: 1}
        await transport.reject([leased], requeue=True)  # the lease survived the purge
        assert bodies(await transport.fetch([q], limit=5, timeout=WAIT)) == [b"leased"]

    async def test_queue_sizes_count_waiting_messages(self, transport: Transport) -> None:
        q, empty = qname("sizes"), qname("never-used")
        await transport.publish([out(q) for _ in range(4)])
        await transport.publish([out(q, not_before=time.time() + 3600)])
        assert await transport.queue_sizes([q, empty]) == {q: 5, empty: 0}
        await transport.fetch([q], limit=2, timeout=WAIT)
        assert await transport.queue_sizes([q]) == {q: 3}

    async def test_revokes_are_shared_and_expire(
        self, transport: Transport, make_transport: MakeTransport
    ) -> None:
        keep, brief, old = (f"task-{uuid.uuid4().hex}" for _ in range(3))
        await transport.revoke([keep], expires=time.time() + 3600)
        await transport.revoke([brief], expires=time.time() + 0.5)
        await transport.revoke([old], expires=time.time() - 1)
        other = await make_transport()
        revoked = await other.revoked()
        assert {keep, brief} <= revoked and old not in revoked
        await asyncio.sleep(0.7)
        revoked = await other.revoked()
        assert keep in revoked and brief not in revoked
