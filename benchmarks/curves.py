"""``python -m benchmarks.curves``: how the default celeriac worker's cost grows with scale.

Every point drains no-op tasks, results on, on Redis (db 14 only: ``FLUSHDB`` before and
after, never ``FLUSHALL``), with the worker a user gets: ``celeriac -A celeriac_sync_app
worker`` with no flag but the one the curve varies. The curves:

* ``queues``: drain rate vs the number of queues one worker consumes (``-Q``: 1, 10, 100);
* ``backlog``: drain rate and worker RSS vs tasks pending when the worker starts (10k, 1M);
* ``processes``: drain rate vs ``-c`` (1, 2, 4, 8 on however many cores there are);
* ``payload``: drain rate vs the size of the task's argument (100 B, 10 kB, 1 MB);
* ``etas``: RSS a running worker adds while countdown tasks are pending (up to 1M).

Each drain point times completions after the first one (worker start-up never counts), up to
200k of them or 30 s, whichever comes first (the rest of a 1M backlog is flushed), and
states the cost per task in CPU microseconds of the worker's process tree (/proc/<pid>/stat),
in Redis commands (``INFO commandstats`` deltas) and in round trips (the server's read
events, ``INFO stats`` ``total_reads_processed``: a pipelined batch or a ``MULTI`` block is
several commands in one read), both less what the server took from other clients in the
second before the worker started, scaled to the window. On a shared server that correction
is rough; ``--own-redis`` runs a private server, which also gives its CPU per task. Each
curve is a Markdown table (printed, and kept in ``benchmarks/results/curves.json``) and a
PNG in ``docs/img/``.

Examples::

    python -m benchmarks.curves --quick               # small sizes, about 3 minutes
    python -m benchmarks.curves --reps 1              # the documented sizes (1M cases once)
    python -m benchmarks.curves --curves queues,payload -n 5000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis

from benchmarks.brokers import REDIS_HOST, REDIS_PORT, redis_up
from benchmarks.counter import Counter
from benchmarks.procs import MemoryPeak, tree_cpu_seconds, tree_memory
from benchmarks.records import Records
from benchmarks.systems import System, Variant
from benchmarks.workloads import ClientError, Paths, Runner, Settings

__all__ = ["CURVES", "Sizes", "main", "render_curve"]

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
CURVES = ("queues", "processes", "payload", "backlog", "etas")  # the 1M points last
REDIS_DB = 14
_DEFAULTS = ("{bin}/celeriac", "-A", "celeriac_sync_app", "worker", "-l", "WARNING")
_REDIS_PID = int(os.environ["BENCH_REDIS_PID"]) if os.environ.get("BENCH_REDIS_PID") else None
"""The private server's pid (``--own-redis``): its CPU per task is measured too."""
READS = "READS"
_FN = "enqueue_curve"  # benchmarks/apps/celeriac_app.py: bulk, round robin, payloads


