"""Per-task rate limits, per worker, as Celery applies ``rate_limit='10/m'``.

A token bucket per task name: a task waits (holding no pool slot) until a token
is available. Messages keep their place in the prefetch window meanwhile.
"""

from __future__ import annotations

import asyncio
import time

from celeriac.exceptions import ImproperlyConfigured

__all__ = ["RateLimiter", "parse_rate"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(rate: str | float | int | None) -> float | None:
    """Tasks per second from Celery's notation (``'100/m'``, ``10``); None = unlimited."""
    if rate is None or rate == "" or rate == 0:
        return None
    if isinstance(rate, int | float):
        return float(rate)
    count, _, unit = str(rate).partition("/")
    try:
        per_second = float(count) / _UNITS[unit.strip() or "s"]
    except (ValueError, KeyError):
        raise ImproperlyConfigured(
            f"invalid rate limit {rate!r}: use e.g. '10/s', '100/m', '1000/h'"
        ) from None
    return per_second or None


class _Bucket:
    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self.next_free = 0.0
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:  # FIFO among waiters of this task
            now = time.monotonic()
            wait = self.next_free - now
            self.next_free = max(now, self.next_free) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


class RateLimiter:
    """Token buckets by task name."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket | None] = {}

    def set(self, name: str, rate: str | float | int | None) -> None:
        """Set (or clear, with None) the rate of one task."""
        per_second = parse_rate(rate)
        self._buckets[name] = _Bucket(per_second) if per_second else None

    async def acquire(self, name: str, rate: str | float | int | None) -> None:
        """Wait until task ``name`` may start under ``rate``."""
        if name not in self._buckets:
            self.set(name, rate)
        bucket = self._buckets[name]
        if bucket is not None:
            await bucket.take()
