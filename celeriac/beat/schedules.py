"""The Schedule protocol, the shared base class and the interval ``schedule``.

A schedule answers one pure question: given when an entry last ran (``None`` when it
never ran) and the current time, *when should it fire next?* That is
:meth:`Schedule.next_run`. Everything else (``is_due``, ``remaining_estimate``) is
derived from it, for code written against Celery's ``celery.schedules`` API.

Rules shared by every schedule:

* All datetimes are timezone-aware. ``next_run`` rejects naive ones; the
  Celery-compatible ``is_due``/``remaining_estimate`` take a naive datetime as UTC,
  as Celery does.
* ``next_run(last_run, now)`` returns the first firing time strictly after
  ``last_run``. After downtime that time is in the past, which means "due now": the
  scheduler fires once and stores the time it actually fired as the new
  ``last_run``, so the next answer is in the future. A missed run is never replayed
  once per missed tick.
* ``next_run(None, now)`` ("never ran") returns the earliest time the schedule
  allows at or after ``now``; for an interval any instant is allowed, so it is
  ``now`` (due at once).
* Celery's beat does not fire a new entry at once: it stores the time it first saw
  the entry as ``last_run_at``. :meth:`Schedule.first_run` gives that answer
  (``next_run(created_at, created_at)``): one interval after ``created_at``, or the
  first crontab/solar time after it. celeriac's beat does the same.
* Returned datetimes are in UTC. Aware datetimes that share a ``tzinfo`` compare and
  subtract by wall clock in Python, ignoring DST offsets; UTC avoids that trap for
  every caller.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = [
    "BaseSchedule",
    "NowFun",
    "Schedule",
    "ScheduleDict",
    "maybe_schedule",
    "require_aware",
    "schedstate",
    "schedule",
]

#: A function returning the current time (Celery's ``nowfun``).
NowFun = Callable[[], datetime]

#: The JSON-ready description of a schedule: ``{"kind": ..., <fields>}``.
ScheduleDict = dict[str, Any]


class schedstate(NamedTuple):
    """Celery's ``(is_due, next)`` pair: is the entry due, and seconds until next check."""

    is_due: bool
    next: float


@runtime_checkable
class Schedule(Protocol):
    """What beat needs from a schedule: a pure ``next_run`` plus identity and persistence."""

    def next_run(self, last_run: datetime | None, now: datetime) -> datetime:
        """Return when the entry should fire next (UTC); in the past or ``now`` means due."""
        ...

    def first_run(self, created_at: datetime) -> datetime:
        """Return the first firing time of an entry first seen at ``created_at``."""
        ...

    def is_due(self, last_run_at: datetime | None) -> schedstate:
        """Return Celery's ``(is_due, seconds until the next check)``."""
        ...

    def remaining_estimate(self, last_run_at: datetime | None) -> timedelta:
        """Return the time left until the next run (negative when overdue)."""
        ...

    def key(self) -> str:
        """Return a stable string naming this schedule, e.g. ``every:60.0``."""
        ...

    def to_dict(self) -> ScheduleDict:
        """Return a JSON-ready description that ``from_dict`` turns back into an equal one."""
        ...