@dataclass
class Sizes:
    """The points of every curve."""

    n: int = 20_000
    """Tasks per drain point unless a curve says otherwise."""
    queues: tuple[int, ...] = (1, 10, 100)
    backlog: tuple[int, ...] = (10_000, 1_000_000)
    window: int = 200_000
    """Completions timed per drain point at most (the rest of a 1M backlog is dropped)."""
    window_seconds: float = 30.0
    """...and seconds timed at most (a busy shared machine can drain 500 tasks/s)."""
    processes: tuple[int, ...] = (1, 2, 4, 8)
    payload: tuple[tuple[int, int], ...] = ((100, 20_000), (10_000, 5_000), (1_000_000, 100))
    """(argument bytes, tasks): fewer large tasks, so Redis holds ~100 MB at most."""
    etas: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    once_above: int = 100_000
    """Points with more tasks than this run in the first repetition only."""

    @classmethod
    def quick(cls, n: int = 2_000) -> Sizes:
        """Everything scaled from ``n`` tasks (the smoke test uses a tiny ``n``)."""
        return cls(
            n=n,
            backlog=(n, 25 * n),
            window=10 * n,
            window_seconds=15.0,
            payload=((100, n), (10_000, max(n // 2, 2)), (1_000_000, max(n // 100, 5))),
            etas=(n, 10 * n),
        )


@dataclass
class Point:
    """One drain measurement to take: the worker's extra flags, what to enqueue."""

    x: int
    n: int
    flags: tuple[str, ...] = ()
    kind: str = "noop"
    env: dict[str, str] = field(default_factory=dict)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class CommandStats:
    """Commands the Redis server has executed, from ``INFO commandstats``."""

    def __init__(self, db: int) -> None:
        self.client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)

    def calls(self) -> dict[str, int]:
        """Calls so far per command, and the server's read events as ``READS``: one per
        request (or pipelined batch) read from a client socket, i.e. per round trip."""
        info = self.client.info("commandstats")
        found = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}
        found[READS] = int(self.client.info("stats")["total_reads_processed"])
        return found

    def rate(self, seconds: float) -> tuple[float, float]:
        """Commands and read events per second the server takes now (other clients')."""
        before = self.calls()
        time.sleep(seconds)
        after = self.calls()
        reads = after.pop(READS) - before.pop(READS) - 2  # our own two INFO calls
        commands = sum(after.values()) - sum(before.values()) - 2
        return max(0.0, commands / seconds), max(0.0, reads / seconds)

    def close(self) -> None:
        """Drop the connection."""
        self.client.close()


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}


