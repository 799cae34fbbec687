"""Beat entries from ``beat_schedule`` and ``add_periodic_task``: names, merging, time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from celeriac import Celery
from celeriac.beat.entry import (
    Entry,
    app_timezone,
    entries_from_app,
    entry_from_config,
    entry_key,
    merge_entries,
)
from celeriac.exceptions import ImproperlyConfigured
from celeriac.schedules import crontab, schedule, solar


def _app(**settings: Any) -> Celery:
    return Celery("tasks", broker="memory://beat-entries", set_as_current=False, **settings)


def _by_name(entries: list[Entry]) -> dict[str, Entry]:
    return {e.name: e for e in entries}


def test_seed_003_same_signature_on_two_schedules_is_two_entries() -> None:
    app = _app()

    @app.task(name="tasks.check_cat")
    def check_cat() -> None: ...

    @app.on_after_configure.connect
    def setup_periodic_tasks(sender: Celery, **kwargs: Any) -> None:
        sender.add_periodic_task(60, check_cat.s())
        sender.add_periodic_task(crontab(hour=7, minute=30, day_of_week=1), check_cat.s())

    app.finalize()
    entries = _by_name(entries_from_app(app))
    assert set(entries) == {
        "tasks.check_cat()@every:60.0",
        "tasks.check_cat()@crontab:30 7 * * 1",  # keyed before the app zone applies
    }
    assert all(e.task == "tasks.check_cat" for e in entries.values())
    assert isinstance(entries["tasks.check_cat()@every:60.0"].schedule, schedule)


def test_beat_schedule_dict_in_celery_format() -> None:
    app = _app()
    app.conf.beat_schedule = {
        "add-every-30": {
            "task": "tasks.add",
            "schedule": 30.0,
            "args": (16, 16),
            "kwargs": {"z": 1},
            "options": {"queue": "beat", "priority": 5, "expires": 20},
        },
        "daily": {"task": "tasks.report", "schedule": timedelta(days=1)},
        "monday": {"task": "tasks.weekly", "schedule": crontab(hour=7, minute=30, day_of_week=1)},
        "dawn": {"task": "tasks.lights", "schedule": solar("sunrise", 51.5, -0.12)},
    }
    entries = _by_name(entries_from_app(app))
    add = entries["add-every-30"]
    assert (add.task, add.args, dict(add.kwargs)) == ("tasks.add", (16, 16), {"z": 1})
    assert dict(add.options) == {"queue": "beat", "priority": 5, "expires": 20}
    assert add.schedule == schedule(30)
    assert entries["daily"].schedule == schedule(86400)
    assert entries["dawn"].schedule.key().startswith("solar:")


def test_add_periodic_task_arguments_name_and_options() -> None:
    app = _app()

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    app.add_periodic_task(10, add.s(2), args=(3,), name="named", queue="q1")
    app.add_periodic_task(timedelta(seconds=5), add.s(1, 1), expires=4)
    app.add_periodic_task(5, "tasks.add", args=(1, 1), expires=4)  # same signature + schedule
    entries = _by_name(entries_from_app(app))
    named = entries["named"]
    assert (named.args, dict(named.options)) == ((2, 3), {"queue": "q1"})
    assert set(entries) == {"named", "tasks.add(1, 1)@every:5.0"}  # the duplicate merged
    assert dict(entries["tasks.add(1, 1)@every:5.0"].options) == {"expires": 4}


def test_later_definition_with_the_same_name_wins() -> None:
    app = _app()
    app.conf.beat_schedule = {"job": {"task": "tasks.a", "schedule": 10}}
    app.add_periodic_task(20, "tasks.b", name="job")
    (entry,) = entries_from_app(app)
    assert (entry.task, entry.schedule) == ("tasks.b", schedule(20))


def test_entry_key_is_stable_and_distinguishes_arguments() -> None:
    every = schedule(60)
    assert entry_key("t", [1, "a"], {"b": [1]}, every) == 't(1, "a", b=[1])@every:60.0'
    assert entry_key("t", [], {"b": 1, "a": 2}, every) == entry_key(
        "t", [], {"a": 2, "b": 1}, every
    )
    assert entry_key("t", [1], {}, every) != entry_key("t", [2], {}, every)


def test_app_timezone_applies_to_crontabs_without_their_own() -> None:
    app = _app(timezone="Europe/Moscow")
    app.conf.beat_schedule = {
        "local": {"task": "t", "schedule": crontab(hour=7, minute=30)},
        "own": {"task": "t", "schedule": crontab(hour=7, minute=30, tz="Asia/Tokyo")},
    }
    entries = _by_name(entries_from_app(app))
    after = datetime(2025, 6, 2, 0, 0, tzinfo=UTC)
    # 07:30 Moscow (UTC+3) is 04:30 UTC; 07:30 Tokyo (UTC+9) was 22:30 UTC the day before.
    assert entries["local"].schedule.next_run(after, after) == datetime(
        2025, 6, 2, 4, 30, tzinfo=UTC
    )
    assert entries["own"].schedule.next_run(after, after) == datetime(
        2025, 6, 2, 22, 30, tzinfo=UTC
    )


def test_app_timezone_defaults() -> None:
    assert app_timezone({"timezone": None, "enable_utc": True}) == "UTC"
    assert app_timezone({"timezone": "Asia/Tokyo", "enable_utc": True}) == "Asia/Tokyo"


def test_app_timezone_local_when_utc_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    assert app_timezone({"timezone": None, "enable_utc": False}) == "America/New_York"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"schedule": 10}, "needs 'task'"),
        ({"task": "t"}, "needs 'schedule'"),
        ({"task": "t", "schedule": "often"}, "bad schedule"),
        ({"task": "t", "schedule": -1}, "bad schedule"),
        ({"task": "t", "schedule": 1, "args": "x"}, "args must be a list"),
        ({"task": "t", "schedule": 1, "options": [1]}, "options must be a dict"),
    ],
)
def test_bad_beat_schedule_entries_are_configuration_errors(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        entry_from_config("e", spec, "UTC")


def test_relative_is_accepted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    entry = entry_from_config("e", {"task": "t", "schedule": 5, "relative": True}, "UTC")
    assert entry.schedule == schedule(5)
    assert "relative=True is not supported" in caplog.text


def test_merge_keeps_first_seen_order() -> None:
    a1 = Entry("a", "t1", schedule(1))
    b = Entry("b", "t2", schedule(1))
    a2 = Entry("a", "t3", schedule(1))
    assert [(e.name, e.task) for e in merge_entries([a1, b, a2])] == [("a", "t3"), ("b", "t2")]
