"""The default worker shape, on real worker processes: one process per slot, supervised.

``celeriac worker`` with no ``-P`` runs ``-c`` slots (:mod:`celeriac.worker.slots`). These
tests check what it keeps of prefork: a crash takes only its slot and fails its task once,
a hard time limit and the per-child limits replace the slot, nothing is lost meanwhile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from celeriac import states
from celeriac.exceptions import TimeLimitExceeded, WorkerLostError
from tests.integration.test_worker_process import (
    PREFIX,
    ROOT,
    _children_of,
    _env,
    _pids_serving,
    broker,
    start_worker,
    wait_for_line,
)
from tests.services import REDIS_URL, amqp_vhost, amqp_vhost_url, delete_prefixed, redis_client
from tests.worker import apps

__all__ = ["broker"]  # the fixture, shared with test_worker_process


def _stop(supervisor: object) -> None:
    supervisor.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    assert supervisor.wait(30) == 0  # type: ignore[attr-defined]


def test_default_shape_is_a_supervised_process_per_slot(broker: str, tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    supervisor = start_worker(broker, "-P", "slots", log=log)  # -c 2
    try:
        wait_for_line(log, "-2@")
        slots = _children_of(supervisor.pid)
        assert len(slots) == 2
        assert _pids_serving(60) == slots  # tasks run in the slots themselves, no children
        assert all(_children_of(slot) == set() for slot in slots)
    finally:
        _stop(supervisor)
    assert "concurrency: 2 (slots" in log.read_text()


def test_explicit_prefork_keeps_celerys_pool(broker: str, tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    worker = start_worker(broker, "-P", "prefork", log=log)
    try:
        wait_for_line(log, "ready.")
        children = _children_of(worker.pid)
        assert len(children) == 2
        assert _pids_serving(20) <= children
    finally:
        _stop(worker)
    assert "concurrency: 2 (prefork)" in log.read_text()


def test_a_crash_takes_only_its_slot_and_fails_its_task_once(broker: str, tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    marker = tmp_path / "crash.txt"
    supervisor = start_worker(broker, "-P", "slots", log=log)
    try:
        wait_for_line(log, "-2@")
        before = _children_of(supervisor.pid)
        crashed = apps.crash.delay(str(marker))
        others = [apps.add.delay(i, i) for i in range(40)]
        with pytest.raises(WorkerLostError, match="signal 11"):
            crashed.get(timeout=30, propagate=True)
        assert [r.get(timeout=30) for r in others] == [i + i for i in range(40)]
        assert crashed.state == states.FAILURE
        assert marker.read_text().count("ran") == 1  # recorded, not run again
        (victim,) = {int(line.split()[1]) for line in marker.read_text().splitlines()}
        assert victim in before
        after = _children_of(supervisor.pid)
        assert len(after) == 2 and victim not in after  # replaced; the other slot kept
        assert before - {victim} <= after
    finally:
        _stop(supervisor)
    text = log.read_text()
    assert f"died (signal 11 (SIGSEGV)) while running task {crashed.id}" in text
    assert "not run again" in text


def test_a_hard_time_limit_fails_the_task_and_replaces_the_slot(
    broker: str, tmp_path: Path
) -> None:
    log = tmp_path / "w.log"
    supervisor = start_worker(broker, "-P", "slots", "-c", "1", log=log)
    try:
        wait_for_line(log, "ready.")
        (first,) = _children_of(supervisor.pid)
        with pytest.raises(TimeLimitExceeded):
            apps.hard_limited.delay().get(timeout=30)
        # The abandoned thread went with its process: a fresh slot serves the next tasks.
        assert _pids_serving(5) == _children_of(supervisor.pid) != {first}
    finally:
        _stop(supervisor)
    assert "slot retiring, a task passed its hard time limit" in log.read_text()


def test_max_tasks_per_child_replaces_each_slot_after_that_many(
    broker: str, tmp_path: Path
) -> None:
    log = tmp_path / "w.log"
    supervisor = start_worker(
        broker, "-P", "slots", "-c", "1", "--max-tasks-per-child", "3", log=log
    )
    try:
        wait_for_line(log, "ready.")
        pids = [apps.pid.delay().get(timeout=30) for _ in range(9)]
    finally:
        _stop(supervisor)
    # One task at a time, so each process ran exactly three in a row.
    assert [pids[i] for i in range(0, 9, 3)] == [pids[i + 2] for i in range(0, 9, 3)]
    assert len(set(pids)) == 3
    assert log.read_text().count("retired; starting a new one") >= 2


def test_max_memory_per_child_replaces_a_slot_that_grew(broker: str, tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    supervisor = start_worker(
        broker, "-P", "slots", "-c", "1", "--max-memory-per-child", str(400 * 1024), log=log
    )  # KiB
    try:
        wait_for_line(log, "ready.")
        small = apps.grow.delay(1).get(timeout=30)
        big = apps.grow.delay(450).get(timeout=60)  # past the limit: retires after this one
        assert small == big
        deadline = time.monotonic() + 20
        while apps.pid.delay().get(timeout=30) == big:
            assert time.monotonic() < deadline, "the slot past its memory limit was not replaced"
    finally:
        _stop(supervisor)
    assert "max memory per child: 409600 KiB" in log.read_text()


def test_a_slot_killed_holding_messages_gives_them_back_at_once(
    broker: str, tmp_path: Path
) -> None:
    """A slot's replacement requeues what its killed predecessor held (no lease wait)."""
    log = tmp_path / "w.log"
    marker = tmp_path / "m.txt"
    supervisor = start_worker(broker, "-P", "slots", "-c", "1", log=log)
    try:
        wait_for_line(log, "ready.")
        running = apps.sleep.delay(30, str(marker))
        waiting = [apps.add.delay(i, 1) for i in range(3)]  # prefetched behind it
        wait_for_line(marker, "start")
        (slot,) = _children_of(supervisor.pid)
        os.kill(slot, signal.SIGKILL)
        assert [r.get(timeout=20) for r in waiting] == [1, 2, 3]
        with pytest.raises(WorkerLostError, match="signal 9"):
            running.get(timeout=20)
    finally:
        _stop(supervisor)
    # The replacement took them back itself, not a lease sweep.
    assert "slot 1: requeued 4 message(s) its previous process held" in log.read_text()
    assert marker.read_text().count("start") == 1


