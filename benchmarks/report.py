"""Tables of medians, celeriac/peer ratios and the issue's targets, as Markdown text."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from benchmarks.records import Summary
from benchmarks.systems import System

__all__ = ["render", "targets"]


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]


class Report:
    """Builds the text report from a summary and the systems' definitions."""

    def __init__(self, summary: Summary, systems: Sequence[System]) -> None:
        self.s = summary
        self.systems = {system.name: system for system in systems}
        self.h = Headlines(summary, self.systems)

    def throughput(self, broker: str = "redis") -> list[str]:
        """Headline no-op throughput per system on ``broker``; each row names the app form
        and worker options of its headline case."""
        rows = []
        for name in self.s.systems(broker, "throughput"):
            on, off = self.h.case(broker, name, 0), self.h.case(broker, name, 1)
            best = self.s.best(broker, "throughput", name, "drain_rate")
            p50 = self.s.find(broker, "latency", name, self.systems[name].latency_fns[0])
            rows.append(
                [
                    name,
                    self.h.label(broker, name),
                    _num(self.s.value(on, "enqueue_rate")),
                    _num(self.s.value(on, "drain_rate")),
                    _num(self.s.value(off, "drain_rate")),
                    f"{_num(self.s.value(best, 'drain_rate'))} ({best['case'] if best else '-'})",
                    _num(self.s.value(p50, "p50_ms"), 2),
                    _num(self.s.value(on, "pss_mb"), 1),
                    _num(self.s.value(on, "rss_mb"), 1),
                ]
            )
        header = [
            "system",
            "headline worker (app, options)",
            "enqueue/s",
            "drain/s results on",
            "drain/s results off",
            "best drain/s (case)",
            "round trip p50 ms",
            "worker PSS MB",
            "RSS MB",
        ]
        return _table(header, rows)

    def other_broker(self, broker: str) -> list[str]:
        """Throughput and latency on AMQP or SQLite (nothing when not measured)."""
        if not self.s.of(broker, "throughput") and not self.s.of(broker, "latency"):
            return []
        return [*self.throughput(broker), "", *self.latency(broker)]

    def cases(self) -> list[str]:
        """Every drain case measured on Redis."""
        rows = [
            [
                r["system"],
                r["case"],
                r["label"],
                f"{_num(r.get('enqueue_rate'))} ({r.get('enqueue_fn') or 'enqueue'})",
                _num(r.get("drain_rate")),
                _num(r.get("pss_mb"), 1),
                str(r["reps"]),
            ]
            for r in self.s.of("redis", "throughput")
        ]
        rows += [
            [
                r["system"],
                "enqueue only",
                "",
                f"{_num(r.get('enqueue_rate'))} ({r['case']})",
                "-",
                "-",
                str(r["reps"]),
            ]
            for r in self.s.of("redis", "enqueue")
        ]
        header = ["system", "case", "worker", "enqueue/s (path)", "drain/s", "PSS MB", "reps"]
        return _table(header, rows)

    def latency(self, broker: str = "redis") -> list[str]:
        """Round-trip percentiles."""
        rows = [
            [
                r["system"],
                r["case"],
                _num(r.get("p50_ms"), 2),
                _num(r.get("p95_ms"), 2),
                _num(r.get("p99_ms"), 2),
            ]
            for r in self.s.of(broker, "latency")
        ]
        return _table(["system", "API", "p50 ms", "p95 ms", "p99 ms"], rows)

    def io(self) -> list[str]:
        """I/O-bound drain time against the ideal."""
        rows = []
        for r in self.s.of("redis", "io"):
            secs = self.s.value(r, "io_seconds")
            ideal = self.s.value(r, "io_ideal_seconds")
            ratio = None if secs is None or not ideal else secs / ideal
            rows.append([r["system"], r["case"], r["label"], _num(secs, 2), _num(ratio, 2)])
        return _table(["system", "case", "worker", "seconds", "x ideal"], rows)

    def cpu(self) -> list[str]:
        """CPU-bound drain."""
        rows = []
        for r in self.s.of("redis", "cpu"):
            rate = self.s.value(r, "drain_rate")
            secs = None if not rate else r["n"] / rate
            rows.append([r["system"], r["label"], _num(secs, 2), _num(rate)])
        return _table(["system", "worker", "seconds", "tasks/s"], rows)

    def events(self) -> list[str]:
        """Drain with task events off and on (``-E``), and what turning them on costs: in
        drain rate, and in worker CPU per task (steadier on a busy machine)."""
        rows = []
        for name, system in self.systems.items():
            for off_case, on_case in system.events:
                off = self.s.find("redis", "events", name, off_case.key)
                on = self.s.find("redis", "events", name, on_case.key)
                rate_off, rate_on = self.s.value(off, "drain_rate"), self.s.value(on, "drain_rate")
                cpu_off, cpu_on = _cpu_per_task(self.s, off), _cpu_per_task(self.s, on)
                rows.append(
                    [name, system.variants[off_case.variant].describe(), _num(rate_off),
                     _num(rate_on), _num(_cost(rate_on, rate_off, lower=True), 1),
                     _num(cpu_off, 1), _num(cpu_on, 1), _num(_cost(cpu_on, cpu_off), 1)]
                )  # fmt: skip
        header = ["system", "worker (events off)", "drain/s off", "drain/s -E", "cost %",
                  "CPU us/task off", "CPU us/task -E", "CPU cost %"]  # fmt: skip
        return _table(header, rows)

    def countdown(self) -> list[str]:
        """Worker memory added by pending countdown tasks."""
        rows = [
            [
                r["system"],
                _num(r.get("before_rss_mb"), 1),
                _num(r.get("rss_added_mb"), 1),
                _num(r.get("pss_added_mb"), 1),
                _num(r.get("settle_seconds"), 0)
                + ("" if r.get("settled", True) else " (still moving)"),
            ]
            for r in self.s.of("redis", "countdown")
        ]
        header = ["system", "RSS before MB", "RSS added MB", "PSS added MB", "waited s"]
        return _table(header, rows)

    def ratios(self) -> list[str]:
        """How many times better celeriac is than each peer (above 1 = celeriac better)."""
        peers = [n for n in self.systems if n != "celeriac"]
        if "celeriac" not in self.systems or not peers:
            return []
        h = self.h
        headline = f"({h.label('redis', 'celeriac')})"
        metrics: list[tuple[str, str, Callable[[str, str], float | None], bool]] = [
            (f"drain, results on {headline}", "redis", h.drain_on, True),
            ("best drain", "redis", h.best_drain, True),
            ("enqueue (per-task call)", "redis", h.enqueue, True),
            ("round trip p50", "redis", h.p50, False),
            ("I/O-bound seconds", "redis", lambda _b, n: h.io_seconds(n), False),
            ("CPU-bound tasks/s", "redis", lambda _b, n: h.cpu_rate(n), True),
            (f"worker PSS {headline}", "redis", lambda _b, n: h.pss(n), False),
            (f"AMQP drain, results on ({h.label('amqp', 'celeriac')})", "amqp", h.drain_on, True),
            ("AMQP round trip p50", "amqp", h.p50, False),
            (
                f"SQLite drain, results on ({h.label('sqlite', 'celeriac')})",
                "sqlite",
                h.drain_on,
                True,
            ),
            ("SQLite round trip p50", "sqlite", h.p50, False),
        ]
        rows = []
        for label, broker, get, higher_better in metrics:
            mine = get(broker, "celeriac")
            cells = [label]
            for peer in peers:
                theirs = get(broker, peer)
                if not mine or not theirs:
                    cells.append("-")
                else:
                    cells.append(f"{(mine / theirs) if higher_better else (theirs / mine):.2f}x")
            if any(cell != "-" for cell in cells[1:]):
                rows.append(cells)
        return _table(["celeriac vs", *peers], rows)


