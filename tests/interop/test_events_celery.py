"""Events across the two implementations on Redis and RabbitMQ, with the real ``celery``.

* ``celery events --dump`` (Celery's own receiver) prints a celeriac worker's heartbeats
  and task events;
* ``celeriac events --dump`` prints a Celery worker's (``celery worker -E``).

Each test runs under a Redis key prefix of its own (``global_keyprefix``, which kombu
applies to pub/sub channels too) or in a RabbitMQ vhost of its own; every process is
bounded in time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import services

celery = pytest.importorskip("celery")

pytestmark = [pytest.mark.timeout(120), pytest.mark.interop]

ROOT = Path(__file__).resolve().parents[2]

CELERY_APP = """
from celery import Celery
app = Celery("celapp", broker={url!r})
if {prefix!r}:
    app.conf.broker_transport_options = {{"global_keyprefix": {prefix!r}}}
app.conf.worker_hijack_root_logger = False

@app.task(name="evt.add")
def add(x, y):
    return x + y
"""

CELERIAC_APP = """
from celeriac import Celery
app = Celery("cacapp", broker={url!r})
if {prefix!r}:
    app.conf.broker_transport_options = {{"global_keyprefix": {prefix!r}}}
"""


class Output:
    """A process's output lines, read by a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, found: Callable[[list[str]], bool], seconds: float = 40.0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if found(list(self.lines)):
                return True
            time.sleep(0.2)
        return False


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("amqp", marks=pytest.mark.amqp),
    ]
)
def place(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str, Path]]:
    """A broker URL (Redis under a fresh key prefix, or a RabbitMQ vhost of its own), the
    prefix, and a directory for the app modules (importable)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("celapp", "cacapp"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    if request.param == "amqp":
        with services.amqp_vhost() as vhost:
            yield services.amqp_vhost_url(vhost), "", tmp_path
        return
    client = services.redis_client()
    prefix = services.key_prefix("evinterop")
    yield services.REDIS_URL, prefix, tmp_path
    services.delete_prefixed(client, prefix)
    client.close()


def _spawn(args: list[str], cwd: Path, text: bool = True) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{cwd}{os.pathsep}{ROOT}"}
    return subprocess.Popen(
        [sys.executable, "-m", *args], cwd=cwd, env=env, text=text,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _stop(*processes: subprocess.Popen[str]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_celery_events_dump_sees_a_celeriac_worker(place: tuple[str, str, Path]) -> None:
    url, prefix, where = place
    (where / "celapp.py").write_text(CELERY_APP.format(url=url, prefix=prefix))
    (where / "cacapp.py").write_text(
        CELERIAC_APP.format(url=url, prefix=prefix)
        + "\n@app.task(name='evt.add')\ndef add(x, y):\n    return x + y\n"
    )
    dump = _spawn(["celery", "-A", "celapp", "events", "--dump"], where)
    worker = _spawn(
        ["celeriac", "-A", "cacapp", "worker", "-E", "-c", "1", "-P", "threads",
         "-n", "cac@test", "-l", "warning"], where,
    )  # fmt: skip
    out, worker_out = Output(dump), Output(worker)
    try:
        assert out.wait_for(lambda lines: any("cac@test" in x and "heartbeat" in x for x in lines))
        import cacapp

        task_id = cacapp.add.delay(2, 3).id
        assert out.wait_for(
            lambda lines: any("task succeeded" in x and task_id in x for x in lines)
        ), "\n".join(out.lines + worker_out.lines)
        line = next(x for x in out.lines if "task succeeded" in x and task_id in x)
        assert line.startswith("cac@test [") and "result=5" in line and "evt.add" in line
        assert any("task received" in x and task_id in x for x in out.lines)
        assert any("task started" in x and task_id in x for x in out.lines)
    finally:
        _stop(worker, dump)


def test_celeriac_events_dump_sees_a_celery_worker(place: tuple[str, str, Path]) -> None:
    url, prefix, where = place
    (where / "celapp.py").write_text(CELERY_APP.format(url=url, prefix=prefix))
    (where / "cacapp.py").write_text(CELERIAC_APP.format(url=url, prefix=prefix))
    dump = _spawn(["celeriac", "-A", "cacapp", "events", "--dump", "--timeout", "60"], where)
    worker = _spawn(
        ["celery", "-A", "celapp", "worker", "-E", "-P", "solo", "-n", "cel@test",
         "--without-mingle", "-l", "warning"], where,
    )  # fmt: skip
    out, worker_out = Output(dump), Output(worker)
    try:
        assert out.wait_for(
            lambda lines: any("cel@test" in x and "heartbeat" in x for x in lines)
        ), "\n".join(out.lines + worker_out.lines)
        import celapp

        task_id = celapp.add.delay(2, 3).id
        assert out.wait_for(
            lambda lines: any("task succeeded" in x and task_id in x for x in lines)
        ), "\n".join(out.lines + worker_out.lines)
        line = next(x for x in out.lines if "task succeeded" in x and task_id in x)
        assert line.startswith("cel@test [") and "result=5" in line
        heartbeat = next(x for x in out.lines if "cel@test" in x and "heartbeat" in x)
        assert "sw_ident=py-celery" in heartbeat and "freq=2.0" in heartbeat
    finally:
        _stop(worker, dump)
