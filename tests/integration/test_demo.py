"""``celeriac demo``: the seed scenarios end to end, on the embedded store and on Redis."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

DEMO_DB = int(os.environ.get("CELERIAC_TEST_DEMO_DB", "14"))


def run_demo(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "celeriac", "demo", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_demo_on_the_embedded_store() -> None:
    out = run_demo()
    assert "embedded SQLite, no server" in out
    assert out.count("[ok ]") == 10 and "all scenarios passed" in out
    assert "608281864034267560872252163321295376887552831379210240000000000" in out


def test_demo_on_redis() -> None:
    client = redis.Redis(host="127.0.0.1", port=6379, db=DEMO_DB)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            pytest.fail("Redis at 127.0.0.1:6379 is required when CI=true")
        pytest.skip("Redis at 127.0.0.1:6379 is not reachable")
    client.flushdb()
    try:
        out = run_demo("--broker", f"redis://127.0.0.1:6379/{DEMO_DB}")
    finally:
        client.flushdb()
    assert out.count("[ok ]") == 10 and "all scenarios passed" in out
