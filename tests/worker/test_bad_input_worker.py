"""An error while taking one message in dead-letters that message; it is not requeued to loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from celeriac import Celery
from celeriac.protocol.message import TaskMessage
from celeriac.task import Task
from celeriac.worker.checks import Checks
from tests.worker import apps
from tests.worker.conftest import StartWorker


async def test_an_internal_error_on_one_delivery_dead_letters_it_alone(
    app: Celery, start_worker: StartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear = Checks.clear
    calls: list[str] = []

    def failing_clear(self: Checks, msg: TaskMessage, task: Task) -> bool:
        if msg.args == [40, 2]:
            calls.append(msg.id)
            raise RuntimeError("boom for this message only")
        return clear(self, msg, task)

    monkeypatch.setattr(Checks, "clear", failing_clear)
    await start_worker()
    poisoned = await apps.add.adelay(40, 2)
    assert await (await apps.add.adelay(1, 2)).aget(timeout=10) == 3
    transport = await app.aget_transport()
    deadline = time.monotonic() + 5
    while not (dead := await transport.list_dead()):
        assert time.monotonic() < deadline, "never dead-lettered"
        await asyncio.sleep(0.05)
    assert "internal error handling it: RuntimeError: boom for this message only" in dead[0].reason
    await asyncio.sleep(0.3)
    assert calls == [poisoned.id]  # taken in once: not requeued to fail again