class Curves:
    """Takes the curves' points with the benchmark harness's runner and worker processes."""

    def __init__(self, runner: Runner, sizes: Sizes, reps: int) -> None:
        self.runner = runner
        self.sizes = sizes
        self.reps = reps
        self.records = Records()

    def system(self, flags: Sequence[str]) -> System:
        """The celeriac system with one variant: the defaults worker plus ``flags``."""
        variant = Variant(" ".join(("defaults", *flags)), (*_DEFAULTS, *flags))
        return System("celeriac", "celeriac_app", "main", 0, {"defaults": variant}, ())

    def drain(self, point: Point) -> dict[str, Any]:
        """Enqueue ``point.n`` tasks, start a worker, time the first ``window`` completions."""
        runner, system = self.runner, self.system(point.flags)
        setup = runner.setup_for(system, "redis")
        counter = Counter("curves")
        env = {**runner.env_for(setup, True, counter), **point.env}
        stats = CommandStats(setup.redis_db)
        try:
            load = os.getloadavg()[0]
            enq = runner.client(system, env, "enqueue", _FN, point.kind, str(point.n))
            background, background_reads = stats.rate(1.0)
            worker = runner.worker(system, "defaults", env)
            worker.start()
            try:
                result = self._window(worker.pid, worker.alive, counter, stats, point.n)
            finally:
                worker.stop()
            commands = result.pop("commands")
            reads = commands.pop(READS, 0)
            result["commands_per_task"] = _per_task(
                sum(commands.values()) - background * result["seconds"], result
            )
            result["round_trips_per_task"] = _per_task(
                reads - background_reads * result["seconds"], result
            )
            return {
                **result,
                "x": point.x,
                "n": point.n,
                "enqueue_rate": point.n / enq["seconds"],
                "background_commands_per_s": background,
                "background_reads_per_s": background_reads,
                "load_1m": load,
                "worker": system.variants["defaults"].label,
            }
        finally:
            stats.close()
            counter.remove()
            setup.cleanup()

    def _window(
        self,
        pid: int,
        alive: Callable[[], bool],
        counter: Counter,
        stats: CommandStats,
        n: int,
    ) -> dict[str, Any]:
        """Measure from the first completion to the ``window``-th (or the ``n``-th), or
        until ``window_seconds`` have passed."""
        target = min(n, self.sizes.window)
        stall = max(self.runner.settings.stall, 20.0)
        with MemoryPeak(pid) as peak:
            first = counter.wait(1, stall=stall, alive=alive)
            if first.first is None:
                raise RuntimeError("the worker completed no task")
            deadline = time.monotonic() + self.sizes.window_seconds

            def going() -> bool:
                return alive() and time.monotonic() < deadline

            cpu0, redis0, calls0 = tree_cpu_seconds(pid), _redis_cpu(), stats.calls()
            start, done0 = time.perf_counter(), counter.size()
            drained = counter.wait(target, stall=stall, alive=going)
            cpu1, redis1, calls1 = tree_cpu_seconds(pid), _redis_cpu(), stats.calls()
            peak.sample()
        end = drained.last or start
        tasks = drained.count - done0
        return {
            "completed": drained.count,
            "timed": target,
            "complete": drained.complete or time.monotonic() >= deadline,
            "capped": not drained.complete and time.monotonic() >= deadline,
            "tasks": tasks,
            "seconds": end - start,
            "drain_rate": tasks / (end - start) if end > start else None,
            "cpu_us_per_task": (cpu1 - cpu0) * 1e6 / tasks if tasks > 0 else None,
            "redis_cpu_us_per_task": (
                (redis1 - redis0) * 1e6 / tasks if tasks > 0 and _REDIS_PID is not None else None
            ),
            "commands": _delta(calls1, calls0),
            "top_commands": _top(_delta(calls1, calls0), tasks),
            "rss_mb": peak.peak.rss_kb / 1024,
            "pss_mb": peak.peak.pss_kb / 1024,
            "processes": peak.peak.processes,
        }

    def repeat(self, curve: str, points: Sequence[Point]) -> None:
        """Measure ``points`` ``reps`` times (big ones once), keeping every record."""
        for rep in range(self.reps):
            for point in points:
                if rep > 0 and point.n > self.sizes.once_above:
                    continue
                self._take(curve, rep, f"{curve} x={point.x}", partial(self.drain, point))

    def _take(self, curve: str, rep: int, what: str, call: Callable[[], dict[str, Any]]) -> None:
        started = time.monotonic()
        try:
            result = call()
        except (ClientError, OSError, RuntimeError, redis.RedisError) as exc:
            self.records.note(f"{what}: failed ({str(exc).splitlines()[0]})")
            _log(f"  [{curve} {rep + 1}/{self.reps}] {what}: FAILED\n{exc}")
            return
        if result.get("complete") is False:
            self.records.note(f"{what}: incomplete ({result.get('completed')} completions)")
        self.records.add(
            broker="redis", workload=curve, system="celeriac", case=str(result["x"]),
            label=result.get("worker", ""), rep=rep, **result,
        )  # fmt: skip
        shown = {k: v for k, v in result.items() if k not in ("top_commands", "worker")}
        _log(f"  [{curve} {rep + 1}/{self.reps}] {what}: {_brief(shown)} "
             f"({time.monotonic() - started:.1f} s)")  # fmt: skip

    def eta_point(self, count: int) -> dict[str, Any]:
        """RSS a running worker adds while ``count`` countdown (1 h) tasks arrive and wait.

        The worker takes each such message from the queue and parks it in Redis (the
        ``celeriac:delayed:<queue>`` sorted set) until it is due; the point waits until all
        are parked or ``window_seconds`` after the enqueue, and says how many were.
        """
        runner, system = self.runner, self.system(())
        setup = runner.setup_for(system, "redis")
        counter = Counter("curves")
        env = runner.env_for(setup, True, counter)
        worker = runner.worker(system, "defaults", env)
        worker.start()
        try:
            runner.client(system, env, "latency", "round_trip", "5", "0")  # up and warm
            time.sleep(2.0)
            load, before = os.getloadavg()[0], tree_memory(worker.pid)
            with MemoryPeak(worker.pid, interval=0.5) as peak:
                enq = runner.client(
                    system, env, "countdown", str(count), str(runner.settings.countdown_seconds)
                )
                waited, parked, listed = _wait_parked(setup.redis_db, count, self.sizes)
                peak.sample()
            after = tree_memory(worker.pid)
            return {
                "x": count, "n": count, "load_1m": load, "worker": "defaults",
                "enqueue_seconds": enq["seconds"], "waited_seconds": waited,
                "parked": parked, "still_queued": listed, "ran_early": counter.size(),
                "before_rss_mb": before.rss_kb / 1024,
                "rss_added_mb": (after.rss_kb - before.rss_kb) / 1024,
                "peak_rss_added_mb": (peak.peak.rss_kb - before.rss_kb) / 1024,
                "pss_added_mb": (after.pss_kb - before.pss_kb) / 1024,
            }  # fmt: skip
        finally:
            worker.stop()
            counter.remove()
            setup.cleanup()

    def etas(self) -> None:
        """RSS added by pending countdowns, one point per size."""
        for count in self.sizes.etas:
            self._take("etas", 0, f"etas x={count}", partial(self.eta_point, count))

    def run(self, curves: Sequence[str], done: Callable[[], object] = lambda: None) -> None:
        """Take every point of ``curves``; call ``done`` after each curve."""
        s = self.sizes
        plans: dict[str, list[Point]] = {
            "queues": [_queues_point(q, s.n) for q in s.queues],
            "backlog": [Point(b, b) for b in s.backlog],
            "processes": [Point(c, s.n, ("-c", str(c))) for c in s.processes],
            "payload": [
                Point(size, n, kind="blob", env={"BENCH_PAYLOAD": str(size)})
                for size, n in s.payload
            ],
        }
        for curve in curves:
            _log(f"curve {curve}")
            if curve == "etas":
                self.etas()
            else:
                self.repeat(curve, plans[curve])
            done()


