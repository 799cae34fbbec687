"""Celery's "First steps with Django" recipe on celeriac: a real Django project on PostgreSQL.

``examples/django`` is the recipe unchanged but for the import line: ``proj/celery.py`` with
``config_from_object('django.conf:settings', namespace='CELERY')`` and ``autodiscover_tasks()``,
``proj/__init__.py`` importing the app (so ``manage.py`` loads it), a ``shared_task`` in an app's
``tasks.py``, and a view that queues work with ``delay_on_commit``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.examples.conftest import vhost_and_schema
from tests.examples.test_seed_examples import Worker
from tests.services import POSTGRES_URL

pytest.importorskip("django", reason="Django is a test dependency (make install)")
pytestmark = pytest.mark.timeout(180)

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "django"


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    with vhost_and_schema("django") as (broker, schema):
        yield {
            **os.environ,
            "PYTHONPATH": str(PROJECT),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_SCHEMA": schema,
            "BROKER_URL": broker,
            "RESULT_BACKEND": f"db+{POSTGRES_URL}?schema={schema}",
        }


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def worker(env: dict[str, str]) -> Iterator[Worker]:
    manage(env, "migrate", "-v", "0")
    process = subprocess.Popen(
        [sys.executable, "-m", "celeriac", "-A", "proj", "worker", "-l", "info"],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = Worker(process)
    try:
        running.wait_for("ready")
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_manage_py_loads_the_app_and_passes_checks(env: dict[str, str]) -> None:
    out = manage(env, "check")
    assert "System check identified no issues" in out


def test_the_worker_discovers_the_apps_tasks(worker: Worker) -> None:
    assert "orders.tasks.process_order" in worker.output
    assert "proj.celery.debug_task" in worker.output


SCRIPT = """
import json, time
from django.db import transaction
from django.test import Client
from orders.models import Order
from orders.tasks import process_order

client = Client()
answer = client.post("/orders/", data=json.dumps({"item": "tea", "quantity": 3}),
                     content_type="application/json").json()

# Queued inside a transaction that stays open a while: the task must wait for the commit.
with transaction.atomic():
    slow = Order.objects.create(item="slow", quantity=1)
    process_order.delay_on_commit(slow.id)
    time.sleep(1.5)

# Queued inside a transaction that rolls back: nothing is sent.
try:
    with transaction.atomic():
        gone = Order.objects.create(item="gone", quantity=2)
        process_order.delay_on_commit(gone.id)
        raise RuntimeError("roll back")
except RuntimeError:
    pass

states = {}
for _ in range(100):
    states = {o.item: (o.status, o.processed_by) for o in Order.objects.all()}
    if all(status == "processed" for status, _ in states.values()):
        break
    time.sleep(0.1)
print(json.dumps([answer, states]))
"""


def test_delay_on_commit_waits_for_the_commit_and_skips_rollbacks(
    env: dict[str, str], worker: Worker
) -> None:
    out = manage(env, "shell", "-c", SCRIPT)
    answer, states = json.loads(out.strip().splitlines()[-1])
    assert isinstance(answer["order"], int)
    assert set(states) == {"tea", "slow"}  # "gone" was rolled back
    assert all(status == "processed" and by for status, by in states.values()), states
    received = [line for line in worker.lines if "process_order[" in line and "received" in line]
    failed = [line for line in worker.lines if "process_order[" in line and "failed" in line]
    assert len(received) == 2 and failed == [], worker.output
