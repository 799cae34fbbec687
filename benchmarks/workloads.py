"""The workloads: drain (throughput, I/O-bound, CPU-bound), enqueue, latency, countdown memory.

Each measurement starts from an empty broker database. Drains enqueue everything first
with no worker running (that gives the producer's enqueue rate), then start the worker and
time completions from the first to the last, so worker start-up never counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from benchmarks.brokers import REDIS_HOST, REDIS_PORT, BrokerSetup
from benchmarks.counter import Counter, Drain
from benchmarks.procs import MemoryPeak, MemorySample, WorkerProcess, tree_cpu_seconds, tree_memory
from benchmarks.systems import Case, System

__all__ = ["Paths", "Runner", "Settings"]

SLEEP_SECONDS = 0.010  # what the I/O-bound task sleeps (benchmarks/apps/bodies.py)
IO_CONCURRENCY = 20  # the I/O-bound workers' concurrency (see the adapters' io variants)


@dataclass
class Settings:
    """Sizes and repetitions of a run."""

    n: int = 20_000
    reps: int = 3
    latency_n: int = 500
    latency_warmup: int = 20
    io_n: int = 2_000
    cpu_n: int = 2_000
    countdown_n: int = 100_000
    countdown_seconds: float = 3600.0
    redis_db_base: int = 9
    max_cases: int | None = None
    """Only the first this many drain cases of each system (None: all)."""
    stall: float = 30.0
    """Give up a drain when no task completed for this many seconds."""


@dataclass
class Paths:
    """Where things are: the app modules, each venv's bin directory, a scratch directory."""

    apps: Path
    bins: dict[str, Path]
    workdir: Path
    pythonpath: tuple[Path, ...] = ()
    """Put before everything else on sys.path (e.g. another celeriac checkout to compare)."""


class ClientError(RuntimeError):
    """The producer subprocess failed."""


