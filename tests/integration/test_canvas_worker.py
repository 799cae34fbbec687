"""Canvas end to end: a real Worker in the test's event loop, on memory:// and SQLite.

Sync client code (the seed examples, written as in the tutorial) runs in a thread,
since its ``get()`` blocks; everything else uses the async API in the loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery, chain, chord, chunks, group, states, xmap, xstarmap
from celeriac.result import AsyncResult, GroupResult, bound_group_result
from celeriac.worker.worker import Worker, WorkerOptions
from tests.integration import canvas_apps as t
from tests.integration.canvas_apps import (
    add,
    async_double,
    buy_bread,
    buy_milk,
    echo_after,
    fail,
    fetch_user_name,
    greeting_user,
    mul,
    on_error,
    on_error_request,
    xsum,
)

StartWorker = Callable[..., Awaitable[Worker]]
WAIT = 20  # generous bound for "it happened"


@pytest.fixture(params=["memory", "sqlite"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Celery]:
    """The canvas app on a fresh memory or SQLite store."""
    url = (
        f"memory://{uuid.uuid4().hex}"
        if request.param == "memory"
        else f"sqlite:///{tmp_path / 'b.sqlite'}"
    )
    capp = t.app
    await asyncio.to_thread(capp.close)  # the sync API's connections to an earlier test's store
    capp.conf.broker_url = url
    capp.conf.result_backend = url
    capp.conf.broker_transport_options = {"lease_timeout": 2, "poll_interval": 0.01}
    capp._router = None
    yield capp
    await capp.aclose()
    await asyncio.to_thread(capp.close)


@pytest.fixture
async def start_worker(app: Celery) -> AsyncIterator[StartWorker]:
    """Start workers in this loop; stopped (warm) at the end of the test."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(**options: Any) -> Worker:
        worker = Worker(
            app, WorkerOptions(**{"concurrency": 4, "pool": "threads", "banner": False, **options})
        )
        task = asyncio.create_task(worker.run())
        running.append((worker, task))
        await asyncio.sleep(0.2)
        if task.done():
            task.result()
        return worker

    yield start
    for worker, task in running:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def _in_thread(fn: Callable[[], Any]) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(fn), WAIT)


# --- seed 003, exactly as written (import line aside) --------------------------------------------
def seed_group() -> Any:
    task1 = buy_milk.s(7)
    task2 = buy_bread.s(5)

    task_group = group(task1, task2)
    result = task_group.apply_async()

    results = result.get()
    return results


def seed_chain() -> Any:
    task1 = fetch_user_name.s(1)
    task2 = greeting_user.s()

    task_chain = chain(task1 | task2)
    result = task_chain.apply_async()

    final_result = result.get()
    return final_result, result


async def test_seed_003_group_and_chain(app: Celery, start_worker: StartWorker) -> None:
    await start_worker()
    assert await _in_thread(seed_group) == [7, 5]
    final, result = await _in_thread(seed_chain)
    assert final == "Здравствуй, Пётр 1Первый!"
    assert await result.parent.aget(timeout=WAIT) == "Пётр 1Первый"
    assert [[[result.id, None], None]] == (await result.parent.ameta())["children"]


# --- groups and chords ---------------------------------------------------------------------------
async def test_group_results_come_back_in_group_order(
    app: Celery, start_worker: StartWorker
) -> None:
    await start_worker()
    # The first member finishes last.
    g = await group(echo_after.s(i, 0.3 - 0.1 * i) for i in range(3)).aapply_async()
    assert await g.aget(timeout=WAIT) == [0, 1, 2]
    assert await g.aready() and await g.acompleted_count() == 3


async def test_chord_body_gets_header_results_in_order(
    app: Celery, start_worker: StartWorker
) -> None:
    await start_worker()
    result = await chord(
        [echo_after.s(i, 0.3 - 0.1 * i) for i in range(3)], t.collect.s("end")
    ).aapply_async()
    assert await result.aget(timeout=WAIT) == [[0, 1, 2], "end"]
    assert isinstance(result.parent, GroupResult)
    assert await result.parent.aget(timeout=WAIT) == [0, 1, 2]
    meta = await result.ameta()
    assert meta["group_id"] == result.parent.id and meta["parent_id"] in {
        r.id for r in result.parent.results
    }


