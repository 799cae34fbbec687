"""How fast the dashboard takes events and answers, with N tasks in memory and M in history.

``python -m benchmarks.dashboard [--tasks N] [--history-tasks M] [--store sqlite|postgres]``
feeds 3 events a task (received, started, succeeded or failed) straight into a dashboard's
feed (cluster state and metrics, no broker: this measures the dashboard, not the
transport), then times the task list API with each filter and the pages, in-process
through httpx's ASGI transport, and prints the peak RSS.

With ``--history-tasks M`` the dashboard keeps a history (a SQLite file in a temporary
directory, or a fresh schema of the PostgreSQL at ``--postgres``, dropped afterwards): the
history is first filled with M tasks written through the store's own batch write (10,000
a transaction: the flush's path, without its one-second pace), then the N tasks' events
are fed with the history's flush running (the ingest rate counts the flushes: it ends
when the last change is written), and the filters are answered from the history.
``--rate R`` feeds at most R events a second (a steady stream: what is pending between
two flushes, so the memory, depends on the pace). Without it the feed goes as fast as the
loop takes events and waits when the history's writer is behind, as the feed's receiver
does (``Feed.keep_pace``). The start's read of the history's totals (one grouped pass over
the table) is timed too. ``--json FILE`` writes the numbers (with the load average at each
step) to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from celeriac import Celery
from celeriac.web import create_app
from celeriac.web.history import History, HistoryStore, Row

__all__ = ["main"]

QUERIES: list[dict[str, Any]] = [
    {"limit": 100},
    {"state": "FAILURE", "limit": 100},
    {"taskname": "bench.t3", "limit": 100},
    {"search": "bench.t7", "limit": 50},
    {"workername": "w2@bench", "limit": 100},
    {"state": "FAILURE", "limit": 100, "offset": 10000},
]
PAGES = ["/", "/tasks", "/tasks?state=FAILURE", "/tasks?taskname=bench.t5", "/metrics"]
SEED_BATCH = 10_000


def load() -> float:
    """The one-minute load average."""
    return os.getloadavg()[0]


def task_events(index: int, now: float) -> list[dict[str, Any]]:
    """The events of task ``index`` of 20 names on 2 workers, one in ten failing."""
    base = {"uuid": str(uuid.uuid4()), "hostname": f"w{index % 2 + 1}@bench", "clock": index,
            "local_received": now, "timestamp": now}  # fmt: skip
    end = "task-failed" if index % 10 == 0 else "task-succeeded"
    return [
        {**base, "type": "task-received", "name": f"bench.t{index % 20}", "args": "[1, 2]",
         "kwargs": "{}"},
        {**base, "type": "task-started"},
        {**base, "type": end, "result": "3", "runtime": 0.01},
    ]  # fmt: skip


def events(count: int) -> Iterator[dict[str, Any]]:
    """The events of ``count`` tasks, made as they are read (a million do not fit)."""
    now = time.time()
    for index in range(count):
        yield from task_events(index, now)


def seeded_row(index: int, when: float) -> Row:
    """Task ``index`` as the history stores one of :func:`task_events`' tasks."""
    name, worker, task_id = f"bench.t{index % 20}", f"w{index % 2 + 1}@bench", str(uuid.uuid4())
    failed = index % 10 == 0
    state, end = ("FAILURE", "failed") if failed else ("SUCCESS", "succeeded")
    record = {"uuid": task_id, "name": name, "state": state, "received": when,
              "started": when, end: when, "args": "[1, 2]", "kwargs": "{}", "worker": worker,
              "result": "3", "timestamp": when, "runtime": 0.01, "clock": index,
              "timeline": [["RECEIVED", when], ["STARTED", when], [state, when]]}  # fmt: skip
    haystack = "\n".join((task_id, name, "[1, 2]", "{}", "3"))
    return Row(task_id, name, state, worker, when, when, when, haystack, record)


async def seed(store: HistoryStore, count: int) -> float:
    """Write ``count`` tasks (ending an hour ago) in batches; seconds it took."""
    start = time.perf_counter()
    oldest = time.time() - 3600 - count * 0.001
    for first in range(0, count, SEED_BATCH):
        last = min(first + SEED_BATCH, count)
        await store.write([seeded_row(i, oldest + i * 0.001) for i in range(first, last)])
    return time.perf_counter() - start


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


