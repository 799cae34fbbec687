"""``result_backend = "django-db"``: a celeriac worker stores results in django-celery-results'
tables of a real Django project on PostgreSQL (a schema per run, its migrations applied there).

What is checked: the rows are what django-celery-results' models and Celery's own
``DatabaseBackend`` read (state, result, traceback, ``result_extended``'s columns), celeriac's
``AsyncResult`` reads them back, and a result that Celery's backend writes is read by celeriac.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.examples.conftest import vhost_and_schema
from tests.examples.test_django import PROJECT, manage
from tests.examples.test_seed_examples import Worker

pytest.importorskip("django_celery_results", reason="a test dependency (make install)")
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    import os  # noqa: PLC0415

    with vhost_and_schema("djresults") as (broker, schema):
        yield {
            **os.environ,
            "PYTHONPATH": str(PROJECT),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_SCHEMA": schema,
            "BROKER_URL": broker,
            "RESULT_BACKEND": "django-db",
            "RESULT_EXTENDED": "1",
        }


@pytest.fixture(scope="module")
def worker(env: dict[str, str]) -> Iterator[Worker]:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    manage(env, "migrate", "-v", "0")
    process = subprocess.Popen(
        [sys.executable, "-m", "celeriac", "-A", "proj", "worker", "-l", "info", "-c", "2"],
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


def shell(env: dict[str, str], script: str) -> object:
    """Run ``script`` in ``manage.py shell``; the JSON of its last line."""
    out = manage(env, "shell", "-c", script)
    return json.loads(out.strip().splitlines()[-1])


ORM_SCRIPT = """
import json
from django_celery_results.models import TaskResult
from orders.models import Order
from orders.tasks import process_order

order = Order.objects.create(item="tea", quantity=3)
ok = process_order.delay(order.id)
bad = process_order.delay(10**9)  # no such order: the task raises DoesNotExist
value = ok.get(timeout=60)
try:
    bad.get(timeout=60)
    raised = None
except Exception as exc:
    raised = type(exc).__name__
rows = {}
for name, res in (("ok", ok), ("bad", bad)):
    row = TaskResult.objects.get(task_id=res.id)
    rows[name] = {
        "status": row.status, "result": json.loads(row.result), "content_type": row.content_type,
        "encoding": row.content_encoding, "task_name": row.task_name, "worker": row.worker,
        "args": row.task_args, "traceback": row.traceback or "", "done": row.date_done is not None,
    }
print(json.dumps({"order": order.id, "value": value, "raised": raised, "state": bad.state,
                  "rows": rows}))
"""


def test_worker_results_land_in_django_celery_results_tables(
    env: dict[str, str], worker: Worker
) -> None:
    got = shell(env, ORM_SCRIPT)
    assert isinstance(got, dict)
    order = got["order"]
    assert got["value"] == {"order": order, "quantity": 3}
    assert got["raised"] == "DoesNotExist" and got["state"] == "FAILURE"
    ok, bad = got["rows"]["ok"], got["rows"]["bad"]
    assert ok["status"] == "SUCCESS" and ok["result"] == {"order": order, "quantity": 3}
    assert (ok["content_type"], ok["encoding"]) == ("application/json", "utf-8")
    assert ok["task_name"] == "orders.tasks.process_order" and ok["worker"]
    assert json.loads(ok["args"]) is not None and ok["done"]
    assert bad["status"] == "FAILURE" and bad["result"]["exc_type"].endswith("DoesNotExist")
    assert "DoesNotExist" in bad["traceback"]


CROSS_SCRIPT = """
import json, uuid
import celery
from proj.celery import app as ours

theirs = celery.Celery("proj", broker="memory://", backend="django-db")
theirs.conf.result_extended = True

# Celery's DatabaseBackend writes; celeriac reads.
written = str(uuid.uuid4())
theirs.backend.store_result(written, {"from": "celery", "n": [1, 2]}, "SUCCESS")
ours_sees = ours.AsyncResult(written)
seen = [ours_sees.state, ours_sees.get(timeout=10)]

# celeriac's worker wrote this one (a real task); Celery's backend reads it.
from orders.models import Order
from orders.tasks import process_order
order = Order.objects.create(item="cake", quantity=2)
done = process_order.delay(order.id)
done.get(timeout=60)
meta = theirs.backend.get_task_meta(done.id)

# A saved group: celeriac saves it, Celery's backend restores it.
group = ours.GroupResult(str(uuid.uuid4()), [ours.AsyncResult(done.id)])
group.save()
restored = theirs.GroupResult.restore(group.id)
print(json.dumps({"seen": seen, "status": meta["status"], "result": meta["result"],
                  "name": meta.get("task_name"), "order": order.id,
                  "group": [r.id for r in restored.results], "member": done.id}))
"""


def test_results_cross_with_celerys_own_django_backend(env: dict[str, str], worker: Worker) -> None:
    pytest.importorskip("celery")
    got = shell(env, CROSS_SCRIPT)
    assert isinstance(got, dict)
    assert got["seen"] == ["SUCCESS", {"from": "celery", "n": [1, 2]}]
    assert got["status"] == "SUCCESS"
    assert got["result"] == {"order": got["order"], "quantity": 2}
    assert got["name"] == "orders.tasks.process_order"
    assert got["group"] == [got["member"]]
