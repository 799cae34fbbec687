"""Schedules with an end: ``clocked`` (one given time) and ``bounded`` (a start and an expiry).

Both come from django-celery-beat's rows (``ClockedSchedule``; ``PeriodicTask.start_time``
and ``expires``) but are plain schedules. A schedule that will not fire again answers
:data:`NEVER` from ``next_run``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from celeriac.beat.schedules import BaseSchedule, Schedule, ScheduleDict, require_aware

__all__ = ["NEVER", "bounded", "clocked"]

NEVER = datetime.max.replace(tzinfo=UTC)
"""The next run of a schedule that will not fire again."""


class clocked(BaseSchedule):
    """Fire once, at ``clocked_time`` (django-celery-beat's ``clocked``).

    A clocked entry first seen after its time fires at once (its first run is its time,
    in the past); once it ran (a last run at or after that time) it never fires again.
    """

    kind = "clocked"

    def __init__(self, clocked_time: datetime) -> None:
        super().__init__()
        self.clocked_time = require_aware(clocked_time, "clocked_time")

    def next_run(self, last_run: datetime | None, now: datetime) -> datetime:
        """``clocked_time`` until a run at or after it, then :data:`NEVER`."""
        require_aware(now, "now")
        if last_run is not None and require_aware(last_run, "last_run") >= self.clocked_time:
            return NEVER
        return self.clocked_time

    def first_run(self, created_at: datetime) -> datetime:
        """``clocked_time``, even when it is already past: a clocked task is meant to run."""
        return self.clocked_time

    def key(self) -> str:
        """``clocked:<ISO time in UTC>``."""
        return f"clocked:{self.clocked_time.isoformat()}"

    def to_dict(self) -> ScheduleDict:
        """``{"kind": "clocked", "clocked_time": <ISO time>}``."""
        return {"kind": self.kind, "clocked_time": self.clocked_time.isoformat()}

    def __repr__(self) -> str:
        return f"<clocked: {self.clocked_time.isoformat()}>"


class bounded(BaseSchedule):
    """``inner``, not before ``start`` and never at or after ``expires`` (either may be None).

    Before ``start`` the next run is the first run of ``inner`` at or after ``start``
    (an interval: ``start`` itself, as django-celery-beat runs it).
    """

    kind = "bounded"

    def __init__(
        self, inner: Schedule, start: datetime | None = None, expires: datetime | None = None
    ) -> None:
        super().__init__()
        self.inner = inner
        self.start = None if start is None else require_aware(start, "start")
        self.expires = None if expires is None else require_aware(expires, "expires")

    def next_run(self, last_run: datetime | None, now: datetime) -> datetime:
        """``inner``'s next run, moved to ``start`` if before it; :data:`NEVER` once expired."""
        run = self.inner.next_run(last_run, now)
        if self.start is not None and run < self.start:
            run = self.inner.next_run(None, self.start)
        if self.expires is not None and run >= self.expires:
            return NEVER
        return run

    def first_run(self, created_at: datetime) -> datetime:
        """``start``'s run when ``start`` is later than ``created_at``, else ``inner``'s."""
        if self.start is not None and self.start > created_at:
            return self.next_run(None, self.start)
        run = self.inner.first_run(created_at)
        return NEVER if self.expires is not None and run >= self.expires else run

    def key(self) -> str:
        """``inner``'s key with the window, e.g. ``every:1.0[2026-01-01T00:00:00+00:00,)``."""
        start = "" if self.start is None else self.start.isoformat()
        end = "" if self.expires is None else self.expires.isoformat()
        return f"{self.inner.key()}[{start},{end})"

    def to_dict(self) -> ScheduleDict:
        """``inner``'s description with ``start`` and ``expires``."""
        return {
            "kind": self.kind,
            "inner": self.inner.to_dict(),
            "start": None if self.start is None else self.start.isoformat(),
            "expires": None if self.expires is None else self.expires.isoformat(),
        }

    def __repr__(self) -> str:
        return f"<bounded {self.inner!r} from {self.start} until {self.expires}>"
