"""``python -m benchmarks.profiler``: where celeriac's time goes on the Redis no-op drain.

0. CPU time per task of the worker parent, each pool child and redis-server over a drain
   (from /proc/<pid>/stat: what the machine really spent, whatever else runs on it).
1. Worker: enqueue N no-op tasks, start the worker, and once tasks complete record it with
   py-spy (``--subprocesses``, non-blocking) for a few seconds; print the worker process's
   top functions by self and inclusive time, in percent of samples and microseconds per
   task, and how the pool children spend theirs.
2. Redis commands per task: ``MONITOR`` over two drains of different sizes; the difference
   gives the marginal commands (and estimated round trips) per task, start-up excluded.
3. Producer: py-spy over ``task.delay()`` (all threads: the caller and the portal loop)
   and pyinstrument over ``await task.adelay()``.

Needs ``py-spy`` and ``pyinstrument`` in the venv running this (not part of the project's
dependencies). Writes the raw files to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.counter import Counter
from benchmarks.monitor import CommandLog, Monitor
from benchmarks.procs import descendants
from benchmarks.stacks import Profile, read_folded
from benchmarks.systems import Case, System, Variant, all_systems
from benchmarks.workloads import Paths, Runner, Settings

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent
CELERIAC = next(s for s in all_systems() if s.name == "celeriac")


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit(f"{name} is not installed in {Path(sys.executable).parent}")
    return found


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {pid: _cpu_seconds(pid) for pid in pids}


def _redis_pid() -> int | None:
    info = subprocess.run(
        ["redis-cli", "INFO", "server"], capture_output=True, text=True, timeout=5
    ).stdout
    for line in info.splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    return None


def cpu_per_task(runner: Runner, system: System, case: Case, n: int) -> None:
    """CPU time per task of the worker's processes and of Redis, over a whole drain."""
    setup = runner.setup_for(system, "redis")
    counter = Counter("cpu")
    env = runner.env_for(setup, case.results, counter)
    runner.client(system, env, "enqueue", "enqueue_bulk", case.kind, str(n))
    worker = runner.worker(system, case.variant, env)
    worker.start()
    main_pid = worker.pid
    try:
        first = counter.wait(1, stall=30.0)
        pids = descendants(worker.pid)
        redis_pid = _redis_pid()
        watched = [*pids, *([redis_pid] if redis_pid else [])]
        before, started_count = _cpu_by_pid(watched), counter.size()
        drained = counter.wait(n, stall=30.0, alive=worker.alive)
        after = _cpu_by_pid(watched)
    finally:
        worker.stop()
        counter.remove()
        setup.cleanup()
    tasks = drained.count - started_count
    wall = (drained.last or 0.0) - (first.first or 0.0)
    print(f"\n## CPU per task: {case.key} ({system.variants[case.variant].label})")
    print(f"drain rate {(drained.count - 1) / wall if wall else 0:,.0f}/s over {tasks} tasks")
    for pid in watched:
        role = (
            "worker parent"
            if pid == main_pid
            else "redis-server"
            if pid == redis_pid
            else "pool child"
        )
        used = after[pid] - before[pid]
        print(f"  {role:<14} pid {pid}: {1e6 * used / max(tasks, 1):7.1f} us CPU/task")


def profile_worker(
    runner: Runner, system: System, case: Case, n: int, seconds: float, out: Path
) -> None:
    """Record the worker with py-spy during a drain and print the breakdown."""
    setup = runner.setup_for(system, "redis")
    counter = Counter("profile")
    env = runner.env_for(setup, case.results, counter)
    runner.client(system, env, "enqueue", "enqueue_bulk", case.kind, str(n))
    worker = runner.worker(system, case.variant, env)
    folded = out / f"worker-{case.key.replace('/', '-')}.folded"
    worker.start()
    pid = worker.pid
    try:
        counter.wait(1, stall=30.0)
        time.sleep(0.5)  # past the pool's warm-up
        done_before = counter.size()
        spy = [_tool("py-spy"), "record", "--pid", str(pid), "--duration", str(int(seconds))]
        spy += ["--rate", "250", "--subprocesses", "--idle", "--nonblocking", "--format", "raw"]
        subprocess.run([*spy, "-o", str(folded)], check=True, capture_output=True)
        tasks = counter.size() - done_before
        counter.wait(n, stall=30.0, alive=worker.alive)
    finally:
        worker.stop()
        counter.remove()
        setup.cleanup()
    print(f"\n## Worker {case.key} ({system.variants[case.variant].label}) under py-spy")
    print(f"{tasks} tasks during {seconds:.0f} s of sampling ({tasks / seconds:,.0f}/s)")
    _print_profiles(read_folded(folded), pid, tasks, seconds)


def _print_profiles(profiles: dict[int, Profile], main_pid: int, tasks: int, secs: float) -> None:
    for pid, prof in sorted(profiles.items(), key=lambda item: item[0] != main_pid):
        role = "worker (event loop)" if pid == main_pid else "pool child / other"
        sample_us = secs * 1e6 / max(prof.total, 1)
        per_task = sample_us / max(tasks, 1) if tasks else None
        busy = 100.0 * (prof.total - prof.idle()) / max(prof.total, 1)
        print(f"\n### pid {pid}: {role}; {prof.total} samples, {busy:.0f}% not idle")
        print("self time (innermost frame):")
        print("\n".join(prof.table(prof.self_counts, 25, per_task)))
        print("inclusive time:")
        print("\n".join(prof.table(prof.inclusive, 40, per_task)))
        print("self time by file/package:")
        print("\n".join(prof.table(prof.files, 15, per_task)))