def test_terminate_ends_the_slot_with_its_task(broker: str, tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    marker = tmp_path / "m.txt"
    supervisor = start_worker(broker, "-P", "slots", "-c", "1", log=log)
    try:
        wait_for_line(log, "ready.")
        (slot,) = _children_of(supervisor.pid)
        running = apps.sleep.delay(30, str(marker))
        wait_for_line(marker, "start")
        apps.app.control.revoke(running.id, terminate=True)
        deadline = time.monotonic() + 20
        while running.state != states.REVOKED:
            assert time.monotonic() < deadline, f"still {running.state}"
            time.sleep(0.1)
        assert _pids_serving(3) == _children_of(supervisor.pid) != {slot}
    finally:
        _stop(supervisor)
    assert "done" not in marker.read_text()  # the task's thread went with its process
    assert "its slot ends with it" in log.read_text()


def test_on_rabbitmq_a_crashed_task_fails_once(tmp_path: Path) -> None:
    """RabbitMQ hands the dead slot's messages back at once, perhaps before the supervisor
    noticed: the other slot reads the dead slot's record and does not run the task."""
    with amqp_vhost() as vhost:
        url = amqp_vhost_url(vhost)
        apps.app.conf.broker_url = url
        apps.app.conf.result_backend = REDIS_URL
        apps.app.conf.result_backend_transport_options = {"global_keyprefix": PREFIX}
        apps.app._router = None
        env = {**_env(url), "CELERIAC_RESULT_BACKEND": REDIS_URL}
        log, marker = tmp_path / "w.log", tmp_path / "crash.txt"
        command = [sys.executable, "-m", "celeriac", "-A", "tests.worker.apps", "worker"]
        supervisor = subprocess.Popen(
            [*command, "-l", "info", "-P", "slots", "-c", "2"],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            wait_for_line(log, "-2@")
            crashed = apps.crash.delay(str(marker))
            others = [apps.add.delay(i, i) for i in range(20)]
            with pytest.raises(WorkerLostError, match=r"died|signal 11"):
                crashed.get(timeout=30)
            assert [r.get(timeout=30) for r in others] == [i + i for i in range(20)]
            assert marker.read_text().count("ran") == 1
        finally:
            _stop(supervisor)
            apps.app.close()
            delete_prefixed(redis_client(), PREFIX)
    assert "not run again" in log.read_text()
