"""Periodic schedules for beat, under Celery's names (``celery.schedules``).

``from celeriac.schedules import crontab, schedule, solar`` works like Celery's
import. The implementations live in :mod:`celeriac.beat`; this module re-exports
them and turns a stored :meth:`~celeriac.beat.schedules.Schedule.to_dict`
description back into a schedule with :func:`schedule_from_dict`.
"""

from __future__ import annotations

from celeriac.beat.crontab import Cronspec, crontab
from celeriac.beat.schedules import (
    BaseSchedule,
    Schedule,
    ScheduleDict,
    maybe_schedule,
    schedstate,
    schedule,
)
from celeriac.beat.solar import solar

__all__ = [
    "BaseSchedule",
    "Cronspec",
    "Schedule",
    "ScheduleDict",
    "crontab",
    "maybe_schedule",
    "schedstate",
    "schedule",
    "schedule_from_dict",
    "solar",
]


def schedule_from_dict(data: ScheduleDict) -> BaseSchedule:
    """Rebuild a schedule from its ``to_dict()`` description, chosen by its ``kind``."""
    kind = data.get("kind")
    if kind == schedule.kind:
        return schedule.from_dict(data)
    if kind == crontab.kind:
        return crontab.from_dict(data)
    if kind == solar.kind:
        return solar.from_dict(data)
    raise ValueError(f"unknown schedule kind {kind!r} in {data!r}")