class Headlines:
    """The one number per system and metric that ratios and targets compare."""

    def __init__(self, summary: Summary, systems: Mapping[str, System]) -> None:
        self.s = summary
        self.systems = systems

    def case(self, broker: str, name: str, index: int) -> dict[str, Any] | None:
        """The row of the system's ``index``-th drain case on ``broker`` (0: results on)."""
        system = self.systems.get(name)
        if system is None:
            return None
        cases = system.throughput if broker == "redis" else system.extra_cases.get(broker, ())
        return (
            self.s.find(broker, "throughput", name, cases[index].key)
            if len(cases) > index
            else None
        )

    def label(self, broker: str, name: str) -> str:
        """The app form and worker options of the system's headline case on ``broker``."""
        system = self.systems.get(name)
        cases = () if system is None else (
            system.throughput if broker == "redis" else system.extra_cases.get(broker, ())
        )  # fmt: skip
        if system is None or not cases:
            return "-"
        return system.variants[cases[0].variant].describe()

    def drain_on(self, broker: str, name: str) -> float | None:
        """Drain rate of the default worker with results stored."""
        return self.s.value(self.case(broker, name, 0), "drain_rate")

    def drain_off(self, broker: str, name: str) -> float | None:
        """Drain rate of the default worker without results."""
        return self.s.value(self.case(broker, name, 1), "drain_rate")

    def best_drain(self, broker: str, name: str) -> float | None:
        """The fastest drain over all of the system's cases."""
        return self.s.value(self.s.best(broker, "throughput", name, "drain_rate"), "drain_rate")

    def best_with_results(
        self, name: str, kind: str, broker: str = "redis"
    ) -> dict[str, Any] | None:
        """The system's fastest drain of ``kind`` tasks with results stored, any worker."""
        rows = [
            r
            for r in self.s.of(broker, "throughput", name)
            if r["case"].endswith(f"/{kind}/results") and r.get("drain_rate") is not None
        ]
        return max(rows, key=lambda r: float(r["drain_rate"]), default=None)

    def enqueue(self, broker: str, name: str) -> float | None:
        """Enqueue rate of the plain per-task call (headline case)."""
        return self.s.value(self.case(broker, name, 0), "enqueue_rate")

    def p50(self, broker: str, name: str) -> float | None:
        """Median round trip with the sync result API."""
        return self.s.value(self.s.find(broker, "latency", name, "round_trip"), "p50_ms")

    def io_seconds(self, name: str) -> float | None:
        """The best I/O-bound drain time."""
        return min(self.s.values(self.s.of("redis", "io", name), "io_seconds"), default=None)

    def io_vs_ideal(self, name: str) -> float | None:
        """The best I/O-bound drain time as a multiple of the ideal one."""
        rows = self.s.of("redis", "io", name)
        ratios = [
            r["io_seconds"] / r["io_ideal_seconds"]
            for r in rows
            if r.get("io_seconds") and r.get("io_ideal_seconds")
        ]
        return min(ratios, default=None)

    def cpu_rate(self, name: str) -> float | None:
        """CPU-bound tasks per second."""
        return self.s.value(self.s.best("redis", "cpu", name, "drain_rate"), "drain_rate")

    def pss(self, name: str) -> float | None:
        """Peak worker PSS during the headline drain."""
        return self.s.value(self.case("redis", name, 0), "pss_mb")

    def countdown_mb(self, name: str) -> float | None:
        """RSS added by pending countdown tasks."""
        rows = self.s.of("redis", "countdown", name)
        return self.s.value(rows[0], "rss_added_mb") if rows else None

    def fastest_peer_best(self) -> float | None:
        """The best drain of the fastest peer on Redis."""
        found = [self.best_drain("redis", n) for n in self.systems if n != "celeriac"]
        return max((v for v in found if v is not None), default=None)


