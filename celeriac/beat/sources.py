"""Where beat's entries come from: the :class:`EntrySource` interface and its default.

Beat asks its source for the entries at start and again at every pass
(:meth:`EntrySource.entries` answers None when nothing changed, so asking is cheap), and
tells it about each tick sent (:meth:`EntrySource.ran`), so that a source kept in a
database can record the run. The lease and the per-tick claims stay in beat's
:class:`~celeriac.beat.stores.ScheduleStore`, whatever the source.

Sources: :class:`AppSource` (the app's ``beat_schedule`` and ``add_periodic_task``
calls, the default), :class:`FixedSource` (a given list) and
:class:`~celeriac.engines.django.beat.DjangoSource` (django-celery-beat's tables),
chosen by the ``beat_scheduler`` setting or ``beat -S`` (:func:`source_for_app`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from celeriac.beat.entry import Entry, entries_from_app
from celeriac.beat.foreign import is_django

__all__ = ["AppSource", "EntrySource", "FixedSource", "source_for_app"]


class EntrySource(Protocol):
    """The entries one beat sends."""

    async def start(self) -> None:
        """Connect or import what the entries need; a clear error if it cannot."""
        ...

    async def entries(self) -> list[Entry] | None:
        """Every entry, the first time and after a change; None when unchanged since."""
        ...

    async def ran(self, entry: Entry, tick: datetime) -> None:
        """``entry``'s message for ``tick`` was sent (by this beat)."""
        ...

    async def close(self) -> None:
        """Release what :meth:`start` took."""
        ...


class FixedSource:
    """A given list of entries that never changes."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self._entries: list[Entry] | None = list(entries)

    def __repr__(self) -> str:
        return "<FixedSource>"

    async def start(self) -> None:
        """Nothing to do."""

    async def entries(self) -> list[Entry] | None:
        """The list, once."""
        given, self._entries = self._entries, None
        return given

    async def ran(self, entry: Entry, tick: datetime) -> None:
        """Nothing is recorded."""

    async def close(self) -> None:
        """Nothing to do."""


class AppSource(FixedSource):
    """The app's entries (``beat_schedule`` and ``add_periodic_task``), read at start."""

    def __init__(self, app: Any) -> None:
        super().__init__(())
        self._entries = None
        self.app = app

    def __repr__(self) -> str:
        return "<AppSource beat_schedule>"

    async def start(self) -> None:
        """Import the task modules and finalize the app (its ``on_after_configure`` runs)."""
        self.app.import_default_modules()
        self.app.finalize()
        self._entries = entries_from_app(self.app)


def source_for_app(app: Any, scheduler: str | None = None) -> EntrySource:
    """The source that ``scheduler`` (default: the ``beat_scheduler`` setting) names."""
    name = app.conf.get("beat_scheduler") if scheduler is None else scheduler
    if is_django(name):
        from celeriac.engines.django.beat import DjangoSource  # noqa: PLC0415  (optional)

        return DjangoSource(app)
    return AppSource(app)
