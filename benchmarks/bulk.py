"""``python -m benchmarks.bulk``: bulk enqueue rates into Redis from one process, alone.

Times celeriac's ``enqueue_bulk`` (``app.asend_many`` of 1,000 signatures per call) and,
for comparison, ``enqueue_requests`` (the ``build_request`` + ``apublish`` batches it
replaced) through the harness's own runner (Redis db 9, flushed), nothing draining, and
prints each repetition's rate (per wall-clock second, and per second of the producer's
CPU) with the load average at the time: the machine's other work shows in every number,
the CPU rate least, so read the two paths side by side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.systems.celeriac_adapter import SYSTEM
from benchmarks.workloads import Paths, Runner, Settings

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent
PATHS = ("enqueue_bulk", "enqueue_requests")


def main(argv: list[str] | None = None) -> int:
    """Run the bulk enqueue paths ``--reps`` times each, alternating; print the rates."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bulk", description=__doc__)
    parser.add_argument("-n", type=int, default=50_000, help="messages per run (50,000)")
    parser.add_argument("--reps", type=int, default=3, help="runs of each path (3)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="celeriac-bulk-"))
    paths = Paths(
        apps=ROOT / "apps",
        bins={"main": Path(sys.executable).parent},
        workdir=workdir,
        pythonpath=(ROOT.parent,),
    )
    runner = Runner(Settings(), paths)
    try:
        for rep in range(args.reps):
            for fn in PATHS:
                found = runner.enqueue_only(SYSTEM, fn, args.n)
                rate, cpu = found["enqueue_rate"], found.get("enqueue_cpu_rate", 0.0)
                load = os.getloadavg()[0]
                print(
                    f"{rep + 1}/{args.reps} {fn:17s} {rate:10,.0f} msg/s,"
                    f" {cpu:10,.0f} per producer CPU-second  (load {load:.2f})"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