def _drain_log(runner: Runner, system: System, n: int) -> CommandLog:
    setup = runner.setup_for(system, "redis")
    counter = Counter("monitor")
    env = runner.env_for(setup, True, counter)
    runner.client(system, env, "enqueue", "enqueue_bulk", "noop", str(n))
    worker = runner.worker(system, "prefork", env)
    try:
        with Monitor(setup.redis_db) as monitor:
            worker.start()
            counter.wait(n, stall=30.0, alive=worker.alive)
            time.sleep(0.3)
        return monitor.log
    finally:
        worker.stop()
        counter.remove()
        setup.cleanup()


def count_commands(runner: Runner, system: System, small: int, large: int) -> None:
    """Marginal Redis commands and round trips per task, from two drains."""
    logs = {size: _drain_log(runner, system, size) for size in (small, large)}
    extra = large - small
    print(f"\n## Redis commands per task (prefork, results on; MONITOR, {large} - {small} tasks)")
    a, b = logs[small], logs[large]
    trips = (b.round_trips() - a.round_trips()) / extra
    print(f"round trips per task (estimate): {trips:.2f}")
    names = sorted(set(a.client_counts()) | set(b.client_counts()))
    for name in names:
        per = (b.client_counts()[name] - a.client_counts()[name]) / extra
        print(f"  client {name:<10} {per:6.2f}/task ({b.client_counts()[name]} in {large} tasks)")
    for name in sorted(set(a.scripted) | set(b.scripted)):
        per = (b.scripted[name] - a.scripted[name]) / extra
        print(f"  in Lua {name:<10} {per:6.2f}/task")


def profile_producer(runner: Runner, system: System, n: int, out: Path) -> None:
    """py-spy over the sync delay() loop; pyinstrument over the async adelay() loop."""
    setup = runner.setup_for(system, "redis")
    counter = Counter("producer")
    env = runner.env_for(setup, True, counter)
    client = [sys.executable, str(ROOT / "apps" / "client.py"), "celeriac_app", "enqueue"]
    folded = out / "producer-delay.folded"
    try:
        spy = [_tool("py-spy"), "record", "--rate", "500", "--format", "raw", "-o", str(folded)]
        started = time.perf_counter()
        subprocess.run([*spy, "--", *client, "enqueue", "noop", str(n)], env=env, check=True,
                       capture_output=True, cwd=runner.paths.workdir)  # fmt: skip
        print(f"\n## Producer: {n} x delay() under py-spy ({time.perf_counter() - started:.1f} s)")
        for prof in read_folded(folded).values():
            print(f"{prof.total} samples (all threads)\nself time:")
            print("\n".join(prof.table(prof.self_counts, 25, None)))
            print("inclusive:")
            print("\n".join(prof.table(prof.inclusive, 40, None)))
        text = out / "producer-adelay.txt"
        pyinst = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(text)]
        subprocess.run([*pyinst, *client[1:], "aenqueue", "noop", str(n)], env=env, check=True,
                       capture_output=True, cwd=runner.paths.workdir)  # fmt: skip
        print(f"\n## Producer: {n} x await adelay() under pyinstrument -> {text}")
        print("\n".join(text.read_text().splitlines()[:80]))
    finally:
        counter.remove()
        setup.cleanup()


def _with_worker_args(system: System, extra: list[str]) -> System:
    """``system`` with ``extra`` options appended to every worker command line."""
    if not extra:
        return system
    variants = {
        key: Variant(f"{v.label} {' '.join(extra)}", (*v.argv, *extra), v.app)
        for key, v in system.variants.items()
    }
    return dataclasses.replace(system, variants=variants)


def main(argv: list[str] | None = None) -> int:
    """Run the profiles asked for."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiler", description=__doc__)
    parser.add_argument("-n", type=int, default=20_000, help="tasks per profiled drain")
    parser.add_argument("--seconds", type=float, default=4.0, help="py-spy duration")
    parser.add_argument("--cases", default="prefork/noop/results,async/anoop/results")
    parser.add_argument("--skip", default="", help="comma-separated: cpu,worker,commands,producer")
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "celeriac-profile"
    )
    parser.add_argument("--redis-db-base", type=int, default=9)
    parser.add_argument(
        "--src", type=Path, action="append", default=[],
        help="a directory holding another 'celeriac' package to profile instead (A/B tests)",
    )  # fmt: skip
    parser.add_argument("--worker-args", default="", help="extra worker options (e.g. tuning)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    skip = set(args.skip.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="celeriac-profile-"))
    bins = {"main": Path(sys.executable).parent}
    paths = Paths(ROOT / "apps", bins, workdir, pythonpath=tuple(args.src))
    runner = Runner(Settings(redis_db_base=args.redis_db_base), paths)
    system = _with_worker_args(CELERIAC, args.worker_args.split())
    cases = {case.key: case for case in system.throughput}
    try:
        if "cpu" not in skip:
            for key in args.cases.split(","):
                cpu_per_task(runner, system, cases[key], args.n)
        if "worker" not in skip:
            for key in args.cases.split(","):
                profile_worker(runner, system, cases[key], args.n, args.seconds, args.out)
        if "commands" not in skip:
            count_commands(runner, system, 100, 600)
        if "producer" not in skip:
            profile_producer(runner, system, 5_000, args.out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
