"""The adaptive prefetch window, with real prefork workers on Redis (issue #17).

Two workers with default settings (``-c 1``) consume ``celery``; a third, with
``--prefetch-multiplier 4`` set explicitly, consumes ``fixed``. The window is observed
through ``inspect stats`` (``prefetch_window``), never through timings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.window_app import app as window_app
from tests.integration.window_app import noop, slow
from tests.services import REDIS_URL, delete_prefixed, key_prefix, redis_client

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.window_app"
DEFAULTS = ("win-a@test", "win-b@test")
FIXED = "win-fixed@test"
FIXED_WINDOW = 4  # -c 1 x the default multiplier 4


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app on a fresh key prefix, with the three workers running and answering."""
    prefix = key_prefix("win")
    env = {**os.environ, "WINDOW_URL": REDIS_URL, "WINDOW_PREFIX": prefix, "PYTHONPATH": str(ROOT)}
    app = window_app
    app.conf.broker_url = app.conf.result_backend = REDIS_URL
    app.conf.broker_transport_options = {"global_keyprefix": prefix}
    app.conf.result_backend_transport_options = {"global_keyprefix": prefix}
    logs = tmp_path_factory.mktemp("window")
    procs = [_start(env, logs, name, "-Q", "celery") for name in DEFAULTS]
    procs.append(_start(env, logs, FIXED, "-Q", "fixed", "--prefetch-multiplier", "4"))
    client = redis_client()
    try:
        _wait_online(app, procs, logs)
        yield app
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        app.close()
        delete_prefixed(client, prefix)
        client.close()


def _start(env: dict[str, str], logs: Path, name: str, *flags: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celeriac", "-A", APP, "worker", "-n", name, "-c", "1"]
    return subprocess.Popen(
        [*command, "-P", "prefork", "-l", "info", *flags],
        env=env,
        cwd=ROOT,
        stdout=(logs / f"{name}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait_online(app: Any, procs: list[subprocess.Popen[bytes]], logs: Path) -> None:
    names = {*DEFAULTS, FIXED}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in procs):
            text = "".join(p.read_text()[-2000:] for p in logs.iterdir())
            raise AssertionError(f"a worker exited: {text}")
        if _names(app.control.ping(timeout=1.0)) >= names:
            return
    raise AssertionError("the workers never answered")


def _names(replies: list[dict[str, Any]]) -> set[str]:
    return {name for reply in replies for name in reply}


def _stats(app: Any, names: tuple[str, ...]) -> dict[str, Any]:
    replies = app.control.inspect(destination=list(names), timeout=2.0).stats() or {}
    assert set(replies) == set(names), replies
    return replies


def _drain(app: Any, queue: str, names: tuple[str, ...], n: int) -> dict[str, Any]:
    """Send ``n`` no-ops to ``queue`` and wait until ``names`` have run them all."""
    before = sum(s["total"].get("win.noop", 0) for s in _stats(app, names).values())
    for _ in range(n):
        noop.apply_async(queue=queue)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        stats = _stats(app, names)
        if sum(s["total"].get("win.noop", 0) for s in stats.values()) - before >= n:
            return stats
        time.sleep(0.2)
    raise AssertionError("the burst was not drained")


def test_a_default_worker_widens_its_window_for_a_burst_of_short_tasks(app: Any) -> None:
    stats = _drain(app, "celery", DEFAULTS, 3000)
    windows = [s["prefetch_window"] for s in stats.values()]
    assert all(w["adaptive"] and w["fixed"] == FIXED_WINDOW for w in windows), windows
    assert max(w["peak"] for w in windows) > FIXED_WINDOW, windows
    assert all(w["average_runtime"] is not None for w in windows if w["peak"] > FIXED_WINDOW)


def test_an_explicit_multiplier_keeps_the_fixed_window(app: Any) -> None:
    stats = _drain(app, "fixed", (FIXED,), 3000)
    window = stats[FIXED]["prefetch_window"]
    assert window["adaptive"] is False
    assert window["peak"] == window["ceiling"] == FIXED_WINDOW
    assert stats[FIXED]["prefetch_count"] == FIXED_WINDOW


def test_long_tasks_after_short_ones_are_shared_by_both_workers(app: Any) -> None:
    _drain(app, "celery", DEFAULTS, 1000)  # both windows were wide a moment ago
    time.sleep(0.3)  # idle for longer than the window's horizon
    # One batch, so the whole burst is there when the idle workers' fetches wake up.
    requests = [
        app.build_request(slow.name, (0.5,), {}, {"queue": "celery"}, slow) for _ in range(6)
    ]
    app.run_sync(app.apublish(requests))
    results = [slow.AsyncResult(request.message.id) for request in requests]
    ran_by = Counter(result.get(timeout=60) for result in results)
    assert set(ran_by) == set(DEFAULTS), ran_by  # neither worker held the whole burst
