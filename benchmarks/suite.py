"""The run: every selected workload, repeated, over every selected system."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from benchmarks.brokers import amqp_up, celeriac_has_amqp
from benchmarks.records import Records, percentile
from benchmarks.systems import Case, System
from benchmarks.workloads import ClientError, Runner

__all__ = ["WORKLOADS", "run_suite"]

WORKLOADS = ("throughput", "latency", "io", "cpu", "memory", "amqp", "sqlite", "events")


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


class Suite:
    """Drives a :class:`Runner` over systems and repetitions, filling :class:`Records`."""

    def __init__(self, runner: Runner, systems: Sequence[System], records: Records) -> None:
        self.runner = runner
        self.systems = list(systems)
        self.records = records
        self.reps = runner.settings.reps

    def _measure(
        self, what: str, call: Callable[[], dict[str, Any]], **key: Any
    ) -> dict[str, Any] | None:
        started = time.monotonic()
        try:
            result = call()
        except (ClientError, OSError, RuntimeError) as exc:
            self.records.note(
                f"{key['broker']} {key['workload']} {key['system']} "
                f"{key['case']}: failed ({str(exc).splitlines()[0]})"
            )
            _log(f"  {what}: FAILED\n{exc}")
            return None
        self.records.add(**key, **result)
        shown = {k: _fmt(v) for k, v in result.items() if k != "samples_ms"}
        _log(f"  {what}: {shown} ({time.monotonic() - started:.1f} s)")
        if result.get("complete") is False:
            self.records.note(f"{key['system']} {key['case']} ({key['broker']}): incomplete drain")
        return result

    def drain_cases(
        self, broker: str, workload: str, cases_of: Callable[[System], Sequence[Case]], n: int
    ) -> None:
        """Repeat drain measurements of every system's cases."""
        for rep in range(self.reps):
            for system in self.systems:
                for case in cases_of(system):
                    if rep > 0 and case.once:
                        continue
                    key = dict(
                        broker=broker,
                        workload=workload,
                        system=system.name,
                        case=case.key,
                        label=system.variants[case.variant].describe(),
                        enqueue_fn=case.enqueue_fn,
                        rep=rep,
                    )
                    self._measure(
                        f"[{broker} {workload} {rep + 1}/{self.reps}] {system.name} {case.key}",
                        partial(self.runner.drain, system, broker, case, n),
                        **key,
                    )

    def enqueue_paths(self) -> None:
        """The extra producer paths (async, bulk) on their own."""
        n = self.runner.settings.n
        for rep in range(self.reps):
            for system in self.systems:
                for fn in system.enqueue_fns[1:]:
                    self._measure(
                        f"[redis enqueue {rep + 1}/{self.reps}] {system.name} {fn}",
                        partial(self.runner.enqueue_only, system, fn, n),
                        broker="redis",
                        workload="enqueue",
                        system=system.name,
                        case=fn,
                        label=fn,
                        rep=rep,
                    )

    def latency(
        self, broker: str, systems: Sequence[System], fns_of: Callable[[System], Sequence[str]]
    ) -> None:
        """Round trips, each repetition against a fresh idle worker."""
        for rep in range(self.reps):
            for system in systems:
                variant = system.throughput[0].variant
                for fn in fns_of(system):
                    self._measure(
                        f"[{broker} latency {rep + 1}/{self.reps}] {system.name} {fn}",
                        partial(_percentiles, self.runner.latency, system, broker, variant, fn),
                        broker=broker,
                        workload="latency",
                        system=system.name,
                        case=fn,
                        label=fn,
                        rep=rep,
                    )

    def countdown(self) -> None:
        """Memory added by pending countdown tasks (one repetition: it is slow for peers)."""
        for system in self.systems:
            if not system.countdown:
                self.records.note(f"{system.name}: no countdown without a separate scheduler")
                continue
            variant = system.throughput[0].variant
            self._measure(
                f"[redis memory] {system.name} {self.runner.settings.countdown_n} countdowns",
                partial(self.runner.countdown, system, variant),
                broker="redis",
                workload="countdown",
                system=system.name,
                case=variant,
                label=system.variants[variant].describe(),
                rep=0,
            )

    def other_broker(self, broker: str) -> None:
        """Throughput and latency on AMQP or SQLite, for the systems that have it."""
        systems = [s for s in self.systems if broker in s.brokers and broker in s.extra_cases]
        if broker == "amqp":
            if not amqp_up():
                self.records.note("amqp: RabbitMQ not reachable on 127.0.0.1:5672; skipped")
                return
            if not celeriac_has_amqp():
                self.records.note(
                    "amqp: celeriac/engines/amqp/broker.py does not exist yet; celeriac skipped, "
                    "peers measured for reference"
                )
                systems = [s for s in systems if s.name != "celeriac"]
        if not systems:
            return
        sub = Suite(self.runner, systems, self.records)
        sub.drain_cases(
            broker, "throughput", lambda s: s.extra_cases[broker], self.runner.settings.n
        )
        sub.latency(broker, systems, lambda s: s.latency_fns[:1])


def _percentiles(measure: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    samples = measure(*args)["samples_ms"]
    return {
        "p50_ms": percentile(samples, 50),
        "p95_ms": percentile(samples, 95),
        "p99_ms": percentile(samples, 99),
        "mean_ms": sum(samples) / len(samples),
        "samples_ms": samples,
    }


def run_suite(runner: Runner, systems: Sequence[System], workloads: Sequence[str]) -> Records:
    """Run ``workloads`` (names from :data:`WORKLOADS`) over ``systems``."""
    records = Records()
    suite = Suite(runner, systems, records)
    settings = runner.settings
    if "throughput" in workloads:
        suite.drain_cases(
            "redis", "throughput", lambda s: s.throughput[: settings.max_cases], settings.n
        )
        suite.enqueue_paths()
    if "latency" in workloads:
        suite.latency("redis", systems, lambda s: s.latency_fns)
    if "io" in workloads:
        suite.drain_cases("redis", "io", lambda s: s.io, settings.io_n)
    if "cpu" in workloads:
        suite.drain_cases("redis", "cpu", lambda s: [s.cpu] if s.cpu else [], settings.cpu_n)
    if "memory" in workloads:
        suite.countdown()
    for broker in ("amqp", "sqlite"):
        if broker in workloads:
            suite.other_broker(broker)
    if "events" in workloads:
        suite.drain_cases("redis", "events", _event_cases, settings.n)
    return records


def _event_cases(system: System) -> list[Case]:
    """Each (events off, events on) pair of ``system``, in that order."""
    return [case for pair in system.events for case in pair]
