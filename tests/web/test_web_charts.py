"""The overview's charts: per-minute counts and run-time quantiles of the last hour, from
events, refilled from the history after a restart, drawn as SVG and served as JSON."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.web import create_app
from celeriac.web.charts import BIN_EDGES, Bucket, Point, Series, line_chart
from celeriac.web.feed import Feed
from celeriac.web.history import History
from tests.web.test_web_worker import client_of

pytestmark = [pytest.mark.timeout(60)]

BIN_RATIO = BIN_EDGES[1] / BIN_EDGES[0]


class Clock:
    """A settable time.time."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_are_within_one_bin_of_the_exact_ones(seed: int) -> None:
    rng = random.Random(seed)
    runtimes = [rng.lognormvariate(-5, 2) for _ in range(5000)]
    bucket = Bucket(0.0)
    for runtime in runtimes:
        bucket.add(failed=False, runtime=runtime)
    for q in (0.5, 0.95, 0.99):
        exact, estimate = _nearest_rank(runtimes, q), bucket.quantile(q)
        assert estimate is not None
        assert exact / BIN_RATIO <= estimate <= exact * BIN_RATIO, (q, exact, estimate)
    assert bucket.succeeded == 5000 and bucket.failed == 0


def test_a_bucket_without_run_times_has_no_quantiles() -> None:
    bucket = Bucket(0.0)
    bucket.add(failed=True, runtime=None)
    assert (bucket.failed, bucket.quantile(0.5)) == (1, None)


def test_the_series_keeps_the_last_hour_by_minute() -> None:
    clock = Clock(36_000.0 + 30)  # half past the start of a minute
    series = Series(clock=clock)
    series.add(clock.now - 5, failed=False, runtime=0.010)
    series.add(clock.now - 65, failed=True, runtime=0.020)
    series.add(clock.now - 3601, failed=False, runtime=0.030)  # before the window
    series.add(clock.now + 3600, failed=False, runtime=0.040)  # a clock far ahead
    points = series.points()
    assert len(points) == 60 and points[-1].start == 36_000.0
    assert (points[-1].succeeded, points[-1].failed) == (1, 0)
    assert (points[-2].succeeded, points[-2].failed) == (0, 1)
    assert sum(p.succeeded + p.failed for p in points) == 2
    assert points[-1].p50 is not None and 0.010 / BIN_RATIO <= points[-1].p50 <= 0.010 * BIN_RATIO

    clock.now += 3600  # an hour later both are out of the window, and new minutes forget them
    series.add(clock.now, failed=False, runtime=None)
    assert sum(p.succeeded + p.failed for p in series.points()) == 1
    assert len(series._buckets) == 1


def _task_events(uuid: str, finished: float, *, fail: bool) -> list[dict[str, Any]]:
    common = {"uuid": uuid, "hostname": "w1@host"}
    end = (
        {**common, "type": "task-failed", "timestamp": finished, "exception": "E()"}
        if fail
        else {**common, "type": "task-succeeded", "timestamp": finished, "runtime": 0.25}
    )
    return [
        {**common, "type": "task-received", "timestamp": finished - 1, "name": "t.x"},
        {**common, "type": "task-started", "timestamp": finished - 0.5},
        end,
    ]


def test_the_feed_charts_the_tasks_that_finish() -> None:
    feed = Feed(Celery("c", broker="memory://"))
    now = time.time()
    for n in range(3):
        for event in _task_events(f"ok-{n}", now, fail=False):
            feed.take(event)
    for event in _task_events("bad", now, fail=True):
        feed.take(event)
    feed.take(_task_events("running", now, fail=False)[1])  # started only: not charted
    last = feed.series.points()[-1]
    assert (last.succeeded, last.failed) == (3, 1)
    assert last.p50 is not None and 0.25 / BIN_RATIO <= last.p50 <= 0.25 * BIN_RATIO


async def test_the_history_refills_the_charts_beyond_what_memory_holds(tmp_path: Path) -> None:
    history = History(tmp_path / "history.sqlite")
    feed = Feed(Celery("c", broker="memory://"), history=history, max_tasks=2)
    now = time.time()
    for n in range(5):
        for event in _task_events(f"id-{n}", now - 120 * n, fail=n == 4):
            feed.take(event)
            await history.flush(feed.state)  # memory holds two: write each as it goes
    await history.close()

    series = Series()
    assert await History(tmp_path / "history.sqlite").chart(series) == 5
    points = series.points()
    assert sum(p.succeeded for p in points) == 4 and sum(p.failed for p in points) == 1
    assert points[-1].succeeded == 1  # id-0 finished now; id-4 eight minutes ago failed
    assert points[-9].failed == 1


def test_a_chart_is_svg_with_gaps_where_there_is_no_value() -> None:
    points = [Point(float(n), n, 0, None if n == 2 else n / 10, None, None) for n in range(5)]
    svg = line_chart(
        "run <time>",
        points,
        [("p50", lambda p: p.p50), ("count", lambda p: p.succeeded)],
        unit=lambda top: f"{top:g} max",
    )
    assert svg.startswith("<svg") and "run &lt;time&gt;" in svg
    p50 = svg.split('class="line p50" d="')[1].split('"')[0]
    assert p50.count("M") == 2  # the line starts again after the missing point
    assert "4 max" in svg  # the largest value of all lines


async def test_the_overview_draws_the_charts_and_the_api_serves_them() -> None:
    web = create_app(Celery("c", broker="memory://"))
    feed = web.state.dashboard.feed
    for event in _task_events("one", time.time(), fail=True):
        feed.take(event)
    async with client_of(web, auth=None) as client:
        page = await client.get("/")
        served = await client.get("/api/series")
    assert page.status_code == 200
    assert page.text.count('<svg class="chart"') == 2
    assert 'class="line failed"' in page.text
    body = served.json()
    assert body["interval"] == 60.0 and len(body["points"]) == 60
    assert body["points"][-1]["failed"] == 1 and body["points"][-1]["succeeded"] == 0