def targets(summary: Summary, systems: Sequence[System]) -> list[dict[str, Any]]:
    """The issue's targets: what was measured against what was asked."""
    h = Headlines(summary, {s.name: s for s in systems})
    # celeriac's best worker setting with results stored, two execution slots
    sync_on = h.best_with_results("celeriac", "noop")
    async_on = h.best_with_results("celeriac", "anoop")
    amqp_on = h.best_with_results("celeriac", "noop", "amqp")
    bulk = summary.find("redis", "enqueue", "celeriac", "enqueue_bulk")
    checks = [
        (f"no-op drain, results on ({_case(sync_on)}) >= 3x fastest peer's best",
         summary.value(sync_on, "drain_rate"), _times(h.fastest_peer_best(), 3), True),
        (f"no-op drain, results on ({_case(sync_on)}) >= 15x Celery default",
         summary.value(sync_on, "drain_rate"), _times(h.drain_on("redis", "celery"), 15), True),
        (f"async def no-op drain ({_case(async_on)}) >= 20,000/s",
         summary.value(async_on, "drain_rate"), 20_000.0, True),
        ("enqueue with delay() >= 2x Huey",
         h.enqueue("redis", "celeriac"), _times(h.enqueue("redis", "huey"), 2), True),
        ("bulk enqueue >= 50,000/s", summary.value(bulk, "enqueue_rate"), 50_000.0, True),
        ("round trip p50 <= 0.5 ms (Redis)", h.p50("redis", "celeriac"), 0.5, False),
        ("I/O-bound within 1.05x of ideal (x ideal)", h.io_vs_ideal("celeriac"), 1.05, False),
        (f"worker PSS at two slots ({h.label('redis', 'celeriac')}) <= Huey's (MB)",
         h.pss("celeriac"), h.pss("huey"), False),
        ("100k pending countdowns add < 20 MB RSS", h.countdown_mb("celeriac"), 20.0, False),
        (f"AMQP drain, results on ({_case(amqp_on)}) >= 3x Celery on AMQP",
         summary.value(amqp_on, "drain_rate"), _times(h.drain_on("amqp", "celery"), 3), True),
        ("AMQP round trip p50 < Dramatiq's (ms)",
         h.p50("amqp", "celeriac"), h.p50("amqp", "dramatiq"), False),
        ("SQLite drain >= Huey's SqliteHuey",
         h.drain_on("sqlite", "celeriac"), h.drain_on("sqlite", "huey"), True),
    ]  # fmt: skip
    return [_check(label, got, want, higher) for label, got, want, higher in checks]


