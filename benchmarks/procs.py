"""Worker subprocesses: start, stop, and how much memory their process tree uses.

Every worker runs in its own session, so stopping it can reach its pool children by the
process group id of the process we started (and nothing else).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "tree_cpu_seconds",
    "MemoryPeak",
    "MemorySample",
    "WorkerProcess",
    "descendants",
    "tree_memory",
]


@dataclass(frozen=True)
class MemorySample:
    """Summed memory of a process tree, in KiB."""

    pss_kb: int
    rss_kb: int
    processes: int


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                found += [int(p) for p in fh.read().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    tree, todo = [pid], [pid]
    while todo:
        kids = _children(todo.pop())
        tree += kids
        todo += kids
    return tree


def _rollup(pid: int) -> tuple[int, int] | None:
    """(PSS, RSS) of one process from /proc/<pid>/smaps_rollup, or None if it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        return None
    return pss, rss


def tree_memory(pid: int) -> MemorySample:
    """PSS and RSS summed over ``pid`` and all its descendants."""
    pss = rss = count = 0
    for member in descendants(pid):
        found = _rollup(member)
        if found is not None:
            pss, rss, count = pss + found[0], rss + found[1], count + 1
    return MemorySample(pss, rss, count)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid``, its live descendants and the
    children it has reaped."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in descendants(pid):
        try:
            with open(f"/proc/{member}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if member == pid:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / ticks


class MemoryPeak:
    """Samples a process tree's memory in a thread; keeps the peak PSS and RSS."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = MemorySample(0, 0, 0)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Take one sample now (also called by the sampling thread)."""
        now = tree_memory(self.pid)
        with self._lock:
            self.peak = MemorySample(
                max(self.peak.pss_kb, now.pss_kb),
                max(self.peak.rss_kb, now.rss_kb),
                max(self.peak.processes, now.processes),
            )


class WorkerProcess:
    """A worker command run in its own session, its output going to a log file."""

    def __init__(
        self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The pid of the started worker."""
        if self._proc is None:
            raise RuntimeError("worker not started")
        return self._proc.pid

    def start(self) -> None:
        """Start the worker (returns at once; the worker may still be booting)."""
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def alive(self) -> bool:
        """Whether the worker's main process is still running."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM (warm shutdown), then SIGKILL the whole process group after ``grace`` s."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self._kill_group(proc.pid)
        code = proc.wait()
        self._proc = None
        return code

    @staticmethod
    def _kill_group(pgid: int) -> None:
        """Kill what is left of the worker's own process group (pool children)."""
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the worker's log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
