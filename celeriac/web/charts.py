"""The overview's charts: tasks finished and failed, and run-time quantiles, over the last hour.

A :class:`Series` keeps one :class:`Bucket` per minute (by the time each task finished, as
its worker's clock said) for the last hour. A bucket counts successes and failures and
keeps the run times in a histogram of logarithmic bins, so a task costs a few additions
whatever the rate, the memory is fixed, and p50/p95/p99 are read off the bins (each within
the width of one bin, about ±5 %). When the dashboard starts it refills the series from its
history, so the charts show the hour before a restart.

:func:`line_chart` draws points as an inline SVG (server-rendered, no script, no build step).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from celeriac.events.state import Task

__all__ = ["BIN_EDGES", "Bucket", "Point", "Series", "line_chart"]

BIN_EDGES: tuple[float, ...] = tuple(10 ** (exponent / 20) * 1e-5 for exponent in range(181))
"""Upper edges of the run-time bins: 10 µs to 10,000 s, 20 bins a decade (12 % apart)."""

QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class Bucket:
    """The tasks that finished in one interval."""

    start: float
    succeeded: int = 0
    failed: int = 0
    bins: list[int] = field(default_factory=lambda: [0] * (len(BIN_EDGES) + 1))
    timed: int = 0

    def add(self, *, failed: bool, runtime: float | None) -> None:
        """Count one finished task."""
        if failed:
            self.failed += 1
        else:
            self.succeeded += 1
        if runtime is not None and runtime >= 0:
            self.bins[bisect.bisect_left(BIN_EDGES, runtime)] += 1
            self.timed += 1

    def quantile(self, q: float) -> float | None:
        """The run time below which a fraction ``q`` of the timed tasks fall (a bin's middle)."""
        if not self.timed:
            return None
        rank = max(1, math.ceil(q * self.timed))
        seen = 0
        for index, count in enumerate(self.bins):
            seen += count
            if seen >= rank:
                return _bin_middle(index)
        return None  # not reached: the bins add up to ``timed``


def _bin_middle(index: int) -> float:
    """The geometric middle of bin ``index`` (the last bins stand for their edge)."""
    if index == 0:
        return BIN_EDGES[0]
    if index >= len(BIN_EDGES):
        return BIN_EDGES[-1]
    return math.sqrt(BIN_EDGES[index - 1] * BIN_EDGES[index])


@dataclass(frozen=True)
class Point:
    """One interval of a chart."""

    start: float
    succeeded: int
    failed: int
    p50: float | None
    p95: float | None
    p99: float | None


class Series:
    """Finished tasks per ``interval`` seconds over the last ``span`` intervals."""

    def __init__(
        self,
        *,
        interval: float = 60.0,
        span: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0 or span < 1:
            raise ValueError("a series needs a positive interval and span")
        self.interval = interval
        self.span = span
        self.clock = clock
        self._buckets: dict[int, Bucket] = {}

    @property
    def window(self) -> float:
        """Seconds the series covers."""
        return self.interval * self.span

    def add(self, when: float, *, failed: bool, runtime: float | None) -> None:
        """Count a task that finished at ``when`` (ignored outside the charted minutes, or
        more than one interval ahead: a clock far off)."""
        first, last = self._keys()
        key = int(when // self.interval)
        if not first <= key <= last + 1:
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            for old in [old for old in self._buckets if old < first]:
                del self._buckets[old]
            bucket = self._buckets[key] = Bucket(key * self.interval)
        bucket.add(failed=failed, runtime=runtime)

    def add_task(self, task: Task) -> None:
        """Count ``task`` if it succeeded or failed (the event just applied to it)."""
        if task.state == "SUCCESS":
            when, failed = task.succeeded, False
        elif task.state == "FAILURE":
            when, failed = task.failed, True
        else:
            return
        if isinstance(when, int | float):
            runtime = task.runtime if isinstance(task.runtime, int | float) else None
            self.add(float(when), failed=failed, runtime=runtime)

    def points(self) -> list[Point]:
        """One point per interval of the window, oldest first (empty intervals as zeros)."""
        first, last = self._keys()
        found = []
        for key in range(first, last + 1):
            bucket = self._buckets.get(key) or Bucket(key * self.interval)
            found.append(
                Point(bucket.start, bucket.succeeded, bucket.failed,
                      *(bucket.quantile(q) for q in QUANTILES))
            )  # fmt: skip
        return found

    def _keys(self) -> tuple[int, int]:
        """The first and last interval charted now (the last is the present one)."""
        last = int(self.clock() // self.interval)
        return last - self.span + 1, last


CHART_WIDTH = 600
CHART_HEIGHT = 120


def line_chart(
    title: str,
    points: Sequence[Point],
    lines: Iterable[tuple[str, Callable[[Point], float | None]]],
    *,
    unit: Callable[[float], str] = str,
) -> Markup:
    """An SVG chart of one line per ``(css class, value of a point)``; gaps where a value
    is None, the largest value written at the top left."""
    drawn = [(css, [getter(point) for point in points]) for css, getter in lines]
    top = max((value for _, values in drawn for value in values if value is not None), default=0)
    scale = (CHART_HEIGHT - 4) / top if top else 0.0
    step = CHART_WIDTH / max(len(points) - 1, 1)
    paths = []
    for css, values in drawn:
        segments: list[str] = []
        pen_down = False
        for index, value in enumerate(values):
            if value is None:
                pen_down = False
                continue
            x, y = index * step, CHART_HEIGHT - 2 - value * scale
            segments.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
            pen_down = True
        paths.append(f'<path class="line {escape(css)}" d="{" ".join(segments)}"/>')
    label = f'<text x="4" y="14">{escape(unit(top))}</text>' if top else ""
    return Markup(
        f'<svg class="chart" role="img" aria-label="{escape(title)}"'
        f' viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}">'
        f"<title>{escape(title)}</title>{''.join(paths)}{label}</svg>"
    )