def _cpu_per_task(summary: Summary, row: dict[str, Any] | None) -> float | None:
    """Worker CPU microseconds per task of a drain row."""
    cpu = summary.value(row, "worker_cpu_s")
    return None if cpu is None or row is None else cpu / float(row["n"]) * 1e6


def _cost(with_events: float | None, without: float | None, lower: bool = False) -> float | None:
    """Percent more (or, ``lower``, less) with events than without."""
    if with_events is None or not without:
        return None
    ratio = with_events / without
    return 100 * (1 - ratio) if lower else 100 * (ratio - 1)


def _case(row: dict[str, Any] | None) -> str:
    """What a target's row measured: its worker's label (app form and options)."""
    if row is None:
        return "-"
    return str(row.get("label") or str(row["case"]).split("/")[0])


def _times(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _check(label: str, got: float | None, want: float | None, higher: bool) -> dict[str, Any]:
    if got is None or want is None:
        verdict = "not measured"
    else:
        verdict = "PASS" if (got >= want if higher else got <= want) else "FAIL"
    return {"target": label, "measured": got, "needed": want, "verdict": verdict}


def render(summary: Summary, systems: Sequence[System], notes: Sequence[str]) -> str:
    """The whole report as Markdown."""
    rep = Report(summary, systems)
    parts: list[tuple[str, list[str]]] = [
        ("No-op throughput on Redis (tasks/s, medians)", rep.throughput("redis")),
        ("Every drain case on Redis", rep.cases()),
        (
            "Round trips on Redis (500 sequential add(i, i), library's own result API)",
            rep.latency("redis"),
        ),
        ("I/O-bound: 10 ms sleeps at concurrency 20 (ideal: n x 10 ms / 20)", rep.io()),
        ("CPU-bound: 2,000 x fib(20), two processes", rep.cpu()),
        ("Worker memory added by pending countdown tasks", rep.countdown()),
        ("RabbitMQ (AMQP)", rep.other_broker("amqp")),
        ("Embedded SQLite", rep.other_broker("sqlite")),
        ("Task events on Redis: no-op drain off and with -E (target: cost <= 10 %)", rep.events()),
        ("Ratios: how many times better celeriac is (above 1 = celeriac better)", rep.ratios()),
    ]
    out: list[str] = []
    for title, lines in parts:
        if len(lines) > 2:
            out += [f"### {title}", "", *lines, ""]
    checks = targets(summary, systems)
    rows = [
        [c["target"], _num(c["measured"], 2), _num(c["needed"], 2), c["verdict"]] for c in checks
    ]
    out += [
        "### Targets (issue #6)",
        "",
        *_table(["target", "measured", "needed", "verdict"], rows),
        "",
    ]
    if notes:
        out += ["### Notes", "", *(f"- {note}" for note in notes), ""]
    return "\n".join(out)
