"""``celeriac demo``: the seed scenarios end to end, on the embedded store and on Redis."""

from __future__ import annotations

import subprocess
import sys

from tests.services import REDIS_URL, delete_prefixed, key_prefix, redis_client


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
    client = redis_client()
    prefix = key_prefix("demo")
    try:
        out = run_demo("--broker", REDIS_URL, "--key-prefix", prefix)
    finally:
        left = delete_prefixed(client, prefix)
        client.close()
    assert out.count("[ok ]") == 10 and "all scenarios passed" in out
    assert left > 0  # the demo's keys were under its prefix
