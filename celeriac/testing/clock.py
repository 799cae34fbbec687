"""A fake clock for countdown, ETA and beat tests: time moves only when the test says.

``FakeClock().install()`` makes celeriac's wall clock (:mod:`celeriac.clock`) read it:
countdowns and ETAs are computed from it when a task is sent, the memory broker's
delayed store releases a message when it says the message is due, and the worker's ETA
and expiry checks compare with it. ``advance(3600)`` then runs an
``apply_async(countdown=3600)`` task at the worker's next fetch (within a second),
without sleeping. It is also a beat :class:`~celeriac.beat.scheduler.Clock`: beat's
default clock reads the same wall clock; passed as ``Beat(clock=...)``, the fake's
monotonic (lease) clock stands still and moves with ``advance`` too.

ETAs within ``worker_eta_hold_seconds`` of the clock are waited for in the worker in
real time, as before; only the far ones (held by the broker) follow the fake clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from celeriac import clock

__all__ = ["FakeClock"]


class FakeClock:
    """Wall time that stands still until :meth:`advance`; starts at ``start`` (epoch s,
    default: now, rounded down to the second)."""

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        # A whole second by default: ETAs travel as datetimes (microseconds), so a clock
        # between two microseconds would never quite reach a countdown it advanced by.
        self._now = float(int(time.time()) if start is None else start)
        self._mono = time.monotonic()
        self._previous: Callable[[], float] | None = None

    def time(self) -> float:
        """The fake epoch seconds."""
        return self._now

    def now(self) -> datetime:
        """The fake time in UTC (beat's ``Clock.now``)."""
        return datetime.fromtimestamp(self._now, UTC)

    def monotonic(self) -> float:
        """Monotonic seconds that also stand still until :meth:`advance` (beat's lease
        clock, when the fake is given to ``Beat(clock=...)``)."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (never back: ValueError)."""
        if seconds < 0:
            raise ValueError(f"FakeClock.advance({seconds}): the clock never goes back")
        with self._lock:
            self._now += seconds
            self._mono += seconds

    def install(self) -> FakeClock:
        """Make celeriac read this clock (until :meth:`uninstall`); returns itself."""
        if self._previous is not None:
            raise RuntimeError("FakeClock is installed already")
        self._previous = clock.set_wall(self.time)
        return self

    def uninstall(self) -> None:
        """Give celeriac back the clock it read before :meth:`install`."""
        if self._previous is not None:
            clock.set_wall(self._previous)
            self._previous = None
