"""``python -m benchmarks``: run the side-by-side benchmark and write the results.

Examples::

    python -m benchmarks                          # everything, 3 repetitions (~25 min)
    python -m benchmarks --quick                  # fewer tasks, 1 repetition
    python -m benchmarks --only celeriac,huey --workloads throughput,latency
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.brokers import REDIS_HOST, REDIS_PORT, redis_up
from benchmarks.peers_env import ensure_peers_venv, installed_versions
from benchmarks.records import Records
from benchmarks.report import render, targets
from benchmarks.suite import WORKLOADS, run_suite
from benchmarks.systems import System, all_systems
from benchmarks.workloads import Paths, Runner, Settings

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = [s.name for s in all_systems()]
    parser.add_argument("--quick", action="store_true", help="2,000 tasks, 1 repetition")
    parser.add_argument("--only", help=f"comma-separated systems ({','.join(names)})")
    parser.add_argument("--workloads", help=f"comma-separated ({','.join(WORKLOADS)})")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("-n", type=int, help="no-op tasks per drain (default 20,000)")
    parser.add_argument(
        "--first-cases", type=int, help="only each system's first N drain cases on Redis"
    )
    parser.add_argument("--countdown-n", type=int, help="pending countdown tasks (100,000)")
    parser.add_argument(
        "--redis-db-base",
        type=int,
        default=9,
        help="first Redis db; each system uses base + its offset (default 9)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "results", help="results directory")
    parser.add_argument("--no-install", action="store_true", help="never pip-install the peers")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Sizes from the command line."""
    s = Settings(redis_db_base=args.redis_db_base, max_cases=args.first_cases)
    if args.quick:
        s.n, s.reps, s.latency_n, s.io_n, s.cpu_n, s.countdown_n = 2_000, 1, 200, 1_000, 500, 20_000
    s.n = args.n or s.n
    s.reps = args.reps or s.reps
    s.countdown_n = args.countdown_n or s.countdown_n
    if args.n and args.n < s.latency_n:
        s.latency_n = max(args.n, 20)
    return s


def select(args: argparse.Namespace) -> tuple[list[System], list[str]]:
    """The systems and workloads asked for."""
    systems = all_systems()
    if args.only:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = wanted - {s.name for s in systems}
        if unknown:
            raise SystemExit(f"unknown system(s): {', '.join(sorted(unknown))}")
        systems = [s for s in systems if s.name in wanted]
    workloads = list(WORKLOADS)
    if args.workloads:
        workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
        unknown = set(workloads) - set(WORKLOADS)
        if unknown:
            raise SystemExit(f"unknown workload(s): {', '.join(sorted(unknown))}")
    return systems, workloads


def _machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _servers() -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        out = subprocess.run(
            ["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "INFO", "server"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        for line in out.splitlines():
            if line.startswith("redis_version:"):
                found["redis"] = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return found


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def versions(bins: dict[str, Path], systems: list[System]) -> dict[str, str]:
    """Installed versions of every benchmarked package."""
    found = installed_versions(
        bins["main"] / "python", ["celeriac", "redis", "hiredis", "aio-pika"]
    )
    found = {f"celeriac-venv {k}" if k != "celeriac" else k: v for k, v in found.items()}
    if "peers" in bins and any(s.venv == "peers" for s in systems):
        peers = ["celery", "kombu", "dramatiq", "huey", "taskiq", "taskiq-redis", "redis", "pika"]
        found.update(
            {
                f"peers {k}": v
                for k, v in installed_versions(bins["peers"] / "python", peers).items()
            }
        )
    return found


def write_results(out: Path, payload: dict[str, Any]) -> tuple[Path, Path]:
    """The full run (timestamped) and the commit-worthy summary (latest.json)."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    full = out / f"{stamp}.json"
    full.write_text(json.dumps(payload, indent=1) + "\n")
    latest = out / "latest.json"
    summary = {k: v for k, v in payload.items() if k != "records"}
    latest.write_text(json.dumps(summary, indent=1) + "\n")
    return full, latest


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the report; write the JSON files."""
    args = parse_args(argv)
    systems, workloads = select(args)
    settings = settings_from(args)
    if not redis_up():
        print(f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}", file=sys.stderr)
        return 2
    bins = {"main": Path(sys.executable).parent}
    if any(s.venv == "peers" for s in systems):
        bins["peers"] = ensure_peers_venv(ROOT / "venvs" / "peers", install=not args.no_install)
    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    workdir = Path(tempfile.mkdtemp(prefix="celeriac-bench-"))
    try:
        # The workers and producers run this checkout's celeriac, not whichever one the
        # venv was installed from (a worktree shares the main checkout's venv).
        paths = Paths(apps=ROOT / "apps", bins=bins, workdir=workdir, pythonpath=(REPO,))
        runner = Runner(settings, paths)
        records: Records = run_suite(runner, systems, workloads)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = records.summary()
    report = render(summary, systems, records.notes)
    payload = {
        "meta": {
            "started": started_at,
            "seconds": round(time.monotonic() - started, 1),
            "command": " ".join(
                ["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]
            ),
            "commit": _git_commit(),
            "machine": _machine(),
            "servers": _servers(),
            "versions": versions(bins, systems),
            "settings": vars(settings),
            "systems": [s.name for s in systems],
            "workloads": workloads,
        },
        "summary": summary.rows,
        "targets": targets(summary, systems),
        "notes": records.notes,
        "report": report,
        "records": records.items,
    }
    full, latest = write_results(args.out, payload)
    print(report)
    print(f"results: {full}\nsummary: {latest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
