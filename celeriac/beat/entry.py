"""Beat entries: what to send, on which schedule, under which name.

Entries come from two places, merged in this order (a later entry with the same name
replaces an earlier one):

1. the ``beat_schedule`` setting, Celery's dict ``{name: {"task", "schedule", "args",
   "kwargs", "options", "relative"}}``; a schedule given as a number is seconds;
2. ``app.add_periodic_task(schedule, sig, args=, kwargs=, name=, **options)`` calls,
   usually made from an ``on_after_configure`` handler.

An entry's name is its identity in the schedule store. A periodic task added without
a name is named by its signature *and* its schedule (:func:`entry_key`), e.g.
``tasks.check_cat()@every:60.0``, so the same signature on two schedules is two
entries. (Celery keys it by the signature alone and silently keeps only the last one.)

Crontab schedules that name no time zone of their own run in the app's zone: the
``timezone`` setting, else UTC, else (``enable_utc=False``) the local zone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celeriac.beat.schedules import Schedule, maybe_schedule
from celeriac.exceptions import ImproperlyConfigured

__all__ = [
    "Entry",
    "app_timezone",
    "entries_from_app",
    "entry_from_config",
    "entry_from_periodic_task",
    "entry_key",
    "merge_entries",
]

logger = logging.getLogger("celeriac.beat")


@dataclass(frozen=True, eq=False)
class Entry:
    """One periodic task: its store name, task name, schedule and publish arguments."""

    name: str
    task: str
    schedule: Schedule
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<Entry {self.name}: {self.task} {self.schedule!r}>"


def _arg_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)


def entry_key(task: str, args: Sequence[Any], kwargs: Mapping[str, Any], schedule: Schedule) -> str:
    """The name of an unnamed entry: ``task(args, k=v)@<schedule key>``."""
    parts = [_arg_text(a) for a in args]
    parts += [f"{k}={_arg_text(v)}" for k, v in sorted(kwargs.items())]
    return f"{task}({', '.join(parts)})@{schedule.key()}"


def _local_zone_name() -> str | None:
    """The local zone's IANA name from ``TZ`` or ``/etc/localtime``; None if unknown."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        return name
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return None
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else None


def app_timezone(conf: Mapping[str, Any]) -> str | dt.tzinfo:
    """The zone crontabs without their own run in (Celery's ``app.timezone``)."""
    zone = conf.get("timezone")
    if zone:
        return zone if isinstance(zone, dt.tzinfo) else str(zone)
    if conf.get("enable_utc", True):
        return "UTC"
    local = _local_zone_name()
    if local is None:
        logger.warning("beat: enable_utc=False but the local time zone is unknown; using UTC")
        return "UTC"
    return local


def _schedule(value: Any, where: str) -> Schedule:
    try:
        return maybe_schedule(value)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"{where}: bad schedule {value!r}: {exc}") from exc


def _in_zone(schedule: Schedule, zone: str | dt.tzinfo) -> Schedule:
    """The schedule evaluated in ``zone`` unless it has its own (only crontab cares)."""
    apply = getattr(schedule, "with_default_tz", None)
    if apply is None:
        return schedule
    zoned: Schedule = apply(zone)
    return zoned


def _sequence(value: Any, where: str) -> tuple[Any, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ImproperlyConfigured(f"{where}: args must be a list or tuple, not {value!r}")
    return tuple(value)


def _mapping(value: Any, what: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"{where}: {what} must be a dict, not {value!r}")
    return dict(value)


def entry_from_config(name: str, spec: Mapping[str, Any], zone: str | dt.tzinfo) -> Entry:
    """Build the entry ``name`` of ``beat_schedule``."""
    where = f"beat_schedule[{name!r}]"
    if not isinstance(spec, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict, not {spec!r}")
    task = spec.get("task")
    if not isinstance(task, str) or not task:
        raise ImproperlyConfigured(f"{where} needs 'task': the task name")
    if "schedule" not in spec:
        raise ImproperlyConfigured(f"{where} needs 'schedule': seconds, timedelta or crontab")
    if spec.get("relative"):
        logger.warning("%s: relative=True is not supported; the interval is not rounded", where)
    return Entry(
        name=name,
        task=task,
        schedule=_in_zone(_schedule(spec["schedule"], where), zone),
        args=_sequence(spec.get("args"), where),
        kwargs=_mapping(spec.get("kwargs"), "kwargs", where),
        options=_mapping(spec.get("options"), "options", where),
    )


def _signature_parts(sig: Any, where: str) -> tuple[str, list[Any], dict[str, Any], dict[str, Any]]:
    """Task name, args, kwargs and options of a signature, a task or a task name."""
    if isinstance(sig, str):
        return sig, [], {}, {}
    if isinstance(sig, Mapping):
        task = sig.get("task")
        if not isinstance(task, str) or not task:
            raise ImproperlyConfigured(f"{where}: the signature names no task: {sig!r}")
        args = list(sig.get("args") or ())
        return task, args, dict(sig.get("kwargs") or {}), dict(sig.get("options") or {})
    name = getattr(sig, "name", None)
    if isinstance(name, str) and name:
        return name, [], {}, {}
    raise ImproperlyConfigured(f"{where}: expected a signature such as task.s(), got {sig!r}")


def entry_from_periodic_task(spec: Mapping[str, Any], zone: str | dt.tzinfo) -> Entry:
    """Build the entry of one ``app.add_periodic_task`` call (as recorded by the app)."""
    where = "add_periodic_task"
    task, args, kwargs, options = _signature_parts(spec.get("sig"), where)
    args += list(_sequence(spec.get("args"), where))
    kwargs.update(_mapping(spec.get("kwargs"), "kwargs", where))
    options.update(_mapping(spec.get("options"), "options", where))
    schedule = _schedule(spec.get("schedule"), where)
    name = spec.get("name") or entry_key(task, args, kwargs, schedule)
    return Entry(
        name=str(name),
        task=task,
        schedule=_in_zone(schedule, zone),
        args=tuple(args),
        kwargs=kwargs,
        options=options,
    )


def merge_entries(entries: Iterable[Entry]) -> list[Entry]:
    """Keep the last entry of each name, in first-seen order."""
    by_name: dict[str, Entry] = {}
    for entry in entries:
        if entry.name in by_name:
            logger.debug("beat: entry %r defined again; the later definition wins", entry.name)
        by_name[entry.name] = entry
    return list(by_name.values())


def entries_from_app(app: Any) -> list[Entry]:
    """Every entry of ``app``: ``beat_schedule``, then ``add_periodic_task`` calls.

    Call ``app.finalize()`` first: it runs the ``on_after_configure`` handlers.
    """
    zone = app_timezone(app.conf)
    schedule = app.conf.get("beat_schedule") or {}
    if not isinstance(schedule, Mapping):
        raise ImproperlyConfigured(f"beat_schedule must be a dict, not {schedule!r}")
    configured = [entry_from_config(str(n), spec, zone) for n, spec in schedule.items()]
    added = [entry_from_periodic_task(spec, zone) for spec in app.periodic_tasks]
    return merge_entries([*configured, *added])
