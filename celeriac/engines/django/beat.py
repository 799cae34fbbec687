"""Beat's entries from django-celery-beat's tables (``beat -S django``), under celeriac's lease.

What django-celery-beat (2.x) keeps, and so what :class:`DjangoSource` reads:

* ``PeriodicTask``: ``name`` (unique: the entry's name in beat's store), ``task``,
  ``enabled``, one of ``interval`` / ``crontab`` / ``solar`` / ``clocked`` (foreign keys),
  ``args`` and ``kwargs`` (JSON text), ``queue``, ``exchange``, ``routing_key``,
  ``priority``, ``headers`` (JSON text), ``expires`` (a time) or ``expire_seconds``,
  ``one_off``, ``start_time``, ``last_run_at`` and ``total_run_count``.
* ``IntervalSchedule`` (``every`` and ``period``: days, hours, minutes, seconds or
  microseconds), ``CrontabSchedule`` (the five fields as text and ``timezone``),
  ``SolarSchedule`` (``event``, ``latitude``, ``longitude``), ``ClockedSchedule``
  (``clocked_time``).
* ``PeriodicTasks``: one row whose ``last_update`` django-celery-beat's save and delete
  signals bump (``PeriodicTasks.changed``); beat reads it at every pass and re-reads the
  tasks only when it moved.

Each message carries the ``periodic_task_name`` header, as django-celery-beat's does;
``expires`` / ``expire_seconds`` become the message's ``expires``; a task is not sent
before its ``start_time`` nor at or after its ``expires`` (then it is disabled, as
django-celery-beat does). After each tick it sends, beat sets ``last_run_at`` (the tick)
and adds one to ``total_run_count`` with an ``UPDATE`` (no save signal, so other beats do
not re-read for it); a ``one_off`` task is then disabled and ``PeriodicTasks`` bumped.
Entries of the app's ``beat_schedule`` are sent too (a task of the same name in the
tables wins); they are not written into the tables.

A row that cannot be turned into an entry (bad JSON, no schedule) is logged and skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from celeriac.beat.bounded import bounded, clocked
from celeriac.beat.crontab import crontab
from celeriac.beat.entry import Entry, entries_from_app, merge_entries
from celeriac.beat.schedules import Schedule, schedule
from celeriac.beat.solar import solar
from celeriac.engines.django.orm import OrmThread, load_app_models

__all__ = ["DjangoSource", "entry_from_row"]

logger = logging.getLogger("celeriac.beat")

_PURPOSE = "beat_scheduler='django_celery_beat.schedulers:DatabaseScheduler'"
_OPTIONS = ("queue", "exchange", "routing_key", "priority")


def _aware(value: dt.datetime) -> dt.datetime:
    """A stored time as aware (Django with ``USE_TZ = False`` stores naive UTC-less times)."""
    from django.utils import timezone  # noqa: PLC0415

    return value if timezone.is_aware(value) else timezone.make_aware(value)


def _row_schedule(row: Any) -> Schedule:
    """The schedule of a ``PeriodicTask`` row, from whichever schedule it points at."""
    if row.interval is not None:
        every = row.interval
        return schedule(dt.timedelta(**{every.period: every.every}))
    if row.crontab is not None:
        cron = row.crontab
        zone = str(cron.timezone) if cron.timezone else None
        return crontab(
            cron.minute, cron.hour, cron.day_of_week, cron.day_of_month, cron.month_of_year,
            tz=zone,
        )  # fmt: skip
    if row.solar is not None:
        return solar(row.solar.event, float(row.solar.latitude), float(row.solar.longitude))
    if row.clocked is not None:
        return clocked(_aware(row.clocked.clocked_time))
    raise ValueError("it has no schedule (interval, crontab, solar or clocked)")


def _json(text: str | None, default: Any, what: str) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"its {what} are not JSON: {exc}") from None


def entry_from_row(row: Any) -> Entry:
    """The beat entry of one ``PeriodicTask`` row; ValueError naming what is wrong."""
    inner = _row_schedule(row)
    start = None if row.start_time is None else _aware(row.start_time)
    expires = None if row.expires is None else _aware(row.expires)
    plan = inner if start is None and expires is None else bounded(inner, start, expires)
    args = _json(row.args, [], "args")
    kwargs = _json(row.kwargs, {}, "kwargs")
    headers = _json(row.headers, {}, "headers")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("its args must be a JSON list and its kwargs a JSON object")
    if not isinstance(headers, dict):
        raise ValueError("its headers must be a JSON object")
    options: dict[str, Any] = {k: getattr(row, k) for k in _OPTIONS if getattr(row, k) is not None}
    if expires is not None or row.expire_seconds is not None:
        options["expires"] = expires if expires is not None else float(row.expire_seconds)
    options["headers"] = {**headers, "periodic_task_name": row.name}
    return Entry(row.name, row.task, plan, tuple(args), kwargs, options)


class DjangoSource:
    """django-celery-beat's ``PeriodicTask`` rows, plus the app's own ``beat_schedule``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._orm = OrmThread("celeriac-django-beat")
        self._models: Any = None
        self._seen: object = _UNREAD
        self._rows: set[str] = set()  # names of the tasks read from the tables
        self._one_off: set[str] = set()
        self._from_app: list[Entry] = []

    def __repr__(self) -> str:
        return "<DjangoSource django-celery-beat>"

    async def start(self) -> None:
        """Set Django up and check django-celery-beat is installed; the app's entries."""
        if not self._orm.started:
            self._models = await self._orm.start(_load_models)
            self.app.import_default_modules()
            self.app.finalize()
            self._from_app = entries_from_app(self.app)

    async def close(self) -> None:
        """Close the ORM thread's connection."""
        await self._orm.close()

    async def entries(self) -> list[Entry] | None:
        """Every enabled task, when ``PeriodicTasks.last_update`` moved since the last read."""
        rows = await self._orm.call(self._read_if_changed)
        if rows is None:
            return None
        return merge_entries([*self._from_app, *rows])

    def _read_if_changed(self) -> list[Entry] | None:
        stamp = self._models.PeriodicTasks.last_change()
        if stamp == self._seen:
            return None
        self._seen = stamp
        return self._read()

    def _read(self) -> list[Entry]:
        from django.utils import timezone  # noqa: PLC0415

        model = self._models.PeriodicTask
        rows = model._default_manager.filter(enabled=True).select_related(
            "interval", "crontab", "solar", "clocked"
        )
        now, found, expired = timezone.now(), [], []
        self._one_off, self._rows = set(), set()
        for row in rows:
            if row.expires is not None and _aware(row.expires) <= now:
                expired.append(row.pk)
                continue
            try:
                found.append(entry_from_row(row))
            except ValueError as exc:
                logger.error("beat: periodic task %r skipped: %s", row.name, exc)
                continue
            self._rows.add(row.name)
            if row.one_off:
                self._one_off.add(row.name)
        if expired:  # django-celery-beat disables expired tasks; no signal, as it does
            model._default_manager.filter(pk__in=expired).update(enabled=False)
        return found

    async def ran(self, entry: Entry, tick: dt.datetime) -> None:
        """Record the run in the row: ``last_run_at``, ``total_run_count``, one-off disabled."""
        if entry.name in self._rows:  # not an entry of the app's beat_schedule
            await self._orm.call(self._record, entry.name, tick, entry.name in self._one_off)

    def _record(self, name: str, tick: dt.datetime, one_off: bool) -> None:
        from django.db.models import F  # noqa: PLC0415

        fields: dict[str, Any] = {
            "last_run_at": tick,
            "total_run_count": F("total_run_count") + 1,
        }
        if one_off:
            fields["enabled"] = False
        updated = self._models.PeriodicTask._default_manager.filter(name=name).update(**fields)
        if one_off and updated:
            self._models.PeriodicTasks.update_changed()  # every beat drops it


_UNREAD = object()


def _load_models() -> Any:
    """django-celery-beat's models, once Django is set up; a clear error if it cannot be."""
    return load_app_models("django_celery_beat", "django-celery-beat", _PURPOSE)
