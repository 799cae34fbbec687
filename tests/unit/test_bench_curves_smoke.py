"""A smoke run of the scaling curves: two curves, tiny sizes, a throwaway Redis.

It checks that ``python -m benchmarks.curves --quick`` still runs end to end (producer,
worker, counter, INFO commandstats, table, PNG, curves.json), not how fast anything is.
``--own-redis`` starts the throwaway server itself (the curves flush db 14).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.curves import render_curve
from tests.integration.test_redis_connection import REDIS_SERVER, free_port

pytestmark = [pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
N = 60
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _curves(tmp_path: Path, port: int | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_REDIS_")}
    if port is not None:
        env["BENCH_REDIS_PORT"] = str(port)
    command = [sys.executable, "-m", "benchmarks.curves", "--quick", "-n", str(N), "--reps", "1",
               "--out", str(tmp_path), "--img", str(tmp_path / "img"), *args]  # fmt: skip
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


def test_curves_write_a_table_a_png_and_json(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    done = _curves(tmp_path, None, "--own-redis", "--curves", "queues")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "### Drain rate vs queues one worker consumes (-Q)" in done.stdout
    header = "| queues | tasks timed | drain/s | CPU µs/task | Redis cmds/task | round trips/task |"
    assert header in done.stdout
    assert (tmp_path / "img" / "curve-queues.png").read_bytes()[:8] == PNG_MAGIC
    document = json.loads((tmp_path / "curves.json").read_text())
    assert list(document["curves"]) == ["queues"]
    rows = document["curves"]["queues"]["rows"]
    assert [row["x"] for row in rows] == [1, 10, 100]
    assert all(row["complete"] for row in rows)  # every queue of -Q was drained
    assert all(row["redis_cpu_us_per_task"] is not None for row in rows)  # the private server
    assert all(row["round_trips_per_task"] is not None for row in rows)  # INFO was read
    assert document["meta"]["private_redis"] is True
    assert document["meta"]["commit"] and document["meta"]["load_before"]


def test_curves_say_when_redis_is_unreachable(tmp_path: Path) -> None:
    done = _curves(tmp_path, free_port(), "--curves", "queues")
    assert done.returncode != 0
    assert "Redis is not reachable" in done.stderr
    assert not (tmp_path / "curves.json").exists()


def test_a_curve_table_states_how_each_cost_grows() -> None:
    rows = [
        {"x": 1, "reps": 1, "drain_rate": 1000.0, "cpu_us_per_task": 100.0,
         "commands_per_task": 7.0, "round_trips_per_task": 0.5, "rss_mb": 100.0},
        {"x": 100, "reps": 1, "drain_rate": 500.0, "cpu_us_per_task": 300.0,
         "commands_per_task": 70.0, "round_trips_per_task": 0.5, "rss_mb": 100.0},
    ]  # fmt: skip
    text = render_curve("queues", rows)
    assert text.splitlines()[0] == "### Drain rate vs queues one worker consumes (-Q)"
    assert "| 100    | -           | 500     | 300.0" in text  # the x column, then the costs
    assert (
        "Growth, 1 → 100: drain/s ×0.50, CPU/task ×3.00, cmds/task ×10.00, "
        "round trips/task ×1.00, RSS ×1.00." in text
    )
