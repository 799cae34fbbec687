"""The result backend contract: one pytest suite every ResultBackend must pass.

Subclass :class:`BackendContract` in a test module (named ``Test...``) and provide two
fixtures, as methods or module-level:

* ``backend``: a connected instance, isolated per test (own key prefix, db or file),
  built with the JSON serializer and ``expires=3600``;
* ``make_backend``: an async factory, ``await make_backend(expires=...)``, returning
  another connected instance on the SAME store as ``backend`` (closed by the fixture).

Only the ResultBackend interface is used, so any engine can run the suite.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable
from typing import Any, Protocol

from celeriac import states
from celeriac.backends.base import ChordPart, Meta, ResultBackend

__all__ = ["BackendContract", "BackendFactory", "make_meta"]

# Generous bound for "it woke up promptly" (the wait timeouts used are much longer).
PROMPT = 5.0


class BackendFactory(Protocol):
    """The ``make_backend`` fixture: another connected instance on the same store."""

    def __call__(self, *, expires: float | None) -> Awaitable[ResultBackend]:
        """Create and connect an instance with this ``result_expires``."""


def _tid() -> str:
    """A fresh task id."""
    return str(uuid.uuid4())


def make_meta(task_id: str, status: str = states.SUCCESS, result: Any = 42, **extra: Any) -> Meta:
    """A result document shaped as Celery writes it (SPEC §5.1)."""
    ready = status in states.READY_STATES
    meta: Meta = {
        "status": status,
        "result": result,
        "traceback": None,
        "children": [],
        "date_done": dt.datetime.now(dt.UTC).isoformat() if ready else None,
    }
    meta.update(extra)
    meta["task_id"] = task_id
    return meta


async def _store_later(backend: ResultBackend, delay: float, items: list[tuple[str, Meta]]) -> None:
    """Store ``items`` after ``delay`` seconds."""
    await asyncio.sleep(delay)
    await backend.store(items)


def _as_tuples(parts: list[ChordPart] | None) -> list[tuple[Any, ...]] | None:
    """Normalise returned chord parts for comparison."""
    return None if parts is None else [tuple(part) for part in parts]


class BackendContract:
    """Behaviour every ResultBackend must have; test modules subclass this."""

    # -- documents ----------------------------------------------------------------

    async def test_implements_interface(self, backend: ResultBackend) -> None:
        """The instance satisfies the ResultBackend protocol and knows its URL."""
        assert isinstance(backend, ResultBackend)
        assert isinstance(backend.url, str) and backend.url
        await backend.connect()  # idempotent
        assert await backend.get([_tid()]) == [None]

    async def test_get_unknown_is_none(self, backend: ResultBackend) -> None:
        """Nothing stored means None (PENDING); an empty request gives an empty list."""
        assert await backend.get([_tid(), _tid()]) == [None, None]
        assert await backend.get([]) == []

    async def test_store_get_roundtrip(self, backend: ResultBackend) -> None:
        """Documents come back equal, tagged types (datetime, UUID) included."""
        tid, parent = _tid(), _tid()
        meta = make_meta(
            tid,
            result={"when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "id": uuid.uuid4()},
            children=[[[_tid(), None], None]],
            group_id=_tid(),
            parent_id=parent,
            name="proj.tasks.add",
            args=[1, 2],
            kwargs={"x": "é"},
            worker="celery@host",
            retries=0,
            queue="celery",
        )
        await backend.store([(tid, meta)])
        assert await backend.get([tid]) == [meta]

    async def test_failure_document_roundtrip(self, backend: ResultBackend) -> None:
        """FAILURE documents keep the exception dict and traceback text."""
        tid = _tid()
        exc = {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}
        meta = make_meta(tid, states.FAILURE, exc, traceback="Traceback (most recent call last)")
        await backend.store([(tid, meta)])
        assert await backend.get([tid]) == [meta]

    async def test_get_aligned_with_ids(self, backend: ResultBackend) -> None:
        """get() answers in request order, None for unknown ids, repeats allowed."""
        a, b, unknown = _tid(), _tid(), _tid()
        await backend.store([(a, make_meta(a, result="a")), (b, make_meta(b, result="b"))])
        got = await backend.get([b, unknown, a, b])
        assert [None if doc is None else doc["result"] for doc in got] == ["b", None, "a", "b"]

    async def test_batch_store_later_writes_win(self, backend: ResultBackend) -> None:
        """Within one batch and across batches, the last write for an id wins."""
        tid = _tid()
        await backend.store(
            [(tid, make_meta(tid, states.STARTED, None)), (tid, make_meta(tid, result=1))]
        )
        doc = (await backend.get([tid]))[0]
        assert doc is not None and doc["status"] == states.SUCCESS and doc["result"] == 1
        await backend.store([(tid, make_meta(tid, states.FAILURE, "later"))])
        doc = (await backend.get([tid]))[0]
        assert doc is not None and doc["status"] == states.FAILURE and doc["result"] == "later"

    async def test_store_many(self, backend: ResultBackend) -> None:
        """A large batch is stored completely."""
        items = [
            (tid, make_meta(tid, result=i)) for i, tid in enumerate(_tid() for _ in range(300))
        ]
        await backend.store(items)
        got = await backend.get([tid for tid, _ in items])
        assert [doc and doc["result"] for doc in got] == list(range(300))
        await backend.store([])  # an empty batch is a no-op

    async def test_forget(self, backend: ResultBackend) -> None:
        """forget() deletes only the given documents."""
        a, b = _tid(), _tid()
        await backend.store([(a, make_meta(a)), (b, make_meta(b))])
        await backend.forget([a, _tid()])
        got = await backend.get([a, b])
        assert got[0] is None and got[1] is not None

    async def test_instances_share_store(
        self, backend: ResultBackend, make_backend: BackendFactory
    ) -> None:
        """Another instance on the same store reads, overwrites and forgets the same data."""
        other = await make_backend(expires=3600)
        tid = _tid()
        await backend.store([(tid, make_meta(tid, states.STARTED, None))])
        assert (await other.get([tid]))[0] == (await backend.get([tid]))[0]
        await other.store([(tid, make_meta(tid, result="done"))])
        doc = (await backend.get([tid]))[0]
        assert doc is not None and doc["result"] == "done"
        await other.forget([tid])
        assert await backend.get([tid]) == [None]

    # -- wait ---------------------------------------------------------------------

    async def test_wait_ready_returns_at_once(self, backend: ResultBackend) -> None:
        """An already ready document is returned without waiting."""
        tid = _tid()
        meta = make_meta(tid, states.REVOKED, None)
        await backend.store([(tid, meta)])
        started = time.monotonic()
        assert await backend.wait(tid, 30) == meta
        assert time.monotonic() - started < PROMPT

    async def test_wait_timeout_returns_latest(self, backend: ResultBackend) -> None:
        """At timeout, wait() gives the latest (unready) document, or None."""
        tid = _tid()
        started = make_meta(tid, states.STARTED, {"pid": 1, "hostname": "w@h"})
        await backend.store([(tid, started)])
        assert await backend.wait(tid, 0.1) == started
        assert await backend.wait(_tid(), 0.1) is None
        assert await backend.wait(tid, 0) == started

    async def test_wait_wakes_on_store(self, backend: ResultBackend) -> None:
        """A waiter wakes soon after a ready document is stored by the same instance."""
        tid = _tid()
        meta = make_meta(tid, result="woken")
        writer = asyncio.create_task(_store_later(backend, 0.05, [(tid, meta)]))
        started = time.monotonic()
        assert await backend.wait(tid, 30) == meta
        assert time.monotonic() - started < PROMPT
        await writer

    async def test_wait_wakes_on_other_instance_store(
        self, backend: ResultBackend, make_backend: BackendFactory
    ) -> None:
        """A waiter wakes soon after another instance stores a ready document."""
        other = await make_backend(expires=3600)
        tid = _tid()
        meta = make_meta(tid, states.FAILURE, {"exc_type": "KeyError", "exc_message": ["k"]})
        writer = asyncio.create_task(_store_later(other, 0.05, [(tid, meta)]))
        started = time.monotonic()
        assert await backend.wait(tid, 30) == meta
        assert time.monotonic() - started < PROMPT
        await writer

    async def test_wait_ignores_unready_states(self, backend: ResultBackend) -> None:
        """STARTED/RETRY writes do not end the wait; the final write does."""
        tid = _tid()
        waiter = asyncio.create_task(backend.wait(tid, 30))
        for status in (states.RECEIVED, states.STARTED, states.RETRY):
            await backend.store([(tid, make_meta(tid, status, None))])
            await asyncio.sleep(0.1)
            assert not waiter.done(), f"wait() returned on {status}"
        final = make_meta(tid, result=7)
        await backend.store([(tid, final)])
        assert await asyncio.wait_for(waiter, PROMPT) == final

    async def test_wait_not_woken_by_other_ids(self, backend: ResultBackend) -> None:
        """Stores of other ids leave a waiter waiting."""
        tid, other = _tid(), _tid()
        waiter = asyncio.create_task(backend.wait(tid, 30))
        await asyncio.sleep(0.05)
        await backend.store([(other, make_meta(other))])
        await asyncio.sleep(0.2)
        assert not waiter.done()
        await backend.store([(tid, make_meta(tid))])
        doc = await asyncio.wait_for(waiter, PROMPT)
        assert doc is not None and doc["task_id"] == tid

    async def test_wait_without_timeout(self, backend: ResultBackend) -> None:
        """timeout=None waits until the document is ready."""
        tid = _tid()
        writer = asyncio.create_task(_store_later(backend, 0.1, [(tid, make_meta(tid))]))
        doc = await asyncio.wait_for(backend.wait(tid, None), PROMPT)
        assert doc is not None and doc["status"] == states.SUCCESS
        await writer

    async def test_many_concurrent_waiters(
        self, backend: ResultBackend, make_backend: BackendFactory
    ) -> None:
        """Hundreds of waiters on one instance (some on the same id) all wake."""
        writer = await make_backend(expires=3600)
        ids = [_tid() for _ in range(200)]
        waited = ids + [ids[0]] * 5
        tasks = [asyncio.create_task(backend.wait(tid, 30)) for tid in waited]
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await writer.store([(tid, make_meta(tid, result=i)) for i, tid in enumerate(ids)])
        docs = await asyncio.wait_for(asyncio.gather(*tasks), PROMPT * 2)
        assert time.monotonic() - started < PROMPT * 2
        assert [doc and doc["result"] for doc in docs] == list(range(200)) + [0] * 5

    async def test_wait_does_not_spin(self, backend: ResultBackend) -> None:
        """Waiting one second costs far less than one second of CPU."""
        cpu = time.process_time()
        assert await backend.wait(_tid(), 1.0) is None
        assert time.process_time() - cpu < 0.5

    async def test_cancelled_wait_leaves_others(self, backend: ResultBackend) -> None:
        """Cancelling one waiter does not disturb another on the same id."""
        tid = _tid()
        first = asyncio.create_task(backend.wait(tid, 30))
        second = asyncio.create_task(backend.wait(tid, 30))
        await asyncio.sleep(0.05)
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await backend.store([(tid, make_meta(tid))])
        doc = await asyncio.wait_for(second, PROMPT)
        assert doc is not None and doc["task_id"] == tid

    # -- expiry -------------------------------------------------------------------

    async def test_expiry(self, backend: ResultBackend, make_backend: BackendFactory) -> None:
        """Documents and groups past result_expires vanish; fresh or eternal ones stay."""
        short = await make_backend(expires=1)
        eternal = await make_backend(expires=None)
        old, fresh, kept, gid = _tid(), _tid(), _tid(), _tid()
        await short.store([(old, make_meta(old))])
        await short.save_group(gid, [old])
        await eternal.store([(kept, make_meta(kept))])
        assert (await backend.get([old]))[0] is not None
        await asyncio.sleep(1.3)
        await backend.store([(fresh, make_meta(fresh))])
        got = await backend.get([old, fresh, kept])
        assert got[0] is None and got[1] is not None and got[2] is not None
        assert await backend.wait(old, 0.05) is None
        assert await backend.restore_group(gid) is None
        removed = await backend.cleanup()
        assert isinstance(removed, int) and removed >= 0
        got = await backend.get([old, fresh, kept])
        assert got[0] is None and got[1] is not None and got[2] is not None

    # -- groups -------------------------------------------------------------------

    async def test_group_save_restore_forget(
        self, backend: ResultBackend, make_backend: BackendFactory
    ) -> None:
        """Member ids come back in order, from any instance, until forgotten."""
        gid, ids = _tid(), [_tid() for _ in range(5)]
        assert await backend.restore_group(gid) is None
        await backend.save_group(gid, ids)
        other = await make_backend(expires=3600)
        assert await other.restore_group(gid) == ids
        await other.save_group(gid, ids[:2])
        assert await backend.restore_group(gid) == ids[:2]
        await backend.forget_group(gid)
        assert await other.restore_group(gid) is None

    # -- chords -------------------------------------------------------------------

    async def test_chord_completes_once_in_index_order(self, backend: ResultBackend) -> None:
        """Out-of-order parts come back ordered, only to the completing call."""
        gid, ids = _tid(), [_tid() for _ in range(4)]
        parts = [(ids[i], states.SUCCESS, i * 10) for i in range(4)]
        for i in (2, 0, 3):
            assert await backend.chord_part_done(gid, i, parts[i], 4) is None
        done = await backend.chord_part_done(gid, 1, parts[1], 4)
        assert _as_tuples(done) == parts
        assert await backend.chord_part_done(gid, 1, parts[1], 4) is None

    async def test_chord_duplicate_index_counts_once(self, backend: ResultBackend) -> None:
        """Reporting the same index twice (a redelivered task) does not complete the chord."""
        gid, ids = _tid(), [_tid() for _ in range(3)]
        parts = [(ids[i], states.SUCCESS, {"n": i}) for i in range(3)]
        assert await backend.chord_part_done(gid, 0, parts[0], 3) is None
        assert await backend.chord_part_done(gid, 0, parts[0], 3) is None
        assert await backend.chord_part_done(gid, 1, parts[1], 3) is None
        assert await backend.chord_part_done(gid, 1, parts[1], 3) is None
        assert _as_tuples(await backend.chord_part_done(gid, 2, parts[2], 3)) == parts

    async def test_chord_keeps_failures_and_tagged_values(self, backend: ResultBackend) -> None:
        """Parts keep their state and decoded result (failures and datetimes included)."""
        gid, a, b = _tid(), _tid(), _tid()
        exc = {"exc_type": "ValueError", "exc_message": ["header boom"], "exc_module": "builtins"}
        when = dt.datetime(2026, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
        assert await backend.chord_part_done(gid, 1, (b, states.FAILURE, exc), 2) is None
        done = await backend.chord_part_done(gid, 0, (a, states.SUCCESS, when), 2)
        assert _as_tuples(done) == [(a, states.SUCCESS, when), (b, states.FAILURE, exc)]

    async def test_chords_are_independent(self, backend: ResultBackend) -> None:
        """Parts of one group do not count towards another."""
        g1, g2 = _tid(), _tid()
        assert await backend.chord_part_done(g1, 0, ("a", states.SUCCESS, 1), 2) is None
        assert await backend.chord_part_done(g2, 0, ("b", states.SUCCESS, 2), 2) is None
        done = await backend.chord_part_done(g2, 1, ("c", states.SUCCESS, 3), 2)
        assert _as_tuples(done) == [("b", states.SUCCESS, 2), ("c", states.SUCCESS, 3)]

    async def test_add_to_chord_grows_the_stored_size(self, backend: ResultBackend) -> None:
        """``add_to_chord`` makes the chord wait for one more part, at the next index."""
        gid, ids = _tid(), [_tid() for _ in range(3)]
        parts = [(ids[i], states.SUCCESS, i) for i in range(3)]
        await backend.set_chord_size(gid, 2)
        assert await backend.add_to_chord(gid, 1) == 3
        assert await backend.chord_part_done(gid, 0, parts[0], None) is None
        assert await backend.chord_part_done(gid, 1, parts[1], None) is None
        assert _as_tuples(await backend.chord_part_done(gid, 2, parts[2], None)) == parts

    async def test_chord_concurrent_callers_exactly_one_wins(
        self, backend: ResultBackend, make_backend: BackendFactory
    ) -> None:
        """Concurrent reports from several instances (with duplicates): one winner."""
        instances = [backend] + [await make_backend(expires=3600) for _ in range(3)]
        size = 40
        parts = [(f"t{i}", states.SUCCESS, i) for i in range(size)]
        gid = _tid()
        calls = [
            instances[(i + copy) % len(instances)].chord_part_done(gid, i, parts[i], size)
            for copy in range(2)
            for i in range(size)
        ]
        results = await asyncio.gather(*calls)
        winners = [result for result in results if result is not None]
        assert len(winners) == 1
        assert _as_tuples(winners[0]) == parts
