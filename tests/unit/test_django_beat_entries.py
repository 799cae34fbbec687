"""django-celery-beat's rows as beat entries, and the names that select them.

The rows here are stand-ins with the models' field names (the real tables are exercised in
``tests/examples/test_django_beat.py``): what is checked is the mapping of each schedule
kind (interval, crontab in its own zone, solar, a one-off clocked time), of ``start_time``
and ``expires``, of the publish options, and that a bad row is refused naming what is wrong.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import types
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from celeriac import Celery
from celeriac.beat.bounded import NEVER, bounded, clocked
from celeriac.beat.crontab import crontab
from celeriac.beat.foreign import is_django, is_native
from celeriac.beat.scheduler import plan_ticks
from celeriac.beat.schedules import schedule
from celeriac.beat.solar import solar
from celeriac.beat.sources import AppSource, source_for_app
from celeriac.exceptions import ImproperlyConfigured

pytest.importorskip("django", reason="Django is a test dependency (make install)")

from celeriac.engines.django.beat import DjangoSource, entry_from_row

T0 = datetime(2026, 1, 12, 6, 0, tzinfo=UTC)  # a Monday, in winter (Paris is UTC+1)


def row(**fields: Any) -> types.SimpleNamespace:
    base: dict[str, Any] = {
        "name": "job", "task": "tasks.job", "interval": None, "crontab": None, "solar": None,
        "clocked": None, "args": "[]", "kwargs": "{}", "headers": None, "queue": None,
        "exchange": None, "routing_key": None, "priority": None, "expires": None,
        "expire_seconds": None, "start_time": None, "one_off": False,
    }  # fmt: skip
    base.update(fields)
    return types.SimpleNamespace(**base)


def every(n: int, period: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(every=n, period=period)


def test_an_interval_row_and_its_options() -> None:
    entry = entry_from_row(
        row(
            interval=every(2, "minutes"),
            args=json.dumps([1, "a"]),
            kwargs='{"k": 2}',
            queue="reports",
            exchange="ex",
            routing_key="rk",
            priority=5,
            headers='{"team": "ops"}',
            expire_seconds=30,
        )
    )
    assert entry.name == "job" and entry.task == "tasks.job"
    assert isinstance(entry.schedule, schedule) and entry.schedule.seconds == 120
    assert entry.args == (1, "a") and entry.kwargs == {"k": 2}
    assert entry.options == {
        "queue": "reports", "exchange": "ex", "routing_key": "rk", "priority": 5,
        "expires": 30.0, "headers": {"team": "ops", "periodic_task_name": "job"},
    }  # fmt: skip


def test_a_crontab_row_runs_in_its_own_time_zone() -> None:
    cron = types.SimpleNamespace(
        minute="30", hour="9", day_of_week="*", day_of_month="*", month_of_year="*",
        timezone="Europe/Paris",
    )  # fmt: skip
    entry = entry_from_row(row(crontab=cron))
    assert isinstance(entry.schedule, crontab)
    assert entry.schedule.next_run(T0, T0) == datetime(2026, 1, 12, 8, 30, tzinfo=UTC)


def test_a_solar_row() -> None:
    sun = types.SimpleNamespace(event="sunrise", latitude="48.85", longitude="2.35")
    entry = entry_from_row(row(solar=sun))
    assert isinstance(entry.schedule, solar)
    assert entry.schedule.next_run(T0, T0).date() == T0.date()  # Paris sunrise, same day


def test_a_one_off_clocked_row_fires_once_even_when_first_seen_late() -> None:
    at = T0 - timedelta(minutes=5)
    entry = entry_from_row(row(clocked=types.SimpleNamespace(clocked_time=at), one_off=True))
    assert isinstance(entry.schedule, clocked)
    plan = plan_ticks([entry], {}, T0)  # never ran, its time is past: due at once
    assert [(d.entry.name, d.previous, d.tick) for d in plan.due] == [("job", None, at)]
    assert plan.new == []
    after = plan_ticks([entry], {"job": at.timestamp()}, T0)
    assert after.due == [] and after.wake_at == NEVER


def test_a_clocked_time_ahead_waits_for_it() -> None:
    at = T0 + timedelta(hours=1)
    entry = entry_from_row(row(clocked=types.SimpleNamespace(clocked_time=at), one_off=True))
    plan = plan_ticks([entry], {}, T0)
    assert plan.due == [] and plan.wake_at == at


def test_start_time_and_expires_bound_the_schedule() -> None:
    start, end = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    entry = entry_from_row(row(interval=every(10, "minutes"), start_time=start, expires=end))
    assert isinstance(entry.schedule, bounded)
    assert entry.schedule.first_run(T0) == start  # not before its start time
    assert entry.schedule.next_run(start, start) == start + timedelta(minutes=10)
    assert entry.schedule.next_run(end - timedelta(minutes=5), end) == NEVER
    assert entry.options["expires"] == end  # also the message's expiry, as django-celery-beat


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"interval": every(1, "seconds"), "args": "[1,"}, "args"),
        ({"interval": every(1, "seconds"), "kwargs": "[1]"}, "kwargs"),
        ({"interval": every(1, "seconds"), "headers": "[]"}, "headers"),
        ({}, "no schedule"),
    ],
)
def test_a_bad_row_is_refused_naming_what_is_wrong(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        entry_from_row(row(**fields))


@pytest.mark.parametrize(
    "name",
    [
        "django_celery_beat.schedulers:DatabaseScheduler",
        "django_celery_beat.schedulers.DatabaseScheduler",
        "django",  # django-celery-beat's entry point name, as Celery's `beat -S django`
    ],
)
def test_the_database_scheduler_names_select_the_leased_beat_on_the_tables(name: str) -> None:
    assert is_django(name) and is_native(name)
    app = Celery("t", broker="memory://", set_as_current=False)
    assert isinstance(source_for_app(app, name), DjangoSource)
    assert isinstance(source_for_app(app), AppSource)


def test_celery_beat_scheduler_under_the_celery_namespace_selects_it() -> None:
    settings = types.SimpleNamespace(
        CELERY_BROKER_URL="memory://",
        CELERY_BEAT_SCHEDULER="django_celery_beat.schedulers:DatabaseScheduler",
    )
    app = Celery("t", set_as_current=False)
    app.config_from_object(settings, namespace="CELERY")
    assert isinstance(source_for_app(app), DjangoSource)


def test_without_django_celery_beat_installed_beat_start_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "django_celery_beat" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    source = DjangoSource(Celery("t", broker="memory://", set_as_current=False))
    with pytest.raises(ImproperlyConfigured, match="pip install django-celery-beat"):
        asyncio.run(source.start())
