"""The slots' shared board and a slot's limits (the supervised processes are in
tests/integration/test_worker_slots.py)."""

from __future__ import annotations

import os
import signal

import pytest

from celeriac.context import Context
from celeriac.worker.slots import Slot, SlotBoard


def test_a_slots_record_shows_its_running_task_until_it_ends() -> None:
    board = SlotBoard(2)
    assert board.register(1, "consumer-a") == ""
    board.running(1, "task-1")
    assert board.record(1) == (os.getpid(), "task-1")
    assert board.record(2) == (0, "")
    board.idle(1)
    assert board.record(1) == (os.getpid(), "")
    assert board.consumer(1) == "consumer-a"
    assert board.register(1, "consumer-b") == "consumer-a"  # the predecessor, to reclaim


def _died_running(board: SlotBoard, index: int, task_id: str) -> int:
    """A process that takes slot ``index``, starts ``task_id`` and is SIGKILLed; its pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child dies running its task
        board.register(index, "consumer")
        board.running(index, task_id)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    return pid


def test_a_task_whose_slot_died_is_lost_for_every_slot() -> None:
    board = SlotBoard(2)
    pid = _died_running(board, 2, "task-x")
    # Before the supervisor noticed: the dead process's record says it ran the task.
    assert board.lost_reason("task-x") == f"the slot running it (pid {pid}) died"
    assert board.lose(2, "signal 9 (SIGKILL)") == "task-x"
    assert board.record(2)[1] == ""
    assert board.lost_reason("task-x") == "signal 9 (SIGKILL)"
    assert board.lost_reason("task-y") is None
    assert board.lose(1, "exit code 1") is None  # it ran nothing


def test_a_lose_between_a_slots_reads_still_shows_the_task_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The supervisor moves a dead slot's task to the ring while another slot, handed the
    message back, is reading the board: whichever read the move falls between, the task
    is found (RabbitMQ redelivers at once, so this race is run in earnest)."""
    board = SlotBoard(1)
    _died_running(board, 1, "task-z")
    read_record, moved = SlotBoard.record, []

    def record_then_lose(self: SlotBoard, index: int) -> tuple[int, str]:
        if not moved:  # the supervisor acts just as the reader starts
            moved.append(True)
            self.lose(index, "signal 9 (SIGKILL)")
        return read_record(self, index)

    monkeypatch.setattr(SlotBoard, "record", record_then_lose)
    assert board.lost_reason("task-z") == "signal 9 (SIGKILL)"
    assert moved


def test_a_live_slot_running_a_task_does_not_make_it_lost() -> None:
    board = SlotBoard(1)
    board.register(1, "consumer")
    board.running(1, "task-live")  # this process, alive
    assert board.lost_reason("task-live") is None


def test_the_lost_ring_keeps_the_latest_entries() -> None:
    board = SlotBoard(1)
    for number in range(100):
        board.running(1, f"t{number}")
        board.lose(1, f"death {number}")
    assert board.lost_reason("t99") == "death 99"
    assert board.lost_reason("t36") == "death 36"
    assert board.lost_reason("t35") is None  # 64 kept


def test_the_ready_flag_is_per_process() -> None:
    board = SlotBoard(1)
    board.register(1, "c")
    assert not board.is_ready(1)
    board.ready(1)
    assert board.is_ready(1)
    board.register(1, "d")  # a new process in the slot
    assert not board.is_ready(1)


def _run(payload: tuple[str, Context]) -> str:
    return payload[0]


@pytest.mark.parametrize(("limits", "retire_after"), [({"max_tasks": 3}, 3), ({}, None)])
def test_a_slot_retires_after_its_task_limit(
    limits: dict[str, int], retire_after: int | None
) -> None:
    slot = Slot(SlotBoard(1), 1, **limits)
    reasons: list[tuple[int, str]] = []
    slot.on_retire = lambda why: reasons.append((slot.done, why))
    run = slot.wrap(_run)
    for number in range(5):
        assert run((f"r{number}", Context(id=f"id{number}"))) == f"r{number}"
    if retire_after is None:
        assert reasons == []
    else:  # asked once, after the task that reached the limit
        assert reasons == [(3, "it ran 3 tasks (max tasks per child: 3)")]


def test_a_slot_retires_once_its_peak_memory_passes_the_limit() -> None:
    slot = Slot(SlotBoard(1), 1, max_memory=1)  # 1 KiB: any process is past it
    reasons: list[str] = []
    slot.on_retire = reasons.append
    slot.wrap(_run)(("r", Context(id="id")))
    assert len(reasons) == 1 and "max memory per child: 1 KiB" in reasons[0]
    assert slot.board.record(1)[1] == ""  # idle again after the task
