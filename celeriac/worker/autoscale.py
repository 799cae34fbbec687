"""``--autoscale MAX,MIN``: the prefork pool grows with the work held and shrinks when idle.

Celery's rule, checked every second: the pool should have as many processes as the worker
holds tasks (received and not finished), bounded by MIN and MAX. It grows at once; it
shrinks only when no growth happened for ``AUTOSCALE_KEEPALIVE`` seconds (environment
variable, default 30, as in Celery), and never below MIN (nor below one process: a pool
with no process could not start the task that should make it grow). The prefetch window
is sized for MAX, so that the work waiting is visible.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Autoscaler", "Resizable", "keepalive"]

logger = logging.getLogger("celeriac.worker")


@runtime_checkable
class Resizable(Protocol):
    """A pool whose number of processes can change while it runs."""

    @property
    def capacity(self) -> int:
        """Processes it runs now."""
        ...

    def resize(self, size: int) -> None:
        """Run ``size`` processes from now on."""
        ...


def keepalive() -> float:
    """Seconds without growth before the pool may shrink (``AUTOSCALE_KEEPALIVE``)."""
    return float(os.environ.get("AUTOSCALE_KEEPALIVE", 30))


class Autoscaler:
    """Resizes ``pool`` between ``minimum`` and ``maximum`` from the count ``held()``."""

    def __init__(
        self,
        pool: Resizable,
        maximum: int,
        minimum: int,
        held: Callable[[], int],
        interval: float = 1.0,
        idle_after: float | None = None,
    ) -> None:
        self.pool = pool
        self.maximum = maximum
        self.minimum = max(1, minimum)
        self.held = held
        self.interval = interval
        self.idle_after = keepalive() if idle_after is None else idle_after
        self._last_growth = 0.0

    def update(self, maximum: int | None, minimum: int | None) -> tuple[int, int]:
        """New bounds (None keeps one), as ``celery control autoscale MAX MIN`` sets them;
        the next check resizes the pool into them. The new ``(maximum, minimum)``."""
        high = self.maximum if maximum is None else int(maximum)
        low = self.minimum if minimum is None else max(1, int(minimum))
        if high < 1 or low > high:
            raise ValueError(f"autoscale needs 1 <= min <= max, not max={high} min={low}")
        self.maximum, self.minimum = high, low
        return high, low

    @property
    def initial(self) -> int:
        """The pool size to start with."""
        return self.minimum

    def step(self, now: float) -> int:
        """One check: resize if needed; return the new size."""
        size = self.pool.capacity
        wanted = min(max(self.held(), self.minimum), self.maximum)
        if wanted > size:
            logger.info("autoscale: %d -> %d processes", size, wanted)
            self.pool.resize(wanted)
            self._last_growth = now
        elif wanted < size and now - self._last_growth >= self.idle_after:
            logger.info("autoscale: %d -> %d processes", size, wanted)
            self.pool.resize(wanted)
        return self.pool.capacity

    async def run(self, stopping: asyncio.Event) -> None:
        """Check every ``interval`` until ``stopping`` is set."""
        loop = asyncio.get_running_loop()
        self._last_growth = loop.time()
        while not stopping.is_set():
            try:
                async with asyncio.timeout(self.interval):
                    await stopping.wait()
            except TimeoutError:
                pass
            if not stopping.is_set():
                try:
                    self.step(loop.time())
                except Exception:
                    logger.exception("autoscale: resizing the pool failed")
