"""The settings table: every Celery 5.7 setting, plus celeriac's own, in one place.

Each module holds one area's :class:`~celeriac.conf.model.Setting` rows; here they are
joined into :data:`SETTINGS` (by name, in Celery's order within each area) and
:data:`ALIASES` (Celery 3's uppercase names to the current ones). ``app.conf`` reads its
defaults from here, :mod:`celeriac.conf.checks` its warnings, and
:mod:`celeriac.conf.reference` writes ``docs/configuration.md`` from it.
"""

from __future__ import annotations

from celeriac.conf.model import Setting
from celeriac.conf.table import app, broker, messaging, results, stores, tasks, worker

__all__ = ["ALIASES", "AREAS", "SETTINGS"]

AREAS: dict[str, tuple[Setting, ...]] = {
    "Application and beat": app.SETTINGS,
    "Broker": broker.SETTINGS,
    "Tasks": tasks.SETTINGS,
    "Worker": worker.SETTINGS,
    "Results": results.SETTINGS,
    "Events, remote control and message signing": messaging.SETTINGS,
    "Result backends celeriac does not have": stores.SETTINGS,
}
"""The table's rows by area, in the order the reference documents them."""


def _by_name() -> dict[str, Setting]:
    table: dict[str, Setting] = {}
    for rows in AREAS.values():
        for row in rows:
            if row.name in table:
                raise ValueError(f"setting {row.name!r} is in the table twice")
            table[row.name] = row
    return table


SETTINGS: dict[str, Setting] = _by_name()
"""Every known setting by its (lowercase) name."""

ALIASES: dict[str, str] = {alias: row.name for row in SETTINGS.values() for alias in row.aliases}
"""Celery 3's uppercase names (``CELERY_ALWAYS_EAGER``) mapped to the current ones."""