def _wait_parked(db: int, count: int, sizes: Sizes) -> tuple[float, int, int]:
    """Wait until ``count`` countdowns are parked, or ``window_seconds``; returns the seconds
    waited, how many are parked and how many messages still wait in the queue lists."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    started = time.monotonic()
    try:
        while True:
            parked = sum(int(client.zcard(k)) for k in client.scan_iter("celeriac:delayed:*"))
            if parked >= count or time.monotonic() - started > sizes.window_seconds:
                lists = list(client.scan_iter(count=1000, _type="list"))
                listed = sum(int(client.llen(k)) for k in lists if not k.startswith(b"celeriac:"))
                return time.monotonic() - started, parked, listed
            time.sleep(0.5)
    finally:
        client.close()


def _queues_point(count: int, n: int) -> Point:
    names = [f"curve-q{i}" for i in range(count)]
    return Point(count, n, ("-Q", ",".join(names)), env={"BENCH_QUEUES": ",".join(names)})


def _redis_cpu() -> float:
    """CPU seconds of the private Redis server so far (0 when it is the shared one)."""
    return tree_cpu_seconds(_REDIS_PID) if _REDIS_PID is not None else 0.0


def _per_task(value: float, result: dict[str, Any]) -> float | None:
    tasks = int(result["tasks"])
    return max(value, 0.0) / tasks if tasks > 0 else None


def _top(commands: dict[str, int], tasks: int, count: int = 6) -> dict[str, float]:
    """The commands with the most calls, per task (they include other clients' calls)."""
    if tasks <= 0:
        return {}
    ranked = sorted(((k, v) for k, v in commands.items() if k != READS), key=lambda kv: -kv[1])
    ranked = ranked[:count]
    return {name: round(calls / tasks, 3) for name, calls in ranked}


def _brief(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


# tables and plots -----------------------------------------------------------------------
_TITLES = {
    "queues": ("Drain rate vs queues one worker consumes (-Q)", "queues"),
    "backlog": ("Drain rate and worker RSS vs backlog (tasks pending at start)", "backlog"),
    "processes": ("Drain rate vs worker processes (-c) on this machine", "-c"),
    "payload": ("Drain rate vs payload size (the task's one string argument)", "bytes"),
    "etas": ("Worker RSS added by pending countdown (ETA) tasks", "pending ETAs"),
}
_DRAIN_COLUMNS = (
    ("tasks timed", "tasks", 0),
    ("drain/s", "drain_rate", 0),
    ("CPU µs/task", "cpu_us_per_task", 1),
    ("Redis cmds/task", "commands_per_task", 2),
    ("round trips/task", "round_trips_per_task", 2),
    ("Redis CPU µs/task", "redis_cpu_us_per_task", 1),
    ("worker RSS MB", "rss_mb", 1),
    ("processes", "processes", 0),
    ("load 1m", "load_1m", 2),
)
_ETA_COLUMNS = (
    ("parked", "parked", 0),
    ("still queued", "still_queued", 0),
    ("enqueue s", "enqueue_seconds", 0),
    ("RSS before MB", "before_rss_mb", 1),
    ("RSS added MB", "rss_added_mb", 1),
    ("peak RSS added MB", "peak_rss_added_mb", 1),
    ("PSS added MB", "pss_added_mb", 1),
    ("ran early", "ran_early", 0),
    ("load 1m", "load_1m", 2),
)


def _num(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _x(value: int, curve: str) -> str:
    if curve == "payload":
        for unit, size in (("MB", 1_000_000), ("kB", 1_000)):
            if value >= size:
                return f"{value / size:g} {unit}"
        return f"{value} B"
    return f"{value:,}"


def render_curve(curve: str, rows: Sequence[dict[str, Any]]) -> str:
    """One curve's Markdown table (medians per point) and how its costs grow."""
    title, x_label = _TITLES[curve]
    columns = _ETA_COLUMNS if curve == "etas" else _DRAIN_COLUMNS
    header = [x_label, *(c[0] for c in columns), "reps"]
    body = [
        [_x(int(r["x"]), curve), *(_num(r.get(key), d) for _, key, d in columns), str(r["reps"])]
        for r in rows
    ]
    lines = [f"### {title}", "", *_table(header, body), ""]
    growth = _growth(curve, rows)
    if growth:
        lines += [growth, ""]
    return "\n".join(lines)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]


def _growth(curve: str, rows: Sequence[dict[str, Any]]) -> str:
    """``from x=a to x=b: drain x.., CPU/task x.., commands/task x..`` (first to last)."""
    if len(rows) < 2:
        return ""
    first, last = rows[0], rows[-1]
    keys = (
        (("RSS added", "rss_added_mb"),)
        if curve == "etas"
        else (("drain/s", "drain_rate"), ("CPU/task", "cpu_us_per_task"),
              ("cmds/task", "commands_per_task"), ("round trips/task", "round_trips_per_task"),
              ("Redis CPU/task", "redis_cpu_us_per_task"),
              ("RSS", "rss_mb"))
    )  # fmt: skip
    parts = []
    for label, key in keys:
        a, b = first.get(key), last.get(key)
        if curve == "etas" and a is not None and b is not None:
            parts.append(f"{label} {a:+.1f} → {b:+.1f} MB")
        elif a and b is not None:
            parts.append(f"{label} ×{b / a:.2f}")
    span = f"{_x(int(first['x']), curve)} → {_x(int(last['x']), curve)}"
    return f"Growth, {span}: " + ", ".join(parts) + "."


def plot_curve(curve: str, rows: Sequence[dict[str, Any]], path: Path) -> None:
    """A PNG of the curve: drain rate, CPU and commands per task (or RSS) against x."""
    import matplotlib  # noqa: PLC0415 (only the plotting step needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    title, x_label = _TITLES[curve]
    panels: list[tuple[str, tuple[tuple[str, str], ...]]] = (
        [("RSS added MB", (("rss_added_mb", "at the end"), ("peak_rss_added_mb", "peak"))),
         ("ETAs", (("parked", "parked in Redis"), ("still_queued", "still queued")))]
        if curve == "etas"
        else [("drain/s", (("drain_rate", "tasks/s"),)),
              ("CPU µs/task", (("cpu_us_per_task", "worker"), ("redis_cpu_us_per_task", "Redis"))),
              ("Redis per task", (("commands_per_task", "commands"),
                                  ("round_trips_per_task", "round trips"))),
              ("worker RSS MB", (("rss_mb", "RSS"),))]
    )  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels) + 0.6, 3.0))
    axes_list = list(axes) if len(panels) > 1 else [axes]
    xs = [int(r["x"]) for r in rows]
    for ax, (title_of_panel, lines) in zip(axes_list, panels, strict=True):
        drawn, lowest, highest = 0, 0.0, 0.0
        for key, label in lines:
            shown = [
                (x, float(r[key])) for x, r in zip(xs, rows, strict=True) if r.get(key) is not None
            ]
            if shown:
                lowest = min(lowest, *(p[1] for p in shown))
                highest = max(highest, *(p[1] for p in shown))
                ax.plot([p[0] for p in shown], [p[1] for p in shown], marker="o", label=label)
                drawn += 1
        if drawn > 1:
            ax.legend(fontsize=7)
        if curve != "processes" and len(xs) > 1 and max(xs) / max(min(xs), 1) >= 20:
            ax.set_xscale("log")
        ax.set_xticks(xs, [_x(x, curve) for x in xs], fontsize=7)
        ax.minorticks_off()
        ax.set_ylim(lowest, highest * 1.1 or 1.0)  # a flat line stays off the frame
        ax.set_xlabel(x_label)
        ax.set_title(title_of_panel, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# command line ---------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.curves",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="sizes scaled from -n (2,000)")
    parser.add_argument("--curves", help=f"comma-separated ({','.join(CURVES)})")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (1M points: once)")
    parser.add_argument("-n", type=int, help="tasks per drain point (20,000; --quick 2,000)")
    parser.add_argument("--out", type=Path, default=ROOT / "results", help="curves.json here")
    parser.add_argument("--img", type=Path, default=REPO / "docs" / "img", help="PNGs here")
    parser.add_argument(
        "--own-redis",
        action="store_true",
        help="run against a throwaway redis-server of its own (commandstats then count only "
        "this run's commands, and the server's CPU per task is measured too)",
    )
    return parser.parse_args(argv)


def _selected(args: argparse.Namespace) -> list[str]:
    if not args.curves:
        return list(CURVES)
    wanted = [c.strip() for c in args.curves.split(",") if c.strip()]
    unknown = set(wanted) - set(CURVES)
    if unknown:
        raise SystemExit(f"unknown curve(s): {', '.join(sorted(unknown))}")
    return wanted


def _sizes(args: argparse.Namespace) -> Sizes:
    if args.quick:
        return Sizes.quick(args.n or 2_000)
    sizes = Sizes()
    if args.n:
        sizes.n = args.n
        sizes.payload = ((100, args.n), *sizes.payload[1:])
    return sizes


def _redis_answers(seconds: float = 5.0) -> bool:
    """Whether the server is up (a just-started private one gets a few seconds)."""
    deadline = time.monotonic() + seconds
    while not redis_up():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def write_outputs(
    out: Path, img: Path, curves: Sequence[str], records: Records, meta: dict[str, Any]
) -> str:
    """curves.json, one PNG per curve; returns the Markdown of every table."""
    summary = records.summary()
    tables, payload_curves = [], {}
    for curve in curves:
        rows = sorted(summary.of("redis", curve), key=lambda r: int(r["x"]))
        if not rows:
            continue
        png = img / f"curve-{curve}.png"
        plot_curve(curve, rows, png)
        table = render_curve(curve, rows)
        tables.append(table)
        payload_curves[curve] = {"rows": rows, "table": table, "png": str(png)}
    report = "\n".join(tables)
    if records.notes:
        report += "\n### Notes\n\n" + "".join(f"- {note}\n" for note in records.notes)
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "meta": meta,
        "curves": payload_curves,
        "notes": records.notes,
        "report": report,
        "records": records.items,
    }
    (out / "curves.json").write_text(json.dumps(document, indent=1) + "\n")
    return report


