"""The examples of seeds 000 to 003, each run as its README says: a worker, then the client code.

They share one RabbitMQ vhost and one PostgreSQL schema (results), made for this module; each
example gets its own worker. The examples read their servers from ``BROKER_URL`` and
``RESULT_BACKEND``, so nothing but the environment differs from a user's run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.examples.conftest import vhost_and_schema
from tests.services import POSTGRES_URL

pytestmark = pytest.mark.timeout(240)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CELERIAC = [sys.executable, "-m", "celeriac"]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """``BROKER_URL`` (a fresh vhost) and ``RESULT_BACKEND`` (a fresh schema) for the examples."""
    with vhost_and_schema("examples") as (broker, schema):
        yield {"BROKER_URL": broker, "RESULT_BACKEND": f"db+{POSTGRES_URL}?schema={schema}"}


class Worker:
    """A worker process whose output is collected as it runs."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker never printed {text!r}:\n{''.join(self.lines)}")
            time.sleep(0.1)

    @property
    def output(self) -> str:
        return "".join(self.lines)


@contextmanager
def worker(example: str, env: dict[str, str], *args: str) -> Iterator[Worker]:
    """Run ``celeriac <args>`` in the example's folder until the block ends; warm shutdown."""
    process = subprocess.Popen(
        [*CELERIAC, *args],
        cwd=EXAMPLES / example,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Worker(process)
    try:
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def example_env(example: str, servers: dict[str, str], **extra: str) -> dict[str, str]:
    path = str(EXAMPLES / example)
    return {**os.environ, **servers, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


def run(example: str, env: dict[str, str], *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=EXAMPLES / example,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_seed_000_two_heads_answers_2_plus_2(servers: dict[str, str]) -> None:
    env = example_env("two_heads", {**servers, "RESULT_BACKEND": "rpc://"}, ADD_SECONDS="0.5")
    with worker("two_heads", env, "-A", "celery_dao.tasks", "worker", "-l", "info") as node:
        node.wait_for("ready")
        out = run("two_heads", env, "-m", "celery_dao")
    assert "waiting for a worker" in out
    assert out.strip().endswith("2 + 2 = 4")


def test_seed_001_the_confirmation_email_leaves_the_request(servers: dict[str, str]) -> None:
    env = example_env("email", servers)
    script = (
        "import json\n"
        "from proj.views import register\n"
        "from proj.celery import app\n"
        "answer = register('ann@example.com', 'Ann')\n"
        "print(json.dumps([answer, app.AsyncResult(answer['email_task']).get(timeout=60)]))\n"
    )
    with worker("email", env, "-A", "proj", "worker", "-l", "info") as node:
        node.wait_for("ready")
        answer, result = json.loads(run("email", env, "-c", script).strip().splitlines()[-1])
        node.wait_for("Subject: Confirm your registration")
    assert answer["status"] == "registered"
    assert result == "printed confirmation for ann@example.com"
    assert "To: ann@example.com" in node.output


def test_seed_002_web_queue_routes_by_exchange_and_stores_items(
    servers: dict[str, str], tmp_path: Path
) -> None:
    env = example_env(
        "web_queue", servers, ITEMS_DB=str(tmp_path / "items.sqlite"), BEAT_SECONDS="1"
    )
    script = (
        "import json, time\n"
        "from api import create_app\n"
        "from tasks import app\n"
        "client = create_app().test_client()\n"
        "bad = client.post('/items', json={'name': 'x'}).status_code\n"
        "ids = [client.post('/items', json={'name': f'n{i}', 'value': i}).get_json()['task_id']\n"
        "       for i in range(5)]\n"
        "rows = [app.AsyncResult(i).get(timeout=60) for i in ids]\n"
        "state = client.get(f'/tasks/{ids[0]}').get_json()\n"
        "print(json.dumps([bad, rows, state]))\n"
    )
    args = ("-A", "tasks", "worker", "-l", "info", "-Q", "high_priority,default")
    with worker("web_queue", env, *args) as node, worker("web_queue", env, "-A", "tasks", "beat"):
        node.wait_for("ready")
        assert run("web_queue", env, "main.py").strip() == "30"
        bad, rows, state = json.loads(run("web_queue", env, "-c", script).strip().splitlines()[-1])
        node.wait_for("5 items stored")
    assert bad == 400
    assert sorted(rows) == [1, 2, 3, 4, 5]
    assert state["state"] == "SUCCESS" and state["result"] == rows[0]
    # Each message ran once: the exchange-routed call reached one queue, not two.
    ran = [line for line in node.lines if "Task tasks.add[" in line and "succeeded" in line]
    assert len(ran) == 1, node.output


def test_seed_003_tutorial_prints_what_the_tutorial_says(servers: dict[str, str]) -> None:
    env = example_env("tutorial", servers)
    with worker("tutorial", env, "-A", "tasks", "worker", "-l", "info") as node:
        node.wait_for("ready")
        out = run("tutorial", env, "main.py").strip().splitlines()
    assert out == [
        "9",
        "[7, 5]",
        "Здравствуй, Пётр 1Первый!",
        "608281864034267560872252163321295376887552831379210240000000000",
        "'str' object cannot be interpreted as an integer",
    ]


def test_flasks_recipe_runs_tasks_inside_the_app_context(servers: dict[str, str]) -> None:
    env = example_env("flask_app", servers)
    with worker("flask_app", env, "-A", "flask_app", "worker", "-l", "info") as node:
        node.wait_for("ready")
        out = run(
            "flask_app",
            env,
            "-c",
            "from flask_app import greet\nprint(greet.delay('Ann').get(timeout=60))",
        )
    assert out.strip() == "hello from the Flask config, Ann"
