"""Interval schedule, the Schedule protocol, Celery's is_due API and persistence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import celeriac.schedules as facade
from celeriac.schedules import (
    BaseSchedule,
    Schedule,
    crontab,
    maybe_schedule,
    schedstate,
    schedule,
    schedule_from_dict,
    solar,
)

NY = ZoneInfo("America/New_York")
T0 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)


def test_facade_exports_celery_names() -> None:
    assert {"crontab", "schedule", "solar", "schedstate", "maybe_schedule"} <= set(facade.__all__)
    for name in facade.__all__:
        assert hasattr(facade, name), name


@pytest.mark.parametrize(
    ("run_every", "expected"),
    [
        (60, timedelta(seconds=60)),
        (1.5, timedelta(seconds=1.5)),
        (timedelta(seconds=60), timedelta(seconds=60)),
        (timedelta(hours=2), timedelta(hours=2)),
    ],
)
def test_run_every_accepts_seconds_or_timedelta(run_every: float, expected: timedelta) -> None:
    interval = schedule(run_every)
    assert interval.run_every == expected
    assert interval.seconds == expected.total_seconds()


@pytest.mark.parametrize("bad", [0, -5, timedelta(0), float("nan"), float("inf")])
def test_run_every_must_be_positive_and_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="run_every"):
        schedule(bad)


@pytest.mark.parametrize("bad", ["60", None, True])
def test_run_every_must_be_a_number(bad: object) -> None:
    with pytest.raises(TypeError, match="run_every"):
        schedule(bad)  # type: ignore[arg-type]


def test_relative_is_refused_rather_than_ignored() -> None:
    with pytest.raises(ValueError, match="relative"):
        schedule(60, relative=True)


INTERVAL_TABLE: list[tuple[str, float, datetime | None, datetime, datetime]] = [
    ("never ran: due now", 60, None, T0, T0),
    ("one interval after", 60, T0, T0, T0 + timedelta(seconds=60)),
    ("now does not matter", 60, T0, T0 + timedelta(seconds=30), T0 + timedelta(seconds=60)),
    # after three hours of downtime the missed run is in the past: due now, once
    ("missed: in the past", 60, T0, T0 + timedelta(hours=3), T0 + timedelta(seconds=60)),
    ("sub-second", 0.25, T0, T0, T0 + timedelta(milliseconds=250)),
    ("daily", 86400, T0, T0, T0 + timedelta(days=1)),
]


@pytest.mark.parametrize(
    ("run_every", "last_run", "now", "expected"),
    [case[1:] for case in INTERVAL_TABLE],
    ids=[case[0] for case in INTERVAL_TABLE],
)
def test_interval_next_run_table(
    run_every: float, last_run: datetime | None, now: datetime, expected: datetime
) -> None:
    assert schedule(run_every).next_run(last_run, now) == expected


def test_downtime_fires_once_then_one_interval_after_now() -> None:
    interval = schedule(timedelta(seconds=60))
    now = T0 + timedelta(hours=3)
    assert interval.next_run(T0, now) <= now  # due
    # beat fires at `now` and stores it as the last run: the next one is now + 60 s,
    # not the 179 missed ticks in between
    assert interval.next_run(now, now) == now + timedelta(seconds=60)


def test_interval_is_real_time_across_dst() -> None:
    # 01:30 EDT on the day New York falls back; one hour later is 01:30 EST, not 02:30.
    last = datetime(2025, 11, 2, 1, 30, tzinfo=NY)
    result = schedule(timedelta(hours=1)).next_run(last, last)
    assert result == datetime(2025, 11, 2, 6, 30, tzinfo=UTC)
    assert result.tzinfo is UTC


def test_first_run_is_one_interval_after_creation_like_celery_beat() -> None:
    assert schedule(60).first_run(T0) == T0 + timedelta(seconds=60)


def test_naive_datetimes_are_rejected_by_next_run() -> None:
    with pytest.raises(ValueError, match="last_run"):
        schedule(60).next_run(datetime(2025, 6, 2), T0)
    with pytest.raises(ValueError, match="now"):
        schedule(60).next_run(T0, datetime(2025, 6, 2))


@pytest.mark.parametrize(
    ("last_run", "now", "expected"),
    [
        (T0, T0 + timedelta(seconds=30), schedstate(False, 30.0)),
        (T0, T0 + timedelta(seconds=60), schedstate(True, 60.0)),
        (T0, T0 + timedelta(hours=3), schedstate(True, 60.0)),
        (None, T0, schedstate(True, 60.0)),
    ],
)
def test_is_due_with_fake_now(
    last_run: datetime | None, now: datetime, expected: schedstate
) -> None:
    interval = schedule(60, nowfun=lambda: now)
    assert interval.is_due(last_run) == expected
    due, next_check = interval.is_due(last_run)  # Celery code unpacks the pair
    assert (due, next_check) == tuple(expected)


def test_remaining_estimate_is_negative_when_overdue() -> None:
    now = T0 + timedelta(seconds=90)
    interval = schedule(60, nowfun=lambda: now)
    assert interval.remaining_estimate(T0) == timedelta(seconds=-30)
    assert interval.remaining_estimate(now) == timedelta(seconds=60)


def test_celery_style_naive_last_run_and_nowfun_are_read_as_utc() -> None:
    interval = schedule(60, nowfun=lambda: datetime(2025, 6, 2, 10, 0, 30))
    assert interval.is_due(datetime(2025, 6, 2, 10, 0)) == schedstate(False, 30.0)


def test_is_due_uses_the_clock_without_nowfun() -> None:
    before = datetime.now(UTC)
    assert schedule(3600).is_due(before - timedelta(hours=2)).is_due is True
    assert schedule(3600).is_due(datetime.now(UTC)).is_due is False


ALL_SCHEDULES: list[BaseSchedule] = [
    schedule(60),
    schedule(timedelta(minutes=90)),
    schedule(0.5),
    crontab(hour=7, minute=30, day_of_week=1),
    crontab(minute="*/15"),
    crontab(minute=0, hour="9-17", day_of_week="mon-fri", tz="Europe/Berlin"),
    crontab(minute=0, hour=0, day_of_month=29, month_of_year="feb"),
    solar("sunrise", 51.5074, -0.1278),
    solar("dusk_civil", -33.8688, 151.2093),
]


@pytest.mark.parametrize("item", ALL_SCHEDULES, ids=repr)
def test_to_dict_round_trips_through_json(item: BaseSchedule) -> None:
    data = item.to_dict()
    restored = schedule_from_dict(json.loads(json.dumps(data)))
    assert type(restored) is type(item)
    assert restored == item
    assert restored.key() == item.key()
    assert restored.to_dict() == data
    assert hash(restored) == hash(item)
    assert restored.next_run(T0, T0) == item.next_run(T0, T0)


@pytest.mark.parametrize("item", ALL_SCHEDULES, ids=repr)
def test_every_schedule_meets_the_protocol(item: BaseSchedule) -> None:
    assert isinstance(item, Schedule)
    assert item.next_run(T0, T0) > T0
    assert item.next_run(T0, T0).tzinfo is UTC


def test_keys_are_stable_and_distinguish_schedules() -> None:
    assert schedule(60).key() == "every:60.0"
    assert schedule(timedelta(minutes=1)).key() == "every:60.0"
    assert crontab(hour=7, minute=30, day_of_week=1).key() == "crontab:30 7 * * 1"
    assert solar("sunrise", 52.52, 13.405).key() == "solar:sunrise 52.52 13.405"
    keys = [item.key() for item in ALL_SCHEDULES]
    assert len(set(keys)) == len(keys)


def test_equality_follows_the_schedule_not_the_clock() -> None:
    assert schedule(60) == schedule(timedelta(seconds=60), nowfun=lambda: T0)
    assert schedule(60) != schedule(61)
    assert schedule(60) != crontab()
    assert len({schedule(60), schedule(60.0), crontab(), crontab("*")}) == 2


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "lunar"},
        {},
        {"run_every": 60},
    ],
)
def test_schedule_from_dict_rejects_unknown_kinds(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="kind"):
        schedule_from_dict(data)


def test_class_from_dict_checks_its_kind() -> None:
    with pytest.raises(ValueError, match="interval"):
        schedule.from_dict(crontab().to_dict())
    with pytest.raises(ValueError, match="crontab"):
        crontab.from_dict(schedule(1).to_dict())
    with pytest.raises(ValueError, match="solar"):
        solar.from_dict(schedule(1).to_dict())


def test_maybe_schedule_wraps_numbers_and_passes_schedules_through() -> None:
    assert maybe_schedule(30) == schedule(30)
    assert maybe_schedule(timedelta(minutes=5)) == schedule(300)
    cron = crontab(minute=0)
    assert maybe_schedule(cron) is cron
    with pytest.raises(TypeError):
        maybe_schedule("60")  # type: ignore[arg-type]


def test_with_default_tz_leaves_non_wall_clock_schedules_alone() -> None:
    interval = schedule(60)
    assert interval.with_default_tz("Europe/Berlin") is interval
    sun = solar("sunset", 0.0, 0.0)
    assert sun.with_default_tz("Europe/Berlin") is sun
