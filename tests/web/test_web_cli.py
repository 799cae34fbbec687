"""``celeriac web``: serves the dashboard on the address and port asked, refuses bad flags."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "celeriac", "-A", "tests.web.web_app", "web", *flags]


def test_serves_with_basic_auth(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CELERIAC_BROKER_URL": "memory://", "PYTHONPATH": str(ROOT)}
    log = tmp_path / "web.log"
    process = subprocess.Popen(
        command("--port", str(port), "--basic-auth", "a:b"),
        env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/api/openapi.json"
        deadline = time.monotonic() + 30
        while True:
            try:
                anonymous = httpx.get(url, timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        known = httpx.get(url, auth=("a", "b"), timeout=5)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert anonymous.status_code == 401
    assert known.status_code == 200 and known.json()["openapi"] == "3.1.0"
    assert f"http://127.0.0.1:{port}/" in log.read_text()


def test_bad_basic_auth_is_refused_naming_it() -> None:
    env = {**os.environ, "CELERIAC_BROKER_URL": "memory://", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        command("--basic-auth", "justauser"), env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--basic-auth" in done.stderr and "'justauser' is not user:password" in done.stderr
