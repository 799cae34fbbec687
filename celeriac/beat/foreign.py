"""``beat -S module:Class``: run a scheduler class written for Celery's beat.

Celery's beat service makes ``Class(app=app, schedule_filename=..., max_interval=...)``,
then calls ``tick()`` (it sends what is due and returns the seconds until the next check)
in a loop, and ``close()`` at exit (``sync()`` on schedulers without it). celeriac runs the
same loop, ``tick()`` on a thread so that a scheduler that queries a database does not hold
the event loop. Such a scheduler runs alone: it does not take celeriac's beat lease, so run
one beat with it, as with Celery. Celery's own default names select celeriac's leased
scheduler instead, and so do django-celery-beat's ``DatabaseScheduler`` names: celeriac's
beat then reads its entries from django-celery-beat's tables
(:class:`~celeriac.engines.django.beat.DjangoSource`), still under the lease.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from celeriac.conf.settings import load_object
from celeriac.exceptions import ImproperlyConfigured

__all__ = [
    "DJANGO_SCHEDULERS",
    "NATIVE_SCHEDULERS",
    "is_django",
    "is_native",
    "load_scheduler_class",
    "run_scheduler",
]

logger = logging.getLogger("celeriac.beat")

DJANGO_SCHEDULERS = frozenset(
    {
        "django_celery_beat.schedulers:DatabaseScheduler",
        "django_celery_beat.schedulers.DatabaseScheduler",
        "django",
    }
)
"""Scheduler names that mean celeriac's beat with django-celery-beat's tables as entries."""

NATIVE_SCHEDULERS = DJANGO_SCHEDULERS | frozenset(
    {
        "",
        "celery.beat:PersistentScheduler",
        "celery.beat.PersistentScheduler",
        "celeriac.beat.scheduler:Beat",
        "celeriac.beat.scheduler.Beat",
    }
)
"""Scheduler names that mean celeriac's own scheduler (Celery's default among them)."""


def is_django(path: str | None) -> bool:
    """Whether ``path`` names django-celery-beat's database scheduler."""
    return (path or "").strip() in DJANGO_SCHEDULERS


def is_native(path: str | None) -> bool:
    """Whether ``path`` names celeriac's own scheduler."""
    return (path or "").strip() in NATIVE_SCHEDULERS


def load_scheduler_class(path: str) -> type[Any]:
    """Import ``path`` and check it has Celery's scheduler interface (``tick()``)."""
    try:
        found = load_object(path)
    except (ImportError, AttributeError) as exc:
        raise ImproperlyConfigured(f"cannot load beat scheduler {path!r}: {exc}") from None
    if not isinstance(found, type) or not callable(getattr(found, "tick", None)):
        raise ImproperlyConfigured(
            f"{path!r} is not a beat scheduler class: Celery's interface is a class taking "
            "app= and having tick() (which sends what is due and returns seconds to sleep)"
        )
    return found


async def run_scheduler(
    cls: type[Any],
    app: Any,
    stop: asyncio.Event,
    *,
    max_interval: float,
    schedule_filename: str | None = None,
) -> None:
    """Run ``cls`` as Celery's beat service does, until ``stop`` is set."""
    options: dict[str, Any] = {"app": app, "max_interval": max_interval}
    if schedule_filename:
        options["schedule_filename"] = schedule_filename
    try:
        scheduler = await asyncio.to_thread(cls, **options)
    except Exception as exc:
        raise ImproperlyConfigured(
            f"beat scheduler {cls.__qualname__} failed to start: {exc}"
        ) from exc
    logger.info("beat: Starting %s...", cls.__qualname__)
    try:
        while not stop.is_set():
            interval = await asyncio.to_thread(scheduler.tick)
            wait = min(float(interval or 0) or max_interval, max_interval)
            try:
                async with asyncio.timeout(max(wait, 0.01)):
                    await stop.wait()
            except TimeoutError:
                pass
    finally:
        closer = getattr(scheduler, "close", None) or getattr(scheduler, "sync", None)
        if callable(closer):
            await asyncio.to_thread(closer)
