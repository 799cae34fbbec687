"""The FastAPI twin of seed 004's app (``process_data.asgi``) against the real services.

One start-up for the module: a real uvicorn serving ``create_asgi_app`` and one celeriac worker
on the same task module as the Flask app, over RabbitMQ (a vhost of its own), with the jobs and
Celery's result tables in a PostgreSQL schema of its own (``conftest.process_data_env``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.examples.conftest import ExampleEnv, free_port

pytestmark = pytest.mark.timeout(180)


class Twin:
    """The running uvicorn and worker, and the base URL of the API."""

    def __init__(self, example: ExampleEnv, port: int) -> None:
        self.example = example
        self.url = f"http://127.0.0.1:{port}"


def start(args: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "uvicorn exited during start-up"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"uvicorn did not answer on {url} within {timeout}s")


@pytest.fixture(scope="module")
def twin(process_data_env: ExampleEnv) -> Iterator[Twin]:
    env = process_data_env.env
    bin_dir = env["BIN"]
    port = free_port()
    run_dir = env["RUN_DIR"]
    with open(f"{run_dir}/worker.log", "wb") as wlog, open(f"{run_dir}/uvicorn.log", "wb") as ulog:
        worker = start(
            [
                f"{bin_dir}/celeriac",
                "-A",
                "process_data.tasks",
                "worker",
                "-n",
                "twin@%h",
                "-c",
                "2",
            ],
            env,
            wlog,
        )
        web = start(
            [
                f"{bin_dir}/uvicorn",
                "--factory",
                "process_data.asgi:create_asgi_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env,
            ulog,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}", web)
            yield Twin(process_data_env, port)
        finally:
            stop(web)
            stop(worker)


async def post_all(url: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post("/api/process_data", json={"value": i, "nested": {"w": [i, 1]}})
                for i in range(count)
            )
        )


def test_posts_are_answered_at_once_and_the_worker_completes_them(twin: Twin) -> None:
    replies = asyncio.run(post_all(twin.url, 40))
    assert [reply.status_code for reply in replies] == [202] * 40
    ids = {reply.json()["task_id"] for reply in replies}
    assert len(ids) == 40
    deadline = time.monotonic() + 90
    while True:
        jobs = twin.example.jobs()
        done = {job_id for job_id in ids if jobs.get(job_id, ("missing", None))[0] == "done"}
        if done == ids:
            break
        assert time.monotonic() < deadline, f"{len(ids - done)} of 40 jobs not done"
        time.sleep(0.3)
    assert {str(jobs[job_id][1]).split("@")[0] for job_id in ids} == {"twin"}
    first = sorted(ids)[0]
    reply = httpx.get(f"{twin.url}/api/tasks/{first}", timeout=30)
    body = reply.json()
    assert reply.status_code == 200 and body["state"] == "SUCCESS", body
    assert body["result"]["keys"] == ["nested", "value"]
    assert body["worker"].startswith("twin@")


def test_bad_input_is_refused_and_enqueues_nothing(twin: Twin) -> None:
    before = len(twin.example.jobs())
    post = f"{twin.url}/api/process_data"
    json_type = {"Content-Type": "application/json"}
    reply = httpx.post(post, content=b"{not json", headers=json_type)
    assert reply.status_code == 400 and "not valid JSON" in reply.json()["error"]
    reply = httpx.post(post, content=b"plain", headers={"Content-Type": "text/plain"})
    assert reply.status_code == 415 and "Content-Type: application/json" in reply.json()["error"]
    big = json.dumps({"blob": "x" * 100_000}).encode()
    reply = httpx.post(post, content=big, headers=json_type)
    assert reply.status_code == 413 and "larger than the limit" in reply.json()["error"]
    # A chunked body declares no length: the limit still holds while reading it.
    reply = httpx.post(post, content=iter([big[:50_000], big[50_000:]]), headers=json_type)
    assert reply.status_code == 413, reply.text
    assert len(twin.example.jobs()) == before

    reply = httpx.get(f"{twin.url}/api/tasks/not-an-id")
    assert reply.status_code == 400 and "is not a task id" in reply.json()["error"]
    reply = httpx.get(f"{twin.url}/api/tasks/{uuid.uuid4()}")
    assert reply.status_code == 404 and "no task" in reply.json()["error"]


def test_a_post_answers_503_when_the_broker_is_down(twin: Twin) -> None:
    """The app in-process (httpx's ASGI transport) with its broker on a closed port."""
    script = (
        "import asyncio, json, time, httpx\n"
        "from process_data.asgi import create_asgi_app\n"
        "async def main():\n"
        "    transport = httpx.ASGITransport(app=create_asgi_app())\n"
        "    async with httpx.AsyncClient(transport=transport, base_url='http://t') as c:\n"
        "        t = time.monotonic()\n"
        "        r = await c.post('/api/process_data', json={'value': 1})\n"
        "        print(json.dumps([r.status_code, r.json(), time.monotonic() - t]))\n"
        "asyncio.run(main())\n"
    )
    env = {
        **twin.example.env,
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}//",
        "PUBLISH_TIMEOUT": "3",
    }
    before = len(twin.example.jobs())
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    status, body, elapsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == 503 and "unavailable" in body["error"], body
    assert elapsed < 30, elapsed
    assert len(twin.example.jobs()) == before
