"""``celeriac worker -B``: beat runs inside the worker, which executes what it sends."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from celeriac.beat.stores import store_from_url

pytestmark = pytest.mark.slow

CELERIAC = str(Path(sys.executable).parent / "celeriac")

APP = """
import os
from celeriac import Celery

app = Celery("beatwork", broker=os.environ["BEAT_BROKER"])
app.conf.beat_lease_seconds = 2.0


@app.on_after_configure.connect
def setup_periodic_tasks(sender, **kwargs):
    sender.add_periodic_task(0.5, touch.s("every-half-second"))


@app.task
def touch(word):
    with open(os.environ["BEAT_OUT"], "a") as out:
        out.write(word + "\\n")
"""


async def test_worker_with_embedded_beat_runs_periodic_tasks(tmp_path: Path) -> None:
    (tmp_path / "beatwork.py").write_text(APP)
    out = tmp_path / "out.txt"
    broker = f"sqlite:///{tmp_path / 'broker.sqlite'}"
    env = {**os.environ, "BEAT_BROKER": broker, "BEAT_OUT": str(out)}
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [CELERIAC, "-A", "beatwork", "worker", "-B", "-P", "threads", "-c", "1", "-l", "info"],
        cwd=tmp_path,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not out.exists() or len(out.read_text().splitlines()) < 3:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert set(out.read_text().splitlines()) == {"every-half-second"}
    assert "Scheduler: Sending due task beatwork.touch" in log.read_text()
    store = store_from_url(broker, namespace="beatwork")
    try:
        assert await store.lease_holder() is None  # released on the warm shutdown
        assert list(await store.load()) == ['beatwork.touch("every-half-second")@every:0.5']
    finally:
        await store.close()
