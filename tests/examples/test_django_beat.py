"""``celeriac beat -S django_celery_beat.schedulers:DatabaseScheduler``: beat's entries come
from django-celery-beat's tables of a real Django project on PostgreSQL (a schema per run, its
migrations applied there), and celeriac's lease (in the same database: the SQL store of the
``db+postgresql://`` result backend) makes two beats send each tick once.

The beats publish to a RabbitMQ vhost of the module's own, in which the test declares the
``celery`` queue and reads the messages back: a tick sent twice would show as two messages
with the same task id (beat derives the id from the entry and the tick).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.examples.conftest import vhost_and_schema
from tests.examples.test_django import PROJECT, manage
from tests.services import POSTGRES_URL, running_celeriac

pytest.importorskip("django_celery_beat", reason="a test dependency (make install)")
aio_pika = pytest.importorskip("aio_pika", reason="a test dependency (make install)")
pytestmark = pytest.mark.timeout(180)

SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"


def shell(env: dict[str, str], script: str) -> Any:
    """Run ``script`` in ``manage.py shell``; the JSON of its last line."""
    out = manage(env, "shell", "-c", script)
    return json.loads(out.strip().splitlines()[-1])


async def _drain(url: str) -> list[dict[str, Any]]:
    """Every message in the ``celery`` queue (declared if missing), taken off it."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("celery", durable=True)
        found: list[dict[str, Any]] = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            found.append(dict(message.headers))
        return found


class Broker:
    """The module's vhost: drains its ``celery`` queue and keeps what it read."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        got = asyncio.run(_drain(self.url))
        self.seen += got
        return got

    def ids(self, entry: str) -> list[str]:
        return [str(h["id"]) for h in self.seen if h.get("periodic_task_name") == entry]


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    with vhost_and_schema("djbeat") as (broker, schema):
        yield {
            **os.environ,
            "PYTHONPATH": str(PROJECT),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_SCHEMA": schema,
            "BROKER_URL": broker,
            "RESULT_BACKEND": f"db+{POSTGRES_URL}?schema={schema}",
        }


CREATE = """
import json
from django_celery_beat.models import IntervalSchedule, PeriodicTask
every, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
task = PeriodicTask.objects.create(
    name="tick", task="orders.tasks.process_order", interval=every, args=json.dumps([0]),
    headers=json.dumps({"x_team": "ops"}), priority=3,
)
print(json.dumps(task.pk))
"""


@pytest.fixture(scope="module")
def beats(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Two beats on the tables, with one interval task every second."""
    manage(env, "migrate", "-v", "0")
    broker = Broker(env["BROKER_URL"])
    broker.drain()  # declares the queue before anything is published
    shell(env, CREATE)
    logs = tmp_path_factory.mktemp("beats")
    with ExitStack() as stack:
        for name in ("beat-a", "beat-b"):
            args = ["-A", "proj", "beat", "-l", "info", "-S", SCHEDULER, "-n", name]
            stack.enter_context(running_celeriac(args, logs / f"{name}.log", env))
        yield broker
    for log in sorted(Path(logs).iterdir()):
        print(f"--- {log.name}\n{log.read_text()}")


