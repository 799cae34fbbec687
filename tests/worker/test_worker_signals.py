"""The worker's signals: which are sent, in which order, with which arguments; an unknown
task's result is a FAILURE (NotRegistered) and its message stays in the dead letters."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery, signals, states
from celeriac.exceptions import NotRegistered
from celeriac.protocol.envelope import Envelope
from celeriac.task import Task
from celeriac.transport import Outgoing
from celeriac.worker.worker import Worker, WorkerOptions
from tests.worker import apps

pytestmark = [pytest.mark.parametrize("app", ["memory"], indirect=True), pytest.mark.timeout(60)]

WATCHED = [
    "import_modules", "celeryd_init", "worker_init", "celeryd_after_setup",
    "worker_before_create_process", "worker_process_init", "worker_ready", "task_received",
    "task_prerun", "task_success", "task_failure", "task_retry", "task_postrun", "task_revoked",
    "task_unknown", "task_rejected", "task_internal_error", "worker_shutting_down",
    "worker_process_shutdown", "worker_shutdown", "before_task_publish", "after_task_publish",
    "task_sent",
]  # fmt: skip


class BrokenAfterReturn(Task):
    def after_return(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("after_return is broken")


@apps.app.task(base=BrokenAfterReturn)
def broken_after_return() -> int:
    return 1


@pytest.fixture
def fired() -> Iterator[list[tuple[str, Any, dict[str, Any]]]]:
    """Every watched signal sent during the test: (name, sender, arguments)."""
    calls: list[tuple[str, Any, dict[str, Any]]] = []
    receivers = []
    for name in WATCHED:

        def receiver(sender: Any = None, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            calls.append((_name, sender, kwargs))

        getattr(signals, name).connect(receiver)
        receivers.append((name, receiver))
    yield calls
    for name, receiver in receivers:
        getattr(signals, name).disconnect(receiver)


async def _run(app: Celery, **options: Any) -> tuple[Worker, asyncio.Task[None]]:
    opts = {"concurrency": 1, "pool": "threads", "banner": False, **options}
    worker = Worker(app, WorkerOptions(**opts))
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.2)
    if task.done():
        task.result()
    return worker, task


async def _stop(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    await asyncio.wait_for(task, 30)


def _names(fired: list[tuple[str, Any, dict[str, Any]]]) -> list[str]:
    return [name for name, _, _ in fired]


async def test_lifecycle_and_task_signals_in_celerys_order(
    app: Celery, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    worker, running = await _run(app, pool="solo")
    assert await (await apps.add.adelay(2, 3)).aget(timeout=10) == 5
    await _stop(worker, running)
    await app.aclose()
    assert _names(fired) == [
        "import_modules", "celeryd_init", "worker_init", "celeryd_after_setup",
        "worker_process_init", "worker_ready", "before_task_publish", "after_task_publish",
        "task_sent", "task_received", "task_prerun", "task_success", "task_postrun",
        "worker_shutdown",
    ]  # fmt: skip
    by_name = {name: (sender, kwargs) for name, sender, kwargs in fired}
    assert by_name["import_modules"][0] is app
    sender, kwargs = by_name["celeryd_init"]
    assert sender == worker.hostname and kwargs["instance"] is worker
    assert kwargs["conf"] is app.conf and kwargs["options"]["concurrency"] == 1
    assert by_name["worker_process_init"][0] == worker.hostname
    assert by_name["worker_ready"][0] is worker.handler
    request = by_name["task_received"][1]["request"]
    assert (request.name, request.args, request.task) == ("tests.worker.apps.add", [2, 3],
                                                          apps.add)  # fmt: skip
    sender, kwargs = by_name["task_success"]
    assert sender is apps.add and kwargs["result"] == 5 and kwargs["runtime"] >= 0
    assert set(by_name["task_postrun"][1]) >= {"task_id", "task", "args", "kwargs", "retval"}


async def test_threads_pool_sends_no_worker_process_init(
    app: Celery, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    worker, running = await _run(app, pool="threads", concurrency=2)
    assert await (await apps.add.adelay(1, 1)).aget(timeout=10) == 2
    await _stop(worker, running)
    await app.aclose()
    assert "worker_ready" in _names(fired)
    assert "worker_process_init" not in _names(fired)  # as Celery's threads pool


async def test_unknown_task_fails_with_not_registered_and_stays_dead_lettered(
    app: Celery, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    worker, running = await _run(app)
    transport = await app.aget_transport()
    body = json.dumps([[1], {}, {}]).encode()
    envelope = Envelope(body=body, headers={"task": "no.such.task", "id": "unknown-1"})
    await transport.publish([Outgoing(envelope, "", "celery")])
    result = app.AsyncResult("unknown-1")
    with pytest.raises(NotRegistered, match=r"no\.such\.task"):
        await result.aget(timeout=10)
    assert result.state == states.FAILURE
    assert (await result.ameta())["result"]["exc_module"] == "celery.exceptions"
    [dead] = await transport.list_dead()
    assert dead.envelope.headers["id"] == "unknown-1"  # the message is not lost
    await _stop(worker, running)
    await app.aclose()
    [(sender, kwargs)] = [(s, k) for n, s, k in fired if n == "task_unknown"]
    assert sender is worker.handler
    assert (kwargs["name"], kwargs["id"]) == ("no.such.task", "unknown-1")
    assert isinstance(kwargs["exc"], NotRegistered) and kwargs["message"] is not None
    assert "task_received" not in _names(fired)


async def test_undecodable_message_sends_task_rejected(
    app: Celery, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    worker, running = await _run(app)
    transport = await app.aget_transport()
    envelope = Envelope(body=b"\xff garbage", headers={"task": "x", "id": "bad-1"})
    await transport.publish([Outgoing(envelope, "", "celery")])
    deadline = time.monotonic() + 10
    while "task_rejected" not in _names(fired):
        assert time.monotonic() < deadline, "task_rejected never sent"
        await asyncio.sleep(0.05)
    await _stop(worker, running)
    await app.aclose()
    [(_, kwargs)] = [(s, k) for n, s, k in fired if n == "task_rejected"]
    assert kwargs["message"].envelope.headers["id"] == "bad-1" and kwargs["exc"] is not None


async def test_expired_task_sends_task_revoked_and_not_received(
    app: Celery, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    result = await apps.add.aapply_async((1, 2), expires=past)
    worker, running = await _run(app)
    await app.AsyncResult(result.id).aget(timeout=10, propagate=False)
    await _stop(worker, running)
    await app.aclose()
    [(sender, kwargs)] = [(s, k) for n, s, k in fired if n == "task_revoked"]
    assert sender is apps.add and kwargs["request"].id == result.id
    assert (kwargs["expired"], kwargs["terminated"], kwargs["signum"]) == (True, False, None)
    assert "task_received" not in _names(fired)


async def test_error_outside_the_body_sends_task_internal_error(
    app: Celery, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    worker, running = await _run(app)
    result = await broken_after_return.adelay()
    with pytest.raises(RuntimeError, match="after_return is broken"):
        await result.aget(timeout=10)
    await _stop(worker, running)
    await app.aclose()
    [(sender, kwargs)] = [(s, k) for n, s, k in fired if n == "task_internal_error"]
    assert sender is broken_after_return and kwargs["task_id"] == result.id
    assert isinstance(kwargs["exception"], RuntimeError)


async def test_process_pool_sends_before_create_and_process_shutdown(
    app: Celery, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    worker, running = await _run(app, pool="prefork")
    assert await (await apps.add.adelay(1, 1)).aget(timeout=10) == 2
    await _stop(worker, running)
    await app.aclose()
    # worker_process_init and _shutdown are sent in the children, not seen here.
    [sender] = [s for n, s, _ in fired if n == "worker_before_create_process"]
    assert sender is not None and "worker_process_init" not in _names(fired)


async def test_a_retry_is_published_with_the_publish_signals(
    app: Celery, fired: list[tuple[str, Any, dict[str, Any]]]
) -> None:
    worker, running = await _run(app)
    result = await apps.retry_twice.adelay()
    assert await result.aget(timeout=10) == 2  # the number of retries it took
    await _stop(worker, running)
    await app.aclose()
    run = [n for n in _names(fired) if n.startswith(("task_", "before_", "after_"))]
    one_retry = ["task_received", "task_prerun", "task_retry", "task_postrun",
                 "before_task_publish", "after_task_publish", "task_sent"]  # fmt: skip
    client = ["before_task_publish", "after_task_publish", "task_sent"]
    last = ["task_received", "task_prerun", "task_success", "task_postrun"]
    assert run == client + one_retry + one_retry + last
    published = [k for n, _, k in fired if n == "before_task_publish"]
    assert [k["headers"]["retries"] for k in published] == [0, 1, 2]
    assert all(k["headers"]["id"] == result.id for k in published)


async def test_celeryd_init_configures_a_worker_by_node_name(app: Celery) -> None:
    def configure(conf: Any = None, **kwargs: Any) -> None:
        conf.worker_prefetch_multiplier = 7

    signals.celeryd_init.connect(configure, sender="special@node")
    before = app.conf.worker_prefetch_multiplier
    try:
        other, other_task = await _run(app, hostname="other@node")
        assert other.prefetch_multiplier == before  # another node name: not for it
        await _stop(other, other_task)
        special, special_task = await _run(app, hostname="special@node")
        assert special.prefetch_multiplier == 7
        await _stop(special, special_task)
    finally:
        signals.celeryd_init.disconnect(configure, sender="special@node")
        app.conf.worker_prefetch_multiplier = before
        await app.aclose()