class Runner:
    """Runs single measurements; the caller repeats them and keeps the records."""

    def __init__(self, settings: Settings, paths: Paths) -> None:
        self.settings = settings
        self.paths = paths
        self._seq = 0

    # plumbing ---------------------------------------------------------------------------
    def setup_for(self, system: System, kind: str) -> BrokerSetup:
        """A fresh, empty broker setup of ``kind`` for ``system``."""
        db = self.settings.redis_db_base + system.db_offset
        setup = BrokerSetup.create(kind, db, self.paths.workdir)
        setup.reset()
        return setup

    def env_for(self, setup: BrokerSetup, results: bool, counter: Counter) -> dict[str, str]:
        """The environment of a worker or producer of this run."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(setup.env())
        env.update(
            PYTHONPATH=os.pathsep.join(map(str, (*self.paths.pythonpath, self.paths.apps))),
            BENCH_RESULTS="1" if results else "0",
            BENCH_COUNTER=str(counter.path),
            PYTHONUNBUFFERED="1",
        )
        return env

    def client(self, system: System, env: dict[str, str], *args: str) -> dict[str, Any]:
        """Run one producer operation (benchmarks/apps/client.py) and return its result."""
        python = self.paths.bins[system.venv] / "python"
        argv = [str(python), str(self.paths.apps / "client.py"), system.app_module, *args]
        done = subprocess.run(
            argv,
            env=env,
            cwd=self.paths.workdir,
            capture_output=True,
            text=True,
            timeout=self.settings.n / 50 + 600,
        )
        for line in reversed(done.stdout.splitlines()):
            if line.startswith("BENCH-RESULT "):
                result: dict[str, Any] = json.loads(line[len("BENCH-RESULT ") :])
                return result
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-25:])
        raise ClientError(f"{system.name} client {' '.join(args)} failed:\n{tail}")

    def worker(self, system: System, variant: str, env: dict[str, str]) -> WorkerProcess:
        """A (not yet started) worker of ``system`` run as ``variant``."""
        self._seq += 1
        log = self.paths.workdir / f"{system.name}-{variant}-{self._seq}.log"
        argv = system.variants[variant].command(self.paths.bins[system.venv])
        return WorkerProcess(argv, env=env, cwd=self.paths.workdir, log_path=log)

    # measurements -----------------------------------------------------------------------
    def drain(self, system: System, kind: str, case: Case, n: int) -> dict[str, Any]:
        """Enqueue ``n`` tasks of ``case``, then drain them with a fresh worker."""
        setup = self.setup_for(system, kind)
        counter = Counter(system.name)
        env = self.env_for(setup, case.results, counter)
        try:
            enq = self.client(system, env, "enqueue", case.enqueue_fn, case.kind, str(n))
            worker = self.worker(system, case.variant, env)
            worker.start()
            try:
                with MemoryPeak(worker.pid) as peak:
                    drained = counter.wait(n, stall=self._stall(n), alive=worker.alive)
                    peak.sample()  # a short drain may end between two samples
                cpu = tree_cpu_seconds(worker.pid)  # start-up included, the same for all
            finally:
                worker.stop()
            if not drained.complete:
                print(f"    incomplete: {drained.count}/{n}\n{worker.log_tail()}", file=sys.stderr)
            return {**_drain_record(enq["seconds"], n, drained, peak.peak), "worker_cpu_s": cpu}
        finally:
            counter.remove()
            setup.cleanup()

    def _stall(self, n: int) -> float:
        # A worker may take a while to boot before the first completion.
        return max(self.settings.stall, 20.0)

    def enqueue_only(self, system: System, fn: str, n: int) -> dict[str, Any]:
        """Time ``n`` no-op enqueues through producer path ``fn`` (nothing drains them)."""
        setup = self.setup_for(system, "redis")
        counter = Counter(system.name)
        try:
            result = self.client(
                system, self.env_for(setup, True, counter), "enqueue", fn, "noop", str(n)
            )
            record = {"enqueue_rate": n / result["seconds"], "seconds": result["seconds"]}
            if result.get("cpu_seconds"):  # (the producer's CPU: steadier on a busy machine)
                record["enqueue_cpu_rate"] = n / result["cpu_seconds"]
            return record
        finally:
            counter.remove()
            setup.cleanup()

    def latency(self, system: System, kind: str, variant: str, fn: str) -> dict[str, Any]:
        """Sequential submit-and-wait round trips against an idle worker."""
        setup = self.setup_for(system, kind)
        counter = Counter(system.name)
        env = self.env_for(setup, True, counter)
        worker = self.worker(system, variant, env)
        worker.start()
        try:
            s = self.settings
            result = self.client(
                system, env, "latency", fn, str(s.latency_n), str(s.latency_warmup)
            )
            return {"samples_ms": result["samples_ms"]}
        finally:
            worker.stop()
            counter.remove()
            setup.cleanup()

    def countdown(self, system: System, variant: str) -> dict[str, Any]:
        """Memory a worker adds while ``countdown_n`` countdown tasks are pending."""
        s = self.settings
        setup = self.setup_for(system, "redis")
        counter = Counter(system.name)
        env = self.env_for(setup, True, counter)
        worker = self.worker(system, variant, env)
        worker.start()
        try:
            self.client(system, env, "latency", "round_trip", "5", "0")  # up and warm
            time.sleep(2.0)
            before = tree_memory(worker.pid)
            enq = self.client(
                system, env, "countdown", str(s.countdown_n), str(s.countdown_seconds)
            )
            settle_seconds, settled = _settle(worker.pid, setup.redis_db)
            after = tree_memory(worker.pid)
            return {
                "enqueue_seconds": enq["seconds"],
                "settle_seconds": settle_seconds,
                "settled": settled,
                "before_rss_mb": before.rss_kb / 1024,
                "rss_added_mb": (after.rss_kb - before.rss_kb) / 1024,
                "pss_added_mb": (after.pss_kb - before.pss_kb) / 1024,
                "ran_early": counter.size(),
            }
        finally:
            worker.stop()
            counter.remove()
            setup.cleanup()


def _drain_record(
    enqueue_seconds: float, n: int, drained: Drain, peak: MemorySample
) -> dict[str, Any]:
    span = drained.span()
    return {
        "n": n,
        "enqueue_rate": n / enqueue_seconds,
        "drain_rate": drained.rate(),
        "span_seconds": span,
        "io_seconds": None if span is None else span + SLEEP_SECONDS,
        "io_ideal_seconds": n * SLEEP_SECONDS / IO_CONCURRENCY,
        "completed": drained.count,
        "complete": drained.complete,
        "pss_mb": peak.pss_kb / 1024,
        "rss_mb": peak.rss_kb / 1024,
        "processes": peak.processes,
    }


def _waiting_in_lists(db: int) -> int:
    """Messages still sitting in the database's lists (ready queues a worker may fetch)."""
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    try:
        total = 0
        for key in client.scan_iter(count=1000):
            if client.execute_command("TYPE", key) == b"list":
                total += int(client.llen(key))
        return total
    finally:
        client.close()


def _settle(pid: int, db: int, limit: float = 240.0) -> tuple[float, bool]:
    """Wait until the worker stopped taking messages and its memory stopped moving.

    Returns the seconds waited and whether it settled (False: still moving at ``limit``).
    """
    started = time.monotonic()
    history: list[tuple[int, int]] = []
    while time.monotonic() - started < limit:
        time.sleep(1.0)
        history.append((tree_memory(pid).rss_kb, _waiting_in_lists(db)))
        if len(history) >= 4:
            rss = [h[0] for h in history[-4:]]
            lists = [h[1] for h in history[-4:]]
            if max(rss) - min(rss) < 1024 and max(lists) == min(lists):
                return time.monotonic() - started, True
    return time.monotonic() - started, False
