"""``--log-format json``: real worker and beat processes on Redis write one JSON object
per stderr line, with the task's id, name, state and runtime on its lifecycle lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import states
from celeriac.exceptions import TimeoutError as ResultTimeout
from tests.integration import jsonlog_app
from tests.services import REDIS_URL, delete_prefixed, key_prefix, redis_client

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
PREFIX = key_prefix("jsonlog")
BASE_FIELDS = {"time", "level", "logger", "message", "process", "process_name"}


@pytest.fixture(scope="module")
def redis_broker() -> Iterator[str]:
    """The test Redis under this module's key prefix, deleted afterwards."""
    client = redis_client()
    app = jsonlog_app.app
    app.conf.broker_url = app.conf.result_backend = REDIS_URL
    app.conf.broker_transport_options = {"global_keyprefix": PREFIX}
    app.conf.result_backend_transport_options = {"global_keyprefix": PREFIX}
    yield REDIS_URL
    app.close()
    delete_prefixed(client, PREFIX)
    client.close()


def _start(command: str, *args: str, stderr: Path, env: dict[str, str] | None = None) -> Any:
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JSONLOG_BROKER": REDIS_URL,
        "JSONLOG_PREFIX": PREFIX,
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "celeriac", "-A", "tests.integration.jsonlog_app", command,
         "-l", "info", *args],
        env=environ, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr.open("wb"),
    )  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` parsed as JSON (a line that is not fails the test)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, "nothing was logged"
    parsed = []
    for line in lines:
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(value, dict), line
        assert BASE_FIELDS <= value.keys(), line
        parsed.append(value)
    return parsed


def _get(result: Any, **options: Any) -> Any:
    try:
        return result.get(timeout=60, **options)
    except ResultTimeout:
        pytest.fail("the worker did not run the task")


def _lifecycle(
    lines: list[dict[str, Any]], task_id: str, state: str, count: int = 1
) -> dict[str, Any]:
    """The one line about ``task_id`` in ``state`` (``count`` such lines: the first)."""
    found = [line for line in lines if (line.get("task_id"), line.get("state")) == (task_id, state)]
    assert len(found) == count, (state, [line["message"] for line in lines])
    return found[0]


def test_worker_writes_one_json_object_a_line(redis_broker: str, tmp_path: Path) -> None:
    stderr = tmp_path / "worker.err"
    # Prefork: the lifecycle lines come from the worker, the task's own from its child.
    worker = _start("worker", "--log-format", "json", "-P", "prefork", "-c", "1", stderr=stderr)
    try:
        ok = jsonlog_app.greet.delay("ada")
        bad = jsonlog_app.fail.delay("on purpose")
        again = jsonlog_app.retry_once.delay()
        assert _get(ok) == "hello ada"
        assert _get(again) == 1
        assert isinstance(_get(bad, propagate=False), ValueError)
    finally:
        _stop(worker)
    lines = _json_lines(stderr)
    worker_pid = worker.pid

    received = _lifecycle(lines, ok.id, states.RECEIVED)
    assert received["task_name"] == "jsonlog.greet"
    assert received["level"] == "INFO"
    assert received["logger"] == "celeriac.worker"
    assert received["process"] == worker_pid
    succeeded = _lifecycle(lines, ok.id, states.SUCCESS)
    assert succeeded["task_name"] == "jsonlog.greet"
    assert isinstance(succeeded["runtime"], float) and succeeded["runtime"] >= 0
    assert "succeeded" in succeeded["message"]

    failed = _lifecycle(lines, bad.id, states.FAILURE)
    assert failed["task_name"] == "jsonlog.fail"
    assert failed["level"] == "ERROR"
    assert isinstance(failed["runtime"], float)
    assert "ValueError" in failed["message"] and "on purpose" in failed["message"]
    _lifecycle(lines, bad.id, states.RECEIVED)

    retried = _lifecycle(lines, again.id, states.RETRY)
    assert retried["task_name"] == "jsonlog.retry_once"
    assert "first try" in retried["message"]
    assert isinstance(retried["runtime"], float)
    assert _lifecycle(lines, again.id, states.SUCCESS)["task_name"] == "jsonlog.retry_once"
    _lifecycle(lines, again.id, states.RECEIVED, count=2)  # the first run and the retry

    # The task's own log line (get_task_logger), written in the pool process.
    (greeting,) = [line for line in lines if line["message"] == "greeting ada"]
    assert greeting["task_id"] == ok.id
    assert greeting["task_name"] == "jsonlog.greet"
    assert greeting["logger"] == "tests.integration.jsonlog_app"
    assert "state" not in greeting
    # Each record has a parseable UTC time.
    for line in lines:
        assert line["time"].endswith("+00:00"), line


def test_the_environment_variable_and_the_setting_choose_json_too(
    redis_broker: str, tmp_path: Path
) -> None:
    stderr = tmp_path / "worker.err"
    worker = _start("worker", "-c", "1", "-P", "solo", stderr=stderr,
                    env={"CELERIAC_LOG_FORMAT": "JSON"})  # fmt: skip
    try:
        ok = jsonlog_app.greet.delay("env")
        assert _get(ok) == "hello env"
    finally:
        _stop(worker)
    lines = _json_lines(stderr)
    assert _lifecycle(lines, ok.id, states.SUCCESS)["task_name"] == "jsonlog.greet"


def test_text_stays_the_default(redis_broker: str, tmp_path: Path) -> None:
    stderr = tmp_path / "worker.err"
    worker = _start("worker", "-c", "1", "-P", "solo", stderr=stderr)
    try:
        ok = jsonlog_app.greet.delay("text")
        assert _get(ok) == "hello text"
    finally:
        _stop(worker)
    text = stderr.read_text()
    assert f"jsonlog.greet[{ok.id}] succeeded in" in text
    assert not any(line.startswith("{") for line in text.splitlines())


def test_beat_writes_one_json_object_a_line(redis_broker: str, tmp_path: Path) -> None:
    stderr = tmp_path / "beat.err"
    store = f"sqlite:///{tmp_path / 'beat.sqlite'}"
    beat = _start("beat", "--log-format", "json", "-s", store, "--max-interval", "0.5",
                  stderr=stderr)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "Sending due task" not in stderr.read_text() and time.monotonic() < deadline:
            assert beat.poll() is None, stderr.read_text()
            time.sleep(0.2)
    finally:
        _stop(beat)
    lines = _json_lines(stderr)
    sent = [line for line in lines if "Sending due task" in line["message"]]
    assert sent, [line["message"] for line in lines]
    assert sent[0]["task_name"] == "jsonlog.tick"
    assert sent[0]["entry"] == "every-half-second"
    assert sent[0]["task_id"]
    assert sent[0]["logger"] == "celeriac.beat"
    assert sent[0]["process"] == beat.pid


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_an_unknown_log_format_is_refused_naming_the_choices(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celeriac", "-A", "tests.integration.jsonlog_app", command,
         "--log-format", "xml"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "'xml' is not one of 'text', 'json'" in done.stderr