async def test_chord_with_failing_header_fails_the_body(
    app: Celery, start_worker: StartWorker
) -> None:
    await start_worker()
    handled = str(uuid.uuid4())
    errbacks = [on_error.s().set(task_id=handled), on_error_request.s()]
    header = [add.s(1, 1), fail.si("header boom"), add.s(2, 2)]
    result = await chord(header, xsum.s()).aapply_async(link_error=errbacks)
    failing = result.parent.results[1].id
    # As Celery's get(): the failed header task's own exception, found through the parent.
    with pytest.raises(ValueError, match="header boom"):
        await result.aget(timeout=WAIT)
    body = await result.aget(timeout=WAIT, propagate=False)
    assert type(body).__name__ == "ChordError"
    assert str(body) == f"Dependency {failing} raised ValueError('header boom')"
    assert (await result.ameta())["status"] == states.FAILURE
    # Old-style errback: a task given the body's id; new-style: called with the request.
    assert await app.AsyncResult(handled).aget(timeout=WAIT) == f"handled {result.id}"
    assert await asyncio.to_thread(t.errback_seen.wait, WAIT)
    assert t.errback_calls[result.id][:2] == ("ChordError", str(body))
    # The other header tasks ran normally.
    assert await result.parent.results[2].aget(timeout=WAIT) == 4


async def test_chord_on_prefork_pool(app: Celery, start_worker: StartWorker) -> None:
    if app.broker_url.startswith("memory"):
        pytest.skip("memory:// lives in one process; pool children cannot reach it")
    await start_worker(pool="prefork", concurrency=2)
    result = await chord([add.s(i, i) for i in range(4)], xsum.s()).aapply_async()
    assert await result.aget(timeout=WAIT) == 12


# --- chains --------------------------------------------------------------------------------
async def test_chain_with_failing_middle_link_stops(app: Celery, start_worker: StartWorker) -> None:
    await start_worker()
    handled = str(uuid.uuid4())
    c = chain(add.s(1, 1), fail.si("middle"), add.s(3), mul.s(2))
    result = await c.aapply_async(link_error=on_error.s().set(task_id=handled))
    with pytest.raises(ValueError, match="middle"):
        await result.aget(timeout=WAIT)
    failed = result.parent.parent
    assert (await failed.ameta())["status"] == states.FAILURE
    # The links after the failure never ran: their results carry the same failure.
    skipped = await result.parent.ameta()
    assert skipped["status"] == states.FAILURE and skipped["parent_id"] == failed.id
    assert skipped["result"]["exc_message"] == ["middle"]
    assert await failed.parent.aget(timeout=WAIT) == 2
    assert await app.AsyncResult(handled).aget(timeout=WAIT) == f"handled {failed.id}"


async def test_group_of_chains(app: Celery, start_worker: StartWorker) -> None:
    await start_worker()
    g = group(add.s(1, 1) | mul.s(2), add.s(2, 2) | mul.s(3), chain(async_double.s(5), add.s(1)))
    result = await g.aapply_async()
    assert await result.aget(timeout=WAIT) == [4, 12, 11]


async def test_chain_containing_a_group_becomes_a_chord(
    app: Celery, start_worker: StartWorker
) -> None:
    await start_worker()
    c = chain(add.s(1, 1), group(add.s(1), add.s(2), mul.s(3)), xsum.s(), mul.s(10))
    assert await (await c.aapply_async()).aget(timeout=WAIT) == 130


async def test_chord_inside_a_chain_and_chain_ending_in_group(
    app: Celery, start_worker: StartWorker
) -> None:
    await start_worker()
    inner = chain(add.s(1, 1), chord([add.s(1), add.s(2)], xsum.s()), mul.s(10))
    assert await (await inner.aapply_async()).aget(timeout=WAIT) == 70
    ending = await chain(add.s(1, 1), group(add.s(1), add.s(2))).aapply_async()
    assert isinstance(ending, GroupResult)
    assert await ending.aget(timeout=WAIT) == [3, 4]


