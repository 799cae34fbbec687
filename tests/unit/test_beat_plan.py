"""What is due now: the pure planning of beat ticks, on explicit times (no clock, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from celeriac.beat.entry import Entry
from celeriac.beat.scheduler import latest_tick, plan_ticks, tick_task_id
from celeriac.schedules import crontab, schedule

T0 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)  # a Monday
EVERY_10 = Entry("every-10", "tasks.tick", schedule(10))
MONDAY = Entry("monday", "tasks.weekly", crontab(hour=7, minute=30, day_of_week=1))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ts(moment: datetime) -> float:
    return moment.timestamp()


def test_new_entry_is_recorded_not_sent_and_first_runs_one_interval_later() -> None:
    plan = plan_ticks([EVERY_10], {}, T0)
    assert plan.due == []
    assert plan.new == [EVERY_10]
    assert plan.wake_at == at(10)  # Celery: an interval entry fires one interval after first seen


def test_new_crontab_entry_first_runs_at_its_next_time() -> None:
    plan = plan_ticks([MONDAY], {}, T0)
    assert plan.new == [MONDAY]
    assert plan.wake_at == datetime(2025, 6, 9, 7, 30, tzinfo=UTC)


def test_not_yet_due() -> None:
    plan = plan_ticks([EVERY_10], {"every-10": ts(T0)}, at(9.999))
    assert (plan.due, plan.new, plan.wake_at) == ([], [], at(10))


def test_due_on_time_sends_the_scheduled_tick_not_the_current_time() -> None:
    plan = plan_ticks([EVERY_10], {"every-10": ts(T0)}, at(10.4))
    (due,) = plan.due
    assert (due.entry, due.previous, due.tick) == (EVERY_10, ts(T0), at(10))
    assert plan.wake_at == at(20)  # no drift from the 0.4 s of lateness


def test_missed_interval_ticks_run_once() -> None:
    plan = plan_ticks([EVERY_10], {"every-10": ts(T0)}, at(95))
    (due,) = plan.due
    assert due.tick == at(90)  # the latest tick not after now; 10..80 are not replayed
    assert plan.wake_at == at(100)


def test_missed_crontab_runs_once_at_the_latest_missed_time() -> None:
    last = datetime(2025, 5, 5, 7, 30, tzinfo=UTC)  # four Mondays before T0's
    plan = plan_ticks([MONDAY], {"monday": ts(last)}, T0)
    (due,) = plan.due
    assert due.tick == datetime(2025, 6, 2, 7, 30, tzinfo=UTC)
    assert plan.wake_at == datetime(2025, 6, 9, 7, 30, tzinfo=UTC)


def test_two_entries_for_the_same_signature_are_planned_separately() -> None:
    fast = Entry("t()@every:60.0", "t", schedule(60))
    weekly = Entry("t()@crontab:30 7 * * 1", "t", crontab(hour=7, minute=30, day_of_week=1))
    runs = {fast.name: ts(at(-60)), weekly.name: ts(datetime(2025, 5, 26, 7, 30, tzinfo=UTC))}
    plan = plan_ticks([fast, weekly], runs, T0)
    assert [(d.entry.name, d.tick) for d in plan.due] == [
        (weekly.name, datetime(2025, 6, 2, 7, 30, tzinfo=UTC)),  # sorted by tick
        (fast.name, T0),
    ]
    assert plan.wake_at == at(60)


def test_wake_at_is_the_earliest_upcoming_run() -> None:
    slow = Entry("slow", "t", schedule(100))
    plan = plan_ticks([EVERY_10, slow], {"every-10": ts(at(-3)), "slow": ts(T0)}, T0)
    assert plan.wake_at == at(7)
    assert plan_ticks([], {}, T0).wake_at is None


def test_latest_tick() -> None:
    every = schedule(10)
    assert latest_tick(every, at(10), at(10)) == at(10)
    assert latest_tick(every, at(10), at(29.99)) == at(20)
    minutely = crontab()
    assert latest_tick(minutely, at(60), at(60 * 5 + 1)) == at(300)


def test_tick_task_ids_are_deterministic_and_distinct() -> None:
    one = tick_task_id("app", "e", at(10))
    assert one == tick_task_id("app", "e", at(10).astimezone(crontab(tz="Asia/Tokyo").tz))
    assert len({one, tick_task_id("app", "e", at(20)), tick_task_id("app", "f", at(10))}) == 3
    assert one != tick_task_id("other", "e", at(10))