@contextlib.asynccontextmanager
async def history_store(kind: str, postgres: str) -> AsyncIterator[HistoryStore]:
    """A fresh store of ``kind``, removed afterwards."""
    if kind == "sqlite":
        from celeriac.web.history_sqlite import SQLiteHistory  # noqa: PLC0415

        with tempfile.TemporaryDirectory(prefix="celeriac-bench-") as where:
            yield SQLiteHistory(Path(where) / "history.sqlite")
        return
    import psycopg  # noqa: PLC0415

    from celeriac.web.history_sql import SQLHistory  # noqa: PLC0415

    schema = f"celeriac_bench_{uuid.uuid4().hex[:12]}"
    try:
        yield SQLHistory(f"db+{postgres}?schema={schema}")
    finally:
        async with await psycopg.AsyncConnection.connect(postgres, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def analyze(postgres: str, store: Any) -> None:
    """ANALYZE the history's table (its schema is the store's)."""
    import psycopg  # noqa: PLC0415

    schema = store.settings.schema
    async with await psycopg.AsyncConnection.connect(postgres, autocommit=True) as conn:
        await conn.execute(f'ANALYZE "{schema}".celeriac_dashboard_tasks')


async def feed_all(
    feed: Any, history: History | None, count: int, rate: float | None = None
) -> dict[str, float]:
    """Feed the events of ``count`` tasks, yielding to the loop every 1,000 (so the
    history's flushes run as they would), at most ``rate`` events a second when given (a
    cluster's steady stream, instead of as fast as the loop takes them: what is pending
    between two flushes, so the memory, depends on it). Events per second until all is written; per
    second of the process's CPU time (every thread: the history's writer too); and per
    second of the event loop's own thread, what the loop sustains while the writer has a
    core of its own. A busy machine's other jobs slow the CPU times down less than the
    clock."""
    cpu, loop_cpu = time.process_time(), time.thread_time()
    start = time.perf_counter()
    taken = 0
    for event in events(count):
        feed.take(event)
        taken += 1
        if taken % 1000 == 0:
            due = 0.0 if rate is None else start + taken / rate - time.perf_counter()
            await asyncio.sleep(max(due, 0.0))
            await feed.keep_pace()  # as the feed's receiver does between two batches
    if history is not None:
        while history.pending():
            await asyncio.sleep(0.05)
    return {
        "events_per_s": taken / (time.perf_counter() - start),
        "events_per_cpu_s": taken / (time.process_time() - cpu),
        "events_per_loop_cpu_s": taken / (time.thread_time() - loop_cpu),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    max_tasks = args.max_tasks or args.tasks
    when = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    out: dict[str, Any] = {"when": when, "cpus": os.cpu_count(), "tasks_fed": args.tasks,
                           "max_tasks": max_tasks, "history_tasks": args.history_tasks,
                           "rate": args.rate,
                           "store": args.store if args.history_tasks else None}  # fmt: skip
    async with contextlib.AsyncExitStack() as stack:
        history = None
        if args.history_tasks:
            store = await stack.enter_async_context(history_store(args.store, args.postgres))
            out["load_before_seed"] = load()
            seconds = await seed(store, args.history_tasks)
            if args.store == "postgres":  # as autovacuum soon would: the planner needs stats
                await analyze(args.postgres, store)
            out["seed"] = {"seconds": round(seconds, 1), "rows_per_s": round(
                args.history_tasks / seconds), "load": load()}  # fmt: skip
            print(f"history: {args.history_tasks:,} tasks written in {seconds:.1f} s "
                  f"(load {load():.1f})")  # fmt: skip
            history = History(store)
            began = time.perf_counter()  # what a dashboard's start reads for its totals
            groups = await store.counts()
            history.totals.merge(groups, +1)
            took = time.perf_counter() - began
            out["totals_read"] = {"seconds": round(took, 2), "groups": len(groups), "load": load()}
            print(f"history totals: {len(groups)} (name, state) groups read in {took:.2f} s")
        web = create_app(Celery("bench", broker="memory://"), max_tasks=max_tasks,
                         history=history)  # fmt: skip
        feed = web.state.dashboard.feed
        keeper = asyncio.create_task(history.run(feed.state)) if history else None
        rates = await feed_all(feed, history, args.tasks, args.rate)
        out["ingest"] = {**{key: round(value) for key, value in rates.items()},
                         "events": args.tasks * 3, "load": load()}  # fmt: skip
        print(f"{args.tasks:,} tasks, {args.tasks * 3:,} events: {rates['events_per_s']:,.0f}"
              f" events/s taken{' and written' if history else ''},"
              f" {rates['events_per_cpu_s']:,.0f} per CPU-second of the process,"
              f" {rates['events_per_loop_cpu_s']:,.0f} per CPU-second of the event loop"
              f" (load {load():.1f})")  # fmt: skip
        transport = httpx.ASGITransport(app=web, client=("127.0.0.1", 1))
        out["api_ms"], out["pages_ms"] = {}, {}
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            for query in QUERIES:
                ms = await timed(client, "/api/tasks", query)
                out["api_ms"][json.dumps(query)] = {"ms": round(ms, 1), "load": load()}
                print(f"GET /api/tasks {query}: {ms:.1f} ms (load {load():.1f})")
            for page in PAGES:
                ms = await timed(client, page)
                out["pages_ms"][page] = {"ms": round(ms, 1), "load": load()}
                print(f"GET {page}: {ms:.1f} ms (load {load():.1f})")
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["peak_rss_mb"] = round(peak)
    print(f"peak RSS: {peak:.0f} MB")
    return out


def main() -> None:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10000, help="tasks fed")
    parser.add_argument("--max-tasks", type=int, help="tasks in memory (default: --tasks)")
    parser.add_argument("--rate", type=float, help="events a second fed (default: all at once)")
    parser.add_argument("--history-tasks", type=int, default=0, help="tasks in the history")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--json", type=Path, help="write the numbers to this file")
    args = parser.parse_args()
    out = asyncio.run(run(args))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
