"""The same script on a real Celery worker and on a celeriac worker (Redis, subprocesses):
the signals each process sends, in order, with the same argument names.

The client (this test) publishes one task at a time and waits for it — a success, a
failure, an expired task and an unregistered one — then stops the worker with SIGTERM.
Pool children and the worker are separate processes, so each process's sequence is
compared (a child's ``worker_process_init`` may come before or after the worker's
``worker_ready``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services import REDIS_URL, delete_prefixed, key_prefix, redis_client

pytest.importorskip("celery")
pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def prefix() -> Iterator[str]:
    client = redis_client()
    value = key_prefix("parity")
    yield value
    delete_prefixed(client, value)
    client.close()


def _env(kind: str, prefix: str, log: Path, **extra: str) -> dict[str, str]:
    """The environment of one side's processes: its own key prefix, its own log."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "PARITY_KIND": kind, "PARITY_URL": REDIS_URL,
            "PARITY_PREFIX": f"{prefix}{kind}:", "PARITY_LOG": str(log), **extra}  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _worker(kind: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    program = "celery" if kind == "celery" else "celeriac"
    command = [sys.executable, "-m", program, "-A", "tests.parity.signals_app", "worker",
               "-P", "prefork", "-c", "1", "-l", "info",
               # the same flags on both sides: a heartbeat every 2 s would add a number of
               # heartbeat_sent that depends on timing
               "--without-mingle", "--without-gossip", "--without-heartbeat"]  # fmt: skip
    return subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def _client_script() -> str:
    return """
import datetime as dt, os, time
from tests.parity.signals_app import add, app, fail
assert add.delay(2, 3).get(timeout=30) == 5
try:
    fail.delay().get(timeout=30)
except ValueError:
    pass
past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
expired = add.apply_async((1, 1), expires=past)
deadline = time.monotonic() + 30
while expired.state != "REVOKED":
    assert time.monotonic() < deadline, expired.state
    time.sleep(0.1)
unknown = app.send_task("no.such.task", (1,))
while unknown.state != "FAILURE":
    assert time.monotonic() < deadline, unknown.state
    time.sleep(0.1)
"""


def _run(
    kind: str, tmp_path: Path, prefix: str, skip: str = ""
) -> dict[str, list[tuple[str, list[str]]]]:
    """Per process role (``worker``, ``child``, ``client``), the signals sent in order."""
    log = tmp_path / f"{kind}-signals.jsonl"
    env = _env(kind, prefix, log, PARITY_QUEUE=f"parity-{uuid.uuid4().hex}", PARITY_SKIP=skip)
    worker = _worker(kind, env, tmp_path / f"{kind}-worker.log")
    try:
        client = subprocess.run(
            [sys.executable, "-c", _client_script()],
            env={**env, "PARITY_LOG": str(tmp_path / f"{kind}-client.jsonl")},
            cwd=ROOT,
            capture_output=True,
            timeout=90,
        )
        assert client.returncode == 0, client.stderr.decode()[-3000:]
        time.sleep(0.5)  # the last task's postrun is sent after its result is written
    finally:
        _stop(worker)
    sequences: dict[str, list[tuple[str, list[str]]]] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        role = "worker" if entry["pid"] == worker.pid else "child"
        sequences.setdefault(role, []).append((entry["name"], entry["args"]))
    client_log = tmp_path / f"{kind}-client.jsonl"
    sequences["client"] = [
        (e["name"], e["args"]) for e in map(json.loads, client_log.read_text().splitlines())
    ]
    return sequences


@pytest.mark.parametrize(
    ("skip", "expected"),
    [
        # A setup_logging receiver means "I configure logging myself": no after_setup_*.
        ("", {"setup_logging", "task_unknown", "task_revoked", "worker_process_shutdown"}),
        ("setup_logging", {"after_setup_logger", "after_setup_task_logger"}),
    ],
)
def test_signals_sent_in_the_same_order_with_the_same_arguments(
    tmp_path: Path, prefix: str, skip: str, expected: set[str]
) -> None:
    theirs = _run("celery", tmp_path, prefix, skip)
    ours = _run("celeriac", tmp_path, prefix, skip)
    sent = {name for sequence in theirs.values() for name, _ in sequence}
    assert expected <= sent  # the script exercises what it is meant to
    for role in ("client", "worker", "child"):
        assert [n for n, _ in ours.get(role, [])] == [n for n, _ in theirs.get(role, [])], role
        assert ours.get(role) == theirs.get(role), role


def _run_beat(kind: str, tmp_path: Path, prefix: str) -> list[tuple[str, list[str]]]:
    """The signals ``beat`` sends from its start until SIGTERM, in order."""
    log = tmp_path / f"{kind}-beat.jsonl"
    env = _env(kind, prefix, log)
    command = [sys.executable, "-m", kind, "-A", "tests.parity.signals_app", "beat", "-l", "info"]
    if kind == "celery":
        command += ["-s", str(tmp_path / "celerybeat-schedule")]
    out = (tmp_path / f"{kind}-beat.log").open("wb")
    beat = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "beat_init" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "beat never sent beat_init"
            assert beat.poll() is None, (tmp_path / f"{kind}-beat.log").read_text()
            time.sleep(0.1)
    finally:
        _stop(beat)
    return [(e["name"], e["args"]) for e in map(json.loads, log.read_text().splitlines())]


def test_beat_sends_the_same_signals_in_the_same_order(tmp_path: Path, prefix: str) -> None:
    theirs = _run_beat("celery", tmp_path, prefix)
    ours = _run_beat("celeriac", tmp_path, prefix)
    assert [n for n, _ in theirs] == ["import_modules", "setup_logging", "beat_init"]
    assert ours == theirs
