"""A smoke run of the benchmark harness: celeriac only, a tiny N, no peers installed.

It checks that ``python -m benchmarks`` still runs end to end (producer, worker, counter,
report, JSON files), not how fast anything is. The harness flushes the Redis databases it
uses, so it runs against a throwaway ``redis-server`` of its own (``BENCH_REDIS_PORT``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_redis_connection import RedisServer

pytestmark = [pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
N = 200


def test_harness_runs_celeriac_end_to_end(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, "--appendonly", "no").start()
    env = {**os.environ, "BENCH_REDIS_PORT": str(server.port)}
    command = [
        sys.executable, "-m", "benchmarks", "--quick", "--only", "celeriac",
        "--workloads", "throughput,latency", "-n", str(N), "--first-cases", "1",
        "--redis-db-base", "14", "--no-install", "--out", str(tmp_path),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=90
        )
    finally:
        server.kill()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "No-op throughput on Redis" in done.stdout
    # the headline is the sync-only app with no worker flag, and its row says so
    assert re.search(r"\| celeriac +\| sync-only app, no flags +\|", done.stdout)

    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["meta"]["systems"] == ["celeriac"]
    rows = {(r["workload"], r["case"]): r for r in latest["summary"]}

    drain = rows[("throughput", "defaults/noop/results")]
    assert drain["complete"] is True
    assert drain["completed"] == N  # every task counted once through the /dev/shm file
    assert drain["drain_rate"] > 0 and drain["enqueue_rate"] > 0
    assert drain["pss_mb"] > 0  # the worker's memory was read from /proc
    assert rows[("enqueue", "enqueue_bulk")]["enqueue_rate"] > 0

    latency = rows[("latency", "round_trip")]
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]

    full = [p for p in tmp_path.glob("*.json") if p.name != "latest.json"]
    assert len(full) == 1
    records = json.loads(full[0].read_text())["records"]
    assert len(records[-1]["samples_ms"]) >= 20  # raw round trips kept in the full file
