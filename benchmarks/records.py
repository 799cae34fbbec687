"""Measurements as flat records, and their medians over repetitions."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Records", "Summary", "percentile"]


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ``samples`` (``pct`` in 0..100)."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Records:
    """Every measurement of a run, one dict each (broker, workload, system, case, rep, ...)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, **record: Any) -> None:
        """Keep one measurement."""
        self.items.append(record)

    def note(self, text: str) -> None:
        """Keep a remark for the report (a skipped workload, an incomplete drain)."""
        if text not in self.notes:
            self.notes.append(text)

    def summary(self) -> Summary:
        """Medians over repetitions, per (broker, workload, system, case)."""
        groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for item in self.items:
            key = (item["broker"], item["workload"], item["system"], item["case"])
            groups[key].append(item)
        rows = [_median_row(key, items) for key, items in groups.items()]
        return Summary(rows)


def _median_row(key: tuple[str, str, str, str], items: list[dict[str, Any]]) -> dict[str, Any]:
    broker, workload, system, case = key
    row: dict[str, Any] = {
        "broker": broker,
        "workload": workload,
        "system": system,
        "case": case,
        "label": items[0].get("label", ""),
        "enqueue_fn": items[0].get("enqueue_fn", ""),
        "reps": len(items),
    }
    flags = {name for item in items for name, value in item.items() if isinstance(value, bool)}
    for name in sorted(flags):
        row[name] = all(item.get(name, True) for item in items)
    numeric = {
        name
        for item in items
        for name, value in item.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and name != "rep"
    }
    for name in sorted(numeric):
        values = [item[name] for item in items if isinstance(item.get(name), int | float)]
        if values:
            row[name] = statistics.median(values)
    return row


@dataclass
class Summary:
    """Median rows, with look-ups by what the report needs."""

    rows: list[dict[str, Any]]

    def find(self, broker: str, workload: str, system: str, case: str) -> dict[str, Any] | None:
        """The row of one case, or None."""
        for row in self.rows:
            if (row["broker"], row["workload"], row["system"], row["case"]) == (
                broker,
                workload,
                system,
                case,
            ):
                return row
        return None

    def of(self, broker: str, workload: str, system: str | None = None) -> list[dict[str, Any]]:
        """Rows of a workload on a broker (one system's, or everyone's), in run order."""
        return [
            row
            for row in self.rows
            if row["broker"] == broker
            and row["workload"] == workload
            and (system is None or row["system"] == system)
        ]

    def best(self, broker: str, workload: str, system: str, metric: str) -> dict[str, Any] | None:
        """The system's row with the highest ``metric`` in that workload."""
        rows = [r for r in self.of(broker, workload, system) if r.get(metric) is not None]
        return max(rows, key=lambda r: float(r[metric]), default=None)

    def systems(self, broker: str, workload: str) -> list[str]:
        """Systems with rows in that workload, in run order."""
        return list(dict.fromkeys(row["system"] for row in self.of(broker, workload)))

    def value(self, row: dict[str, Any] | None, metric: str) -> float | None:
        """``row[metric]`` as a float, or None."""
        if row is None or row.get(metric) is None:
            return None
        return float(row[metric])

    def values(self, rows: Iterable[dict[str, Any]], metric: str) -> list[float]:
        """The metric over rows that have it."""
        return [float(r[metric]) for r in rows if r.get(metric) is not None]
