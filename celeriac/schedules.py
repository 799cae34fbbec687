"""Periodic schedules for beat, under Celery's names (``celery.schedules``).

``from celeriac.schedules import crontab, schedule, solar`` works like Celery's
import. The implementations live in :mod:`celeriac.beat`; this module re-exports
them and turns a stored :meth:`~celeriac.beat.schedules.Schedule.to_dict`
description back into a schedule with :func:`schedule_from_dict`.
"""

from __future__ import annotations

from celeriac.beat.crontab import CronField, Cronspec, ParseException, crontab, parse_cronspec
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
    "ParseException",
    "Schedule",
    "ScheduleDict",
    "crontab",
    "crontab_parser",
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


class crontab_parser:
    """Parse one crontab field whose values run from ``min_`` to ``max_ - 1``
    (Celery's ``crontab_parser``: ``crontab_parser(24).parse('*/4')``)."""

    def __init__(self, max_: int = 60, min_: int = 0) -> None:
        self._field = CronField("field", min_, max_ - 1, max_ - 1, {})

    def parse(self, spec: str) -> set[int]:
        """The values ``spec`` selects; ParseException when it is invalid."""
        return set(parse_cronspec(self._field, spec))