# --- chunks, map, starmap -------------------------------------------------------------------------
async def test_chunks_map_starmap(app: Celery, start_worker: StartWorker) -> None:
    await start_worker()
    parts = await chunks(add.s(), [(i, i) for i in range(5)], 2).aapply_async()
    assert await parts.aget(timeout=WAIT) == [[0, 2], [4, 6], [8]]
    assert await (await xmap(async_double.s(), [1, 2]).aapply_async()).aget(timeout=WAIT) == [2, 4]
    assert await (await xstarmap(add.s(), [(1, 2), (3, 4)]).aapply_async()).aget(timeout=WAIT) == [
        3,
        7,
    ]
    # celery.chunks as a task (a chunks step of a chain is published by name).
    step = await chain(add.s(1, 1), chunks(add.s(), [(1, 1), (2, 2)], 1)).aapply_async()
    (gid, _), members = await step.aget(timeout=WAIT)
    group_result = GroupResult(gid, [app.AsyncResult(m[0][0]) for m in members], app=app)
    assert await group_result.aget(timeout=WAIT) == [[2], [4]]


# --- link / link_error ----------------------------------------------------------------------------
async def test_link_and_link_error(app: Celery, start_worker: StartWorker) -> None:
    await start_worker()
    callback = str(uuid.uuid4())
    parent = await add.s(2, 2).aapply_async(link=mul.s(10).set(task_id=callback))
    assert await app.AsyncResult(callback).aget(timeout=WAIT) == 40
    assert (await parent.ameta())["children"] == [[[callback, None], None]]

    handled = str(uuid.uuid4())
    t.errback_seen.clear()
    failed = await fail.si("linked").aapply_async(
        link_error=[on_error.s().set(task_id=handled), on_error_request.s()]
    )
    assert await app.AsyncResult(handled).aget(timeout=WAIT) == f"handled {failed.id}"
    assert await asyncio.to_thread(t.errback_seen.wait, WAIT)
    assert t.errback_calls[failed.id] == ("ValueError", "linked", True)


# --- GroupResult ----------------------------------------------------------------------------------
async def test_group_result_save_restore_forget(app: Celery, start_worker: StartWorker) -> None:
    await start_worker()
    g = await group(add.s(i, 1) for i in range(3)).aapply_async()
    assert await g.aget(timeout=WAIT) == [1, 2, 3]
    await g.asave()
    restored = await bound_group_result(app).arestore(str(g.id))
    assert restored is not None and restored == g and restored.app is app
    assert await restored.aget(timeout=WAIT) == [1, 2, 3]
    assert await asyncio.to_thread(
        lambda: (g.ready(), g.successful(), g.failed(), g.waiting(), g.completed_count())
    ) == (True, True, False, False, 3)
    await g.aforget()
    assert await GroupResult.arestore(str(g.id), app=app) is None
    assert await g.astates() == [states.PENDING] * 3


async def test_group_revoke_is_honoured(app: Celery, start_worker: StartWorker) -> None:
    g = await group(add.s(1, 1), add.s(2, 2)).aapply_async()
    await g.arevoke()
    await start_worker()
    assert await g.aget(timeout=WAIT, propagate=False) is not None
    assert await g.astates() == [states.REVOKED, states.REVOKED]
    assert isinstance(g.results[0], AsyncResult)


async def test_chord_with_revoked_header_task_does_not_hang(
    app: Celery, start_worker: StartWorker
) -> None:
    result = await chord([add.s(1, 1), add.s(2, 2)], xsum.s()).aapply_async()
    revoked = result.parent.results[0]
    await revoked.arevoke()
    await start_worker()
    # As Celery's get(): the revoked header task raises first (TaskRevokedError) ...
    with pytest.raises(Exception) as caught:
        await result.aget(timeout=WAIT)
    assert type(caught.value).__name__ == "TaskRevokedError"
    # ... and the body's own result is the ChordError naming it.
    body = await result.aget(timeout=WAIT, propagate=False)
    assert type(body).__name__ == "ChordError"
    assert str(body).startswith(f"Dependency {revoked.id} ")


async def test_unpublishable_follow_up_does_not_requeue_the_task(
    app: Celery, start_worker: StartWorker
) -> None:
    """A callback that can never be built is logged; the task's own result still lands."""
    await start_worker()
    bad = {"task": add.name, "args": [], "kwargs": {}, "options": {"countdown": "soon"}}
    result = await add.s(1, 2).aapply_async(link=bad)
    assert await result.aget(timeout=WAIT) == 3
    assert (await result.ameta())["children"] == []
