"""A smoke run of ``benchmarks.web_stack``: both systems at a tiny size, through nginx.

It checks that the side-by-side benchmark of seed 004's app still runs end to end on celeriac
and on Celery (the ``PROCESS_DATA_QUEUE`` switch) and records what it measured, not how fast.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import amqp_vhost

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]


def test_the_web_benchmark_runs_both_systems(tmp_path: Path) -> None:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    with amqp_vhost():  # skips the test when RabbitMQ or rabbitmqctl is missing
        pass
    out = tmp_path / "web.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.web_stack",
        "-n",
        "20",
        "-c",
        "4",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    (record,) = json.loads(out.read_text())
    assert [o["system"] for o in record["outcomes"]] == ["celeriac", "celery"]
    assert all(o["n"] == 20 and o["errors"] == 0 for o in record["outcomes"])
    assert all(
        o["completion_s"] > 0 and o["post_p99_ms"] >= o["post_p50_ms"] for o in record["outcomes"]
    )
    assert "celeriac/Celery" in done.stdout and record["front"] == "through nginx"
