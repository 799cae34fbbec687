"""The prefetch window: how many deliveries of sync tasks a worker holds at once.

Celery's window is fixed: ``concurrency * worker_prefetch_multiplier`` (8 with ``-c 2``).
That is right for long tasks (a message held by a busy worker is not run by an idle one)
and costly for short ones: each fetch brings half a window, so a worker running no-op
tasks spends its time on fetch round trips (issue #17: 3.7k/s with the default window,
6.8k/s with ``--prefetch-multiplier 64``).

When the user left the multiplier at its default, the window adapts to how long tasks
run. It holds about :data:`HORIZON` seconds of work per pool slot, by a moving average
of the tasks' run times, and never less than the fixed window nor more than
:data:`PER_SLOT_MOST` per slot (and :data:`MOST` in all, so memory stays bounded):

* no-op tasks (tens of µs): the ceiling, 64 per slot;
* tasks of 12.5 ms or more: the fixed window, as in Celery;
* no task finished for :data:`HORIZON` seconds (idle, or every slot on a long task): the
  fixed window, so a burst that follows a pause (perhaps of long tasks) is spread across
  workers like Celery's until its tasks are seen to be short.

The average moves by :data:`SMOOTHING` of each new run time, so one long task among short
ones shrinks the window at once (a 0.5 s task lifts a 50 µs average to 50 ms) while the
window grows back only after a few dozen short ones. A multiplier set by the user
(``--prefetch-multiplier``, ``worker_prefetch_multiplier``, ``worker_disable_prefetch``) is
honoured exactly: the window is then fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["HORIZON", "MOST", "PER_SLOT_MOST", "SMOOTHING", "PrefetchWindow"]

HORIZON = 0.05
"""Seconds of work the adaptive window holds per pool slot (by the average run time)."""

PER_SLOT_MOST = 64
"""The adaptive window's ceiling per pool slot (the multiplier that measured fastest)."""

MOST = 4096
"""The adaptive window's ceiling in all, whatever the concurrency (bounded memory)."""

SMOOTHING = 0.1
"""Weight of each new run time in the moving average."""


class PrefetchWindow:
    """The window for ``concurrency`` slots: fixed, or sized by observed run times.

    :meth:`observe` is told each finished task's run time; :meth:`size` gives the window
    now. ``clock`` (monotonic seconds) is a parameter for tests.
    """

    def __init__(
        self,
        multiplier: int,
        *,
        adaptive: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.multiplier = max(1, multiplier)
        self.adaptive = adaptive
        self.average: float | None = None
        """Moving average of run times, in seconds (None: no task finished yet)."""
        self.peak = 0
        """The largest window given so far (``inspect stats`` shows it)."""
        self._clock = clock
        self._last = 0.0

    def observe(self, seconds: float) -> None:
        """A task ran for ``seconds`` (an over-estimate is safe: it only shrinks the window)."""
        if not self.adaptive:
            return
        seconds = max(0.0, seconds)
        average = self.average
        self.average = seconds if average is None else average + SMOOTHING * (seconds - average)
        self._last = self._clock()

    def fixed(self, concurrency: int) -> int:
        """Celery's window: ``concurrency * multiplier``."""
        return max(1, concurrency) * self.multiplier

    def ceiling(self, concurrency: int) -> int:
        """The most the adaptive window ever holds for ``concurrency`` slots."""
        return max(self.fixed(concurrency), min(max(1, concurrency) * PER_SLOT_MOST, MOST))

    def describe(self, concurrency: int) -> dict[str, Any]:
        """The window's state, as ``inspect stats`` shows it (``prefetch_window``); the sizes
        are of the sync tasks' part (``prefetch_count`` adds the async room)."""
        return {
            "adaptive": self.adaptive,
            "fixed": self.fixed(concurrency),
            "ceiling": self.ceiling(concurrency) if self.adaptive else self.fixed(concurrency),
            "current": self.size(concurrency),
            "peak": max(self.peak, self.fixed(concurrency)),
            "average_runtime": self.average,
        }

    def size(self, concurrency: int) -> int:
        """How many deliveries of sync tasks may be held now."""
        base = self.fixed(concurrency)
        average = self.average
        if not self.adaptive or average is None or self._clock() - self._last > HORIZON:
            return base
        wanted = int(max(1, concurrency) * HORIZON / max(average, 1e-9))
        window = min(max(base, wanted), self.ceiling(concurrency))
        if window > self.peak:
            self.peak = window
        return window
