"""Seed 004's system end to end: ``deploy/run-local.sh`` on loopback, POSTs through nginx.

One start-up for the module: nginx → gunicorn (Flask) → RabbitMQ (a vhost of its own) → two
celeriac workers and beat, with the jobs and Celery's result tables in a PostgreSQL schema of its
own. The tests check what the seed promises: every POST gets a task id at once, every task
reaches SUCCESS with its row written, both workers take a share, bad input is refused, and
``down`` leaves no process behind.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.examples.conftest import EXAMPLE, ExampleEnv, free_port
from tests.services import unavailable

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
RUN_LOCAL = ROOT / "deploy" / "run-local.sh"


class Stack:
    """The running topology: its environment, and a way to talk HTTP to nginx."""

    def __init__(self, example: ExampleEnv) -> None:
        self.env = example.env
        self.schema = example.schema
        self.jobs = example.jobs
        self.port = int(self.env["HTTP_PORT"])

    def run_local(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RUN_LOCAL), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Content-Type": content_type} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw.decode(errors="replace")
        finally:
            conn.close()


@pytest.fixture(scope="module")
def stack(process_data_env: ExampleEnv) -> Iterator[Stack]:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        unavailable("nginx is not installed (apt-get install nginx-light)")
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        unavailable("gunicorn is not installed in the test environment")
    running = Stack(process_data_env)
    try:
        started = running.run_local("up")
        assert started.returncode == 0, started.stdout + started.stderr
        yield running
    finally:
        running.run_local("down")


def post_document(stack: Stack, value: int) -> tuple[int, Any, float]:
    body = json.dumps({"value": value, "tags": ["e2e"], "nested": {"weight": value % 7}}).encode()
    started = time.perf_counter()
    status, reply = stack.request("POST", "/api/process_data", body)
    return status, reply, time.perf_counter() - started


def wait_until_done(
    stack: Stack, ids: set[str], timeout: float = 180
) -> dict[str, tuple[str, str | None]]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = stack.jobs()
        if all(jobs.get(job_id, ("missing", None))[0] == "done" for job_id in ids):
            return jobs
        if time.monotonic() > deadline:
            pending = [job_id for job_id in ids if jobs.get(job_id, ("missing",))[0] != "done"]
            pytest.fail(f"{len(pending)} of {len(ids)} jobs not done in {timeout}s: {pending[:5]}")
        time.sleep(0.5)


def test_seed_posts_and_a_bounded_load_all_complete_on_both_workers(stack: Stack) -> None:
    seed = [post_document(stack, value) for value in range(1, 51)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        load = list(pool.map(lambda value: post_document(stack, value), range(51, 2051)))
    replies = seed + load
    assert [status for status, _, _ in replies] == [202] * 2050
    ids = {reply["task_id"] for _, reply, _ in replies}
    assert len(ids) == 2050

    jobs = wait_until_done(stack, ids)
    by_worker: dict[str | None, int] = {}
    for job_id in ids:
        worker = jobs[job_id][1]
        by_worker[worker] = by_worker.get(worker, 0) + 1
    names = sorted(str(name).split("@")[0] for name in by_worker)
    assert names == ["worker1", "worker2"], by_worker
    assert min(by_worker.values()) >= 2050 // 10, by_worker  # each took a real share

    latencies = sorted(elapsed * 1000 for _, _, elapsed in load)
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(f"POST through nginx, concurrency 50: p50 {p50:.1f} ms, p99 {p99:.1f} ms; {by_worker}")
    # The dashboard saw the work through the workers' events, on both workers.
    dashboard = int(stack.env["DASHBOARD_PORT"])
    conn = http.client.HTTPConnection("127.0.0.1", dashboard, timeout=30)
    conn.request("GET", "/api/tasks?limit=100000&state=SUCCESS")
    listed = json.loads(conn.getresponse().read())
    conn.close()
    assert {task_id for task_id in listed} >= {reply["task_id"] for _, reply, _ in seed}
    assert {task["worker"].split("@")[0] for task in listed.values()} == {"worker1", "worker2"}
    for _, reply, _ in seed[:5]:
        status, body = stack.request("GET", f"/api/tasks/{reply['task_id']}")
        assert status == 200 and body["state"] == "SUCCESS", body
        assert body["result"]["keys"] == ["nested", "tags", "value"]


def test_bad_input_is_refused_and_enqueues_nothing(stack: Stack) -> None:
    before = len(stack.jobs())
    status, body = stack.request("POST", "/api/process_data", b"{not json")
    assert status == 400 and "not valid JSON" in body["error"]
    status, body = stack.request("POST", "/api/process_data", b"plain", content_type="text/plain")
    assert status == 415 and "Content-Type: application/json" in body["error"]
    big = json.dumps({"blob": "x" * 100_000}).encode()
    status, body = stack.request("POST", "/api/process_data", big)
    assert status == 413 and "larger than the limit" in body["error"]
    assert len(stack.jobs()) == before

    status, body = stack.request("GET", "/api/tasks/not-an-id")
    assert status == 400 and "is not a task id" in body["error"]
    status, body = stack.request("GET", f"/api/tasks/{uuid.uuid4()}")
    assert status == 404 and "no task" in body["error"]


def test_a_post_answers_503_when_the_broker_is_down(stack: Stack) -> None:
    """The web app with its broker on a closed port: 503 within the publish timeout, no job kept."""
    script = (
        "import json, time\n"
        "from process_data import create_app\n"
        "client = create_app().test_client()\n"
        "t = time.monotonic()\n"
        "r = client.post('/api/process_data', json={'value': 1})\n"
        "print(json.dumps([r.status_code, r.get_json(), time.monotonic() - t]))\n"
    )
    env = {
        **stack.env,
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}//",
        "PYTHONPATH": str(EXAMPLE),
    }
    before = len(stack.jobs())
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    status, body, elapsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == 503 and "unavailable" in body["error"], body
    assert elapsed < 30, elapsed
    assert len(stack.jobs()) == before


def test_down_stops_every_process_it_started(stack: Stack) -> None:
    status = stack.run_local("status")
    assert set(status.stdout.split()) == {"beat", "dashboard", "nginx", "web", "worker1", "worker2"}
    run_dir = Path(stack.env["RUN_DIR"])
    pids = [int((run_dir / f"{name}.pid").read_text()) for name in status.stdout.split()]
    stack.run_local("down")
    alive = []
    for pid in pids:
        try:
            os.killpg(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    assert alive == []
    assert stack.run_local("status").stdout.strip() == "nothing running"
