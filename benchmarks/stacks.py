"""Reading py-spy's folded stacks: where a process spends its samples, by function.

py-spy ``record --format raw`` writes one line per distinct stack: frames from the
outermost to the innermost, separated by ``;``, then a space and a sample count. With
``--subprocesses`` a frame names the process (``process 123:"python ..."``); a child's
stack comes after its parent's frames, so the innermost such frame is the owner.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Profile", "read_folded"]

_PROCESS = re.compile(r'^process (\d+):"?(.*?)"?$')
_IDLE = ("select (selectors.py", "_recv (multiprocessing/connection.py")


@dataclass
class Profile:
    """Sample counts of one process: per stack, per function (self and inclusive)."""

    pid: int
    command: str
    total: int = 0
    self_counts: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    files: Counter[str] = field(default_factory=Counter)

    def add(self, frames: list[str], count: int) -> None:
        """Account one stack seen ``count`` times."""
        self.total += count
        if not frames:
            return
        self.self_counts[_short(frames[-1])] += count
        self.files[_file(frames[-1])] += count
        for name in {_short(frame) for frame in frames}:
            self.inclusive[name] += count

    def idle(self) -> int:
        """Samples spent waiting in the event loop's selector (nothing to do)."""
        return sum(n for name, n in self.self_counts.items() if name.startswith(_IDLE))

    def table(self, counts: Counter[str], top: int, per_task_us: float | None) -> list[str]:
        """The ``top`` entries of ``counts`` as percent of samples (and microseconds per task)."""
        lines = []
        for name, n in counts.most_common(top):
            pct = 100.0 * n / max(self.total, 1)
            cost = f"{n * per_task_us:8.1f} us/task  " if per_task_us else ""
            lines.append(f"  {pct:5.1f}%  {cost}{name}")
        return lines


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module/parent.py)`` without the line."""
    match = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    func, path = match.groups()
    parts = path.split("/")
    return f"{func} ({'/'.join(parts[-2:])})"


def _file(frame: str) -> str:
    match = re.match(r"^.*? \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    parts = match.group(1).split("/")
    if "site-packages" in parts:
        idx = parts.index("site-packages")
        return "/".join(parts[idx + 1 : idx + 2])  # the package
    if "celeriac" in parts:
        return "/".join(parts[parts.index("celeriac") :])
    return "/".join(parts[-2:])


def read_folded(path: Path) -> dict[int, Profile]:
    """Profiles by pid from a py-spy raw (folded) file."""
    profiles: dict[int, Profile] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        pid, command = 0, ""
        # A child's stack is nested in its parent's: the innermost process frame owns it.
        for index in range(len(frames) - 1, -1, -1):
            match = _PROCESS.match(frames[index])
            if match:
                pid, command = int(match.group(1)), match.group(2)
                frames = frames[index + 1 :]
                break
        if frames and frames[0].startswith("thread "):
            frames = frames[1:]
        profile = profiles.setdefault(pid, Profile(pid, command))
        profile.add(frames, int(count_text))
    return profiles
