"""The wall clock celeriac reads for ETAs, countdowns, expiries and delayed delivery.

Callers read ``clock.wall()``: a module attribute, so a test swaps it
(:class:`celeriac.testing.clock.FakeClock`) and the hot path pays the same attribute
lookup as ``time.time()``, with no wrapper. Monotonic timers (leases, heartbeats,
timeouts) keep ``time.monotonic``: they measure real waiting, not scheduled time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["reset", "set_wall", "wall"]

wall: Callable[[], float] = time.time
"""Epoch seconds, as ``time.time()`` (the default)."""


def set_wall(source: Callable[[], float]) -> Callable[[], float]:
    """Read the wall clock from ``source`` from now on; return the previous source."""
    global wall
    previous, wall = wall, source
    return previous


def reset() -> None:
    """Back to ``time.time``."""
    set_wall(time.time)