def _with_own_redis(argv: list[str]) -> int:
    """Run this command again against a private redis-server (no persistence), then stop it."""
    server = shutil.which("redis-server")
    if server is None:
        print("redis-server is not installed (needed by --own-redis)", file=sys.stderr)
        return 2
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    workdir = tempfile.mkdtemp(prefix="celeriac-curves-redis-")
    argv_server = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", workdir]  # fmt: skip
    proc = subprocess.Popen(argv_server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        env = {**os.environ, "BENCH_REDIS_PORT": str(port), "BENCH_REDIS_PID": str(proc.pid)}
        rest = [a for a in argv if a != "--own-redis"]
        return subprocess.call([sys.executable, "-m", "benchmarks.curves", *rest], env=env)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _meta(
    argv: list[str],
    args: argparse.Namespace,
    sizes: Sizes,
    load_before: tuple[float, float, float],
    started_at: str,
) -> dict[str, Any]:
    """What a reader needs to judge the numbers: commit, machine load, sizes, server."""
    return {
        "started": started_at,
        "command": " ".join(["python -m benchmarks.curves", *argv]),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "worker_commit": _git("log", "-1", "--format=%h %cs %s", "--", "celeriac/worker"),
        "redis": f"{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
        "private_redis": _REDIS_PID is not None,
        "load_before": load_before,
        "cpus": os.cpu_count(),
        "sizes": asdict(sizes),
        "reps": args.reps,
    }


def main(argv: list[str] | None = None) -> int:
    """Take the curves; print their tables; write curves.json and the PNGs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.own_redis:
        return _with_own_redis(argv)
    curves, sizes = _selected(args), _sizes(args)
    if not _redis_answers():
        print(f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}", file=sys.stderr)
        return 2
    settings = Settings(n=max(sizes.n, max(sizes.backlog)), redis_db_base=REDIS_DB)
    load_before = os.getloadavg()
    started, started_at = time.monotonic(), dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    workdir = Path(tempfile.mkdtemp(prefix="celeriac-curves-"))
    try:
        paths = Paths(apps=ROOT / "apps", bins={"main": Path(sys.executable).parent},
                      workdir=workdir, pythonpath=(REPO,))  # fmt: skip
        taker = Curves(Runner(settings, paths), sizes, args.reps)
        if _REDIS_PID is None:
            taker.records.note(
                "shared Redis server: INFO commandstats count every client's commands, so "
                "Redis cmds/task includes other clients' traffic beyond the background "
                "subtracted; --own-redis counts this run's alone"
            )
        meta = _meta(argv, args, sizes, load_before, started_at)

        def save() -> None:  # after every curve: a run cut short keeps what it measured
            meta.update(seconds=round(time.monotonic() - started, 1), load_after=os.getloadavg())
            write_outputs(args.out, args.img, curves, taker.records, meta)

        taker.run(curves, save)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta.update(seconds=round(time.monotonic() - started, 1), load_after=os.getloadavg())
    report = write_outputs(args.out, args.img, curves, taker.records, meta)
    print(report)
    print(f"load average before {load_before}, after {meta['load_after']}; commit "
          f"{meta['commit']}\ncurves: {args.out / 'curves.json'}, PNGs in {args.img}")  # fmt: skip
    return 0 if taker.records.items else 1


if __name__ == "__main__":
    raise SystemExit(main())
