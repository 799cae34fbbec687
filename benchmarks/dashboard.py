"""How fast the dashboard takes events and answers, with N tasks in memory.

``python -m benchmarks.dashboard [--tasks N]`` feeds 3 events a task (received, started,
succeeded or failed) straight into a dashboard's feed (cluster state and metrics, no broker:
this measures the dashboard, not the transport), then times the task list API with each
filter and the pages, in-process through httpx's ASGI transport, and prints the peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
import uuid
from typing import Any

import httpx

from celeriac import Celery
from celeriac.web import create_app

__all__ = ["main"]

QUERIES: list[dict[str, Any]] = [
    {"limit": 100},
    {"state": "FAILURE", "limit": 100},
    {"taskname": "bench.t3", "limit": 100},
    {"search": "bench.t7", "limit": 50},
]
PAGES = ["/", "/tasks", "/tasks?state=FAILURE", "/metrics"]


def events(count: int) -> list[dict[str, Any]]:
    """The events of ``count`` tasks of 20 names, one in ten failing."""
    now = time.time()
    out: list[dict[str, Any]] = []
    for index in range(count):
        base = {"uuid": str(uuid.uuid4()), "hostname": "w@bench", "clock": index,
                "local_received": now, "timestamp": now}  # fmt: skip
        end = "task-failed" if index % 10 == 0 else "task-succeeded"
        out += [
            {**base, "type": "task-received", "name": f"bench.t{index % 20}", "args": "[1, 2]",
             "kwargs": "{}"},
            {**base, "type": "task-started"},
            {**base, "type": end, "result": "3", "runtime": 0.01},
        ]  # fmt: skip
    return out


async def timed(client: httpx.AsyncClient, url: str, params: Any = None, runs: int = 5) -> float:
    """Median milliseconds of ``runs`` requests (after one warm-up)."""
    await client.get(url, params=params)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        answer = await client.get(url, params=params)
        samples.append((time.perf_counter() - start) * 1000)
        answer.raise_for_status()
    return sorted(samples)[len(samples) // 2]


async def run(tasks: int) -> None:
    web = create_app(Celery("bench", broker="memory://"), max_tasks=tasks)
    feed = web.state.dashboard.feed
    stream = events(tasks)
    start = time.perf_counter()
    for event in stream:
        feed.take(event)
    elapsed = time.perf_counter() - start
    print(f"{tasks} tasks, {len(stream)} events: {len(stream) / elapsed:,.0f} events/s taken")
    transport = httpx.ASGITransport(app=web, client=("127.0.0.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        for query in QUERIES:
            print(f"GET /api/tasks {query}: {await timed(client, '/api/tasks', query):.1f} ms")
        for page in PAGES:
            print(f"GET {page}: {await timed(client, page):.1f} ms")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MB")


def main() -> None:
    """Parse ``--tasks`` and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10000)
    asyncio.run(run(parser.parse_args().tasks))


if __name__ == "__main__":
    main()
