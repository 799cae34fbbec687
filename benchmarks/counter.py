"""The completion counter: a file in /dev/shm to which every finished task appends a byte.

The harness polls its size, so every system's completions are counted the same way and
none of their result machinery is involved.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Counter", "Drain"]

_SHM = Path("/dev/shm")


@dataclass(frozen=True)
class Drain:
    """When completions happened: the first one, the last one awaited, and how many."""

    first: float | None
    last: float | None
    count: int
    expected: int

    @property
    def complete(self) -> bool:
        """Whether every expected task completed."""
        return self.count >= self.expected

    def rate(self) -> float | None:
        """Completions per second between the first and the last (excludes worker startup)."""
        if self.first is None or self.last is None or self.count < 2 or self.last <= self.first:
            return None
        return (min(self.count, self.expected) - 1) / (self.last - self.first)

    def span(self) -> float | None:
        """Seconds from the first to the last completion."""
        if self.first is None or self.last is None:
            return None
        return self.last - self.first


class Counter:
    """A fresh, empty counter file (removed by :meth:`remove`)."""

    def __init__(self, label: str) -> None:
        directory = _SHM if _SHM.is_dir() else Path(tempfile.gettempdir())
        fd, name = tempfile.mkstemp(prefix=f"celeriac-bench-{label}-", dir=directory)
        os.close(fd)
        self.path = Path(name)

    def size(self) -> int:
        """How many completions so far."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def wait(self, expected: int, *, stall: float, alive: object = None) -> Drain:
        """Poll until ``expected`` completions, or until none came for ``stall`` seconds.

        The clock for ``stall`` starts when the first completion is seen or at the call,
        whichever is later; ``alive`` (a callable) stops the wait early when it returns False.
        """
        first: float | None = None
        last: float | None = None
        seen = 0
        progress_at = time.perf_counter()
        while True:
            now = time.perf_counter()
            count = self.size()
            if count > seen:
                if first is None:
                    first = now
                seen, last, progress_at = count, now, now
                if count >= expected:
                    return Drain(first, last, count, expected)
            if now - progress_at > stall or (callable(alive) and not alive()):
                return Drain(first, last, seen, expected)
            time.sleep(0.001 if first is None else 0.002)

    def remove(self) -> None:
        """Delete the file."""
        self.path.unlink(missing_ok=True)