def _wait_for(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


ROW = """
import json
from django_celery_beat.models import PeriodicTask
t = PeriodicTask.objects.get(name="tick")
print(json.dumps({"count": t.total_run_count, "last": t.last_run_at and t.last_run_at.isoformat(),
                  "enabled": t.enabled}))
"""


def test_two_beats_send_each_tick_once(beats: Broker) -> None:
    started = time.monotonic()
    _wait_for(lambda: beats.drain() and len(beats.ids("tick")) >= 4, 60)
    _wait_for(lambda: beats.drain() and False, 4)  # four more seconds of ticks
    ids = beats.ids("tick")
    print(f"{len(ids)} ticks sent in {time.monotonic() - started:.1f} s by two beats")
    assert len(ids) >= 4
    assert len(ids) == len(set(ids)), f"a tick was sent twice: {ids}"
    sample = next(h for h in beats.seen if h.get("periodic_task_name") == "tick")
    assert sample["task"] == "orders.tasks.process_order"
    assert sample.get("x_team") == "ops"  # the row's headers


def test_an_edit_in_the_tables_is_picked_up_and_runs_are_recorded(
    env: dict[str, str], beats: Broker
) -> None:
    # What the admin does: a new interval saved on the task (the save signal bumps
    # PeriodicTasks.last_update). One hour: no further tick during the test.
    shell(
        env,
        "import json\n"
        "from django_celery_beat.models import IntervalSchedule, PeriodicTask\n"
        "hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period='hours')\n"
        "t = PeriodicTask.objects.get(name='tick'); t.interval = hourly; t.save()\n"
        "print(json.dumps(t.pk))",
    )
    edited = time.monotonic()
    before = len(beats.ids("tick"))
    # Picked up once a drain finds nothing new for three seconds in a row.
    quiet_since = time.monotonic()
    deadline = edited + 30
    while time.monotonic() - quiet_since < 3 and time.monotonic() < deadline:
        if beats.drain():
            quiet_since = time.monotonic()
        time.sleep(0.5)
    sent = beats.ids("tick")
    print(
        f"edit picked up: {len(sent) - before} ticks after the save, quiet after "
        f"{quiet_since - edited:.1f} s"
    )
    assert time.monotonic() - quiet_since >= 3, "beats kept sending after the edit"
    row = shell(env, ROW)
    assert row["enabled"] is True
    assert row["count"] == len(sent)  # every tick sent was recorded once
    assert row["last"] is not None


def test_a_one_off_clocked_task_runs_once_and_is_disabled(
    env: dict[str, str], beats: Broker
) -> None:
    shell(
        env,
        "import json\n"
        "from django.utils import timezone\n"
        "from django_celery_beat.models import ClockedSchedule, PeriodicTask\n"
        "at = ClockedSchedule.objects.create(clocked_time=timezone.now())\n"
        "t = PeriodicTask.objects.create(name='once', task='orders.tasks.process_order',\n"
        "    clocked=at, one_off=True, args='[0]')\n"
        "print(json.dumps(t.pk))",
    )
    _wait_for(lambda: beats.drain() is not None and beats.ids("once"), 30)
    _wait_for(lambda: beats.drain() and False, 3)
    assert len(beats.ids("once")) == 1
    row = shell(
        env,
        "import json\n"
        "from django_celery_beat.models import PeriodicTask\n"
        "t = PeriodicTask.objects.get(name='once')\n"
        "print(json.dumps({'enabled': t.enabled, 'count': t.total_run_count}))",
    )
    assert row == {"enabled": False, "count": 1}


def _beat_fails(env: dict[str, str], *args: str) -> str:
    """Run a beat that must refuse to start; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "celeriac", *args, "beat", "-S", SCHEDULER],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_without_the_app_in_installed_apps_beat_says_so(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "settings_no_beat.py").write_text(
        "from proj.settings import *  # noqa: F403\n"
        "INSTALLED_APPS = [a for a in INSTALLED_APPS if a != 'django_celery_beat']  # noqa: F405\n"
    )
    bare = {
        **env,
        "PYTHONPATH": f"{PROJECT}{os.pathsep}{tmp_path}",
        "DJANGO_SETTINGS_MODULE": "settings_no_beat",
    }
    out = _beat_fails(bare, "-A", "proj")
    assert "add 'django_celery_beat' to INSTALLED_APPS" in out


def test_without_django_configured_beat_says_so(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text(
        "from celeriac import Celery\napp = Celery('plain', broker='memory://')\n"
    )
    bare = {k: v for k, v in env.items() if k != "DJANGO_SETTINGS_MODULE"}
    bare["PYTHONPATH"] = str(tmp_path)
    out = _beat_fails(bare, "-A", "plain")
    assert "set DJANGO_SETTINGS_MODULE" in out
