"""The worker's write batches: a lone result goes out at once, a busy worker's are gathered.

Asserted on the loop turns a flush waits for, never on timings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from celeriac import states
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.results import make_meta
from celeriac.transport.base import Delivery
from celeriac.worker.batcher import NOW, Batcher
from celeriac.worker.settle import LINGER, Settler


def _batcher(linger: float) -> tuple[Batcher[int], list[list[int]]]:
    flushed: list[list[int]] = []

    async def flush(items: Sequence[int]) -> None:
        flushed.append(list(items))

    return Batcher(flush, linger=lambda items: linger), flushed


async def test_an_item_told_now_is_flushed_without_waiting_for_the_loop_turn() -> None:
    batcher, flushed = _batcher(NOW)
    batcher.add(1)
    asyncio.get_running_loop().call_soon(batcher.add, 2)  # runs after the flush began
    await batcher.drain()
    await batcher.drain()  # the first may end as 2 arrives
    assert flushed == [[1], [2]]


async def test_items_of_the_next_loop_turn_join_a_batch_otherwise() -> None:
    batcher, flushed = _batcher(0.0)
    batcher.add(1)
    asyncio.get_running_loop().call_soon(batcher.add, 2)
    await batcher.drain()
    assert flushed == [[1, 2]]


class _Transport:
    def __init__(self) -> None:
        self.acked: list[str] = []

    async def ack(self, deliveries: Any) -> None:
        self.acked += [d.tag for d in deliveries]


class _Backend:
    replies = None

    def __init__(self) -> None:
        self.stored: list[str] = []

    async def store(self, items: Any) -> None:
        self.stored += [task_id for task_id, _ in items]


def _settler(busy: bool) -> tuple[Settler, _Backend, _Transport]:
    transport, backend = _Transport(), _Backend()
    settler = Settler(transport, backend, busy=lambda: busy)  # type: ignore[arg-type]
    return settler, backend, transport


def _settle_one(settler: Settler) -> None:
    delivery = Delivery(Envelope(b"[]"), "celery", "me:1:0")
    settler.settle(("a", make_meta("a", states.SUCCESS, 4)), delivery)


async def test_a_lone_result_is_stored_in_the_first_step_of_its_flush() -> None:
    """Nothing else running: the result's write starts in the very next step, before the
    rest of that loop turn (no sleep(0), no linger timer on a lone task's round trip)."""
    settler, backend, transport = _settler(busy=False)
    assert settler._linger([]) == NOW
    _settle_one(settler)
    await asyncio.sleep(0)  # the flush task's first step has run
    assert backend.stored == ["a"]
    await settler.drain()
    assert transport.acked == ["me:1:0"]


async def test_a_busy_workers_result_waits_for_its_batch() -> None:
    """Other tasks running: the batch waits a loop turn, then the linger, for their results."""
    settler, backend, _ = _settler(busy=True)
    delivery = Delivery(Envelope(b"[]"), "celery", "me:1:0")
    assert settler._linger([(None, delivery, None)]) == LINGER
    _settle_one(settler)
    await asyncio.sleep(0)
    assert backend.stored == []
    await settler.drain()
    assert backend.stored == ["a"]
