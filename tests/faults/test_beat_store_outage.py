"""Redis, beat's broker and schedule store, killed and restarted while beat sends a task
every second.

Beat rides the outage out: it does not exit, logs the outage once ("unreachable,
retrying") and its end once ("back after N s"), and resumes. No tick is sent twice (each
tick's message carries a task id derived from the tick, so a duplicate shows as a repeated
id) and none is skipped beyond the outage: every tick between the first and the last one
sent is in the queue, except those falling while Redis was down (after downtime a
schedule runs once, not once per missed tick).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from celeriac.beat.scheduler import tick_task_id
from tests.faults.harness import ROOT, Record, RedisServer, module_redis, point_at, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

EVERY = 1.0
OUTAGE = 4.0

server = module_redis(aof=True)


def _messages(url: str) -> list[str]:
    """The task ids of the messages waiting in the ``celery`` queue, oldest first."""
    client = redis.Redis.from_url(url)
    try:
        raw = client.lrange("celery", 0, -1)
    finally:
        client.close()
    return [json.loads(m)["headers"]["id"] for m in reversed(raw)]


def _last_run(url: str) -> float:
    client = redis.Redis.from_url(url)
    try:
        value = client.hget("celeriac:beat:faults:last_run", "tick")
    finally:
        client.close()
    assert value is not None
    return float(value.decode().split()[0])


def test_beat_rides_out_a_redis_restart(server: RedisServer, tmp_path: Path) -> None:
    record = Record(tmp_path / "record")
    env = point_at(server.url, None, record, beat_every=str(EVERY))
    log_path = tmp_path / "beat.log"
    with log_path.open("wb") as log:
        beat = subprocess.Popen(
            [sys.executable, "-m", "celeriac", "-A", "tests.faults.app", "beat", "-l", "info"],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        wait_until(lambda: len(_messages(server.url)) >= 3, 30, "beat's first ticks")
        server.kill()
        down = time.time()
        time.sleep(OUTAGE)
        server.start()
        up = time.time()
        before = len(_messages(server.url))
        wait_until(lambda: len(_messages(server.url)) >= before + 3, 30, "ticks after restart")
        assert beat.poll() is None, "beat exited during the outage"
        beat.terminate()
        assert beat.wait(20) == 0
        ids = _messages(server.url)
        last = _last_run(server.url)
        text = log_path.read_text(errors="replace")
    finally:
        if beat.poll() is None:
            beat.kill()
            beat.wait()
    # Ticks are the last run minus whole intervals: name each by its id.
    ticks = {
        tick_task_id("faults", "tick", datetime.fromtimestamp(last - k * EVERY, UTC)): last
        - k * EVERY
        for k in range(600)
    }
    sent = [ticks[i] for i in ids if i in ticks]
    duplicated = len(ids) - len(set(ids))
    first = min(sent)
    expected = {t for t in ticks.values() if first <= t <= last}
    # a tick may fall due while Redis is down (or in the second beat needs to reconnect)
    missing = {t for t in expected - set(sent) if not down - EVERY <= t <= up + 2 * EVERY}
    print(
        f"\nbeat across a {OUTAGE:.0f}s Redis restart: {len(ids)} ticks sent, {duplicated} twice,"
        f" {len(expected - set(sent))} not sent (all within the outage: {not missing})"
    )
    assert len(sent) == len(ids), "a message that is not one of the entry's ticks"
    assert duplicated == 0
    assert missing == set()
    assert text.count("unreachable, retrying") == 1, text
    assert text.count("back after") == 1, text