def require_aware(value: datetime, name: str) -> datetime:
    """Return ``value`` in UTC; raise ValueError naming ``name`` if it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _as_utc_assuming_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC, reading a naive datetime as UTC (Celery's compat rule)."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _utcnow() -> datetime:
    """Return the current time in UTC (the default ``nowfun``)."""
    return datetime.now(UTC)


class BaseSchedule(ABC):
    """Shared behaviour: Celery's ``is_due``/``remaining_estimate`` on top of ``next_run``."""

    #: The ``kind`` field of :meth:`to_dict`.
    kind: str = ""

    def __init__(self, nowfun: NowFun | None = None) -> None:
        self.nowfun = nowfun

    @abstractmethod
    def next_run(self, last_run: datetime | None, now: datetime) -> datetime:
        """Return when the entry should fire next (UTC); in the past or ``now`` means due."""

    @abstractmethod
    def key(self) -> str:
        """Return a stable string naming this schedule."""

    @abstractmethod
    def to_dict(self) -> ScheduleDict:
        """Return a JSON-ready description of this schedule."""

    def first_run(self, created_at: datetime) -> datetime:
        """Return the first firing time of an entry first seen at ``created_at``.

        This is Celery's behaviour: a new entry is treated as if it had just run.
        """
        return self.next_run(created_at, created_at)

    def with_default_tz(self, tz: tzinfo | str | None) -> BaseSchedule:
        """Return this schedule evaluated in ``tz`` unless it names its own zone.

        Beat calls this with the app's ``timezone`` setting. Only wall-clock
        schedules (crontab) care; the others return themselves.
        """
        return self

    def now(self) -> datetime:
        """Return the current time in UTC, from ``nowfun`` when one was given."""
        return _as_utc_assuming_utc(self.nowfun() if self.nowfun else _utcnow())

    def remaining_estimate(self, last_run_at: datetime | None) -> timedelta:
        """Return the time left until the next run (negative when overdue), as Celery does."""
        now = self.now()
        last = None if last_run_at is None else _as_utc_assuming_utc(last_run_at)
        return self.next_run(last, now) - now

    def is_due(self, last_run_at: datetime | None) -> schedstate:
        """Return ``(is_due, seconds until the scheduler should check again)``.

        When due, the seconds are counted to the run after one fired now, as in Celery.
        """
        now = self.now()
        last = None if last_run_at is None else _as_utc_assuming_utc(last_run_at)
        due_at = self.next_run(last, now)
        if due_at <= now:
            following = self.next_run(now, now)
            return schedstate(True, max((following - now).total_seconds(), 0.0))
        return schedstate(False, (due_at - now).total_seconds())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BaseSchedule):
            return self.key() == other.key()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.key())


def _to_timedelta(run_every: float | timedelta) -> timedelta:
    """Return ``run_every`` as a positive timedelta; raise ValueError otherwise."""
    if isinstance(run_every, bool):
        raise TypeError(f"schedule run_every must be seconds or a timedelta, got {run_every!r}")
    if isinstance(run_every, timedelta):
        delta = run_every
    elif isinstance(run_every, int | float):
        if not math.isfinite(run_every):
            raise ValueError(f"schedule run_every must be finite, got {run_every!r}")
        delta = timedelta(seconds=run_every)
    else:
        raise TypeError(f"schedule run_every must be seconds or a timedelta, got {run_every!r}")
    if delta <= timedelta(0):
        raise ValueError(f"schedule run_every must be positive, got {run_every!r}")
    return delta


class schedule(BaseSchedule):
    """Fire every ``run_every`` (seconds or a timedelta) of real elapsed time.

    ``next_run(last, now)`` is ``last + run_every`` (real time, so DST changes do
    not stretch or shrink it) and ``now`` when the entry never ran. Celery's
    ``relative=True`` (round to the interval's resolution) is not supported.
    """

    kind = "interval"

    def __init__(
        self,
        run_every: float | timedelta,
        relative: bool = False,
        nowfun: NowFun | None = None,
    ) -> None:
        if relative:
            raise ValueError("schedule(relative=True) is not supported by celeriac")
        super().__init__(nowfun=nowfun)
        self.run_every = _to_timedelta(run_every)
        self.relative = False

    @property
    def seconds(self) -> float:
        """Return the interval in seconds (Celery's ``schedule.seconds``)."""
        return self.run_every.total_seconds()

    def next_run(self, last_run: datetime | None, now: datetime) -> datetime:
        """Return ``last_run + run_every`` in UTC, or ``now`` when it never ran."""
        now_utc = require_aware(now, "now")
        if last_run is None:
            return now_utc
        return require_aware(last_run, "last_run") + self.run_every

    def key(self) -> str:
        """Return ``every:<seconds as float>``, e.g. ``every:60.0``."""
        return f"every:{self.seconds!r}"

    def to_dict(self) -> ScheduleDict:
        """Return ``{"kind": "interval", "run_every": <seconds>}``."""
        return {"kind": self.kind, "run_every": self.seconds}

    @classmethod
    def from_dict(cls, data: ScheduleDict) -> schedule:
        """Build a schedule from :meth:`to_dict` output."""
        if data.get("kind") != cls.kind:
            raise ValueError(f"not an interval schedule description: {data!r}")
        return cls(float(data["run_every"]))

    def __repr__(self) -> str:
        return f"<freq: {self.seconds!r} seconds>"


def maybe_schedule(value: float | timedelta | Schedule) -> Schedule:
    """Return ``value`` as a schedule: numbers and timedeltas become an interval ``schedule``."""
    if isinstance(value, int | float | timedelta) and not isinstance(value, bool):
        return schedule(value)
    if isinstance(value, Schedule):
        return value
    raise TypeError(f"not a schedule, number of seconds or timedelta: {value!r}")
