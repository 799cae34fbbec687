"""The description of a benchmarked system: worker variants, drain cases, workloads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Case", "System", "Variant"]


@dataclass(frozen=True)
class Variant:
    """One way to start the worker: an argv whose ``{bin}`` is the venv's bin directory."""

    label: str
    argv: tuple[str, ...]
    app: str = "sync-only"
    """Which form of the system's benchmark app the worker loads: ``sync-only`` (only
    ``def`` tasks) or ``mixed`` (``def`` and ``async def`` tasks; a celeriac worker then
    widens its prefetch window by ``--async-concurrency``)."""

    def describe(self) -> str:
        """The label the report shows: the app form, then the worker's options."""
        return f"{self.app} app, {self.label}"

    def command(self, bin_dir: Path) -> list[str]:
        """The argv with the venv's bin directory filled in."""
        return [part.replace("{bin}", str(bin_dir)) for part in self.argv]


@dataclass(frozen=True)
class Case:
    """One drain measurement: a worker variant, a task kind, results on or off."""

    variant: str
    kind: str = "noop"
    results: bool = True
    enqueue_fn: str = "enqueue"
    once: bool = False
    """Measure in the first repetition only (exploratory settings; keeps a run short)."""

    @property
    def key(self) -> str:
        """A stable name for reports, e.g. ``prefork/noop/results``."""
        return f"{self.variant}/{self.kind}/{'results' if self.results else 'no-results'}"


@dataclass(frozen=True)
class System:
    """A benchmarked task queue."""

    name: str
    app_module: str
    venv: str
    """``main`` (the project's .venv) or ``peers`` (benchmarks/venvs/peers)."""
    db_offset: int
    """Redis db = base + offset, so systems never share a database."""
    variants: Mapping[str, Variant]
    throughput: tuple[Case, ...]
    """Drain cases on Redis; the first is the headline (the worker with its defaults,
    results on), the second the same without results."""
    io: tuple[Case, ...] = ()
    cpu: Case | None = None
    latency_fns: tuple[str, ...] = ("round_trip",)
    enqueue_fns: tuple[str, ...] = ("enqueue",)
    """Producer paths measured on their own (the first is the plain per-task call)."""
    brokers: frozenset[str] = frozenset({"redis"})
    countdown: bool = True
    extra_cases: Mapping[str, tuple[Case, ...]] = field(default_factory=dict)
    """Drain cases on other brokers (``amqp``, ``sqlite``)."""
    events: tuple[tuple[Case, Case], ...] = ()
    """Pairs of drain cases on Redis, task events off then on (``-E``): what events cost."""
