"""``python -m benchmarks.netns_scaling``: one Redis drained from 1, 2 and 4 worker hosts.

Each worker process runs in a network namespace of its own (:mod:`tests.cluster.netns`:
veth links on 10.251.N.0/30, a private Redis on port 16390 on the host side, built and
torn down here; root needed). For each host count, ``-n`` no-op tasks are published to a
fresh queue, then one ``celeriac worker`` per namespace drains it. The rate is taken from
the queue length while it falls from 90 % to 10 % of ``n`` (start-up and tail excluded).

Prints tasks/s per host count, the ratio to one host, and the memory of each worker
process (PSS, its share of resident memory, sampled as the drain ends). All processes share
this machine's cores: on a small machine the scaling flattens at the core count, which is
what the ratio shows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from benchmarks.procs import tree_memory
from tests.cluster import netns_app
from tests.cluster.netns import NetnsTopology, available

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent


def _worker(topology: NetnsTopology, n: int, queue: str, args: argparse.Namespace,
            log: Path) -> subprocess.Popen[bytes]:  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "NETNS_URL": topology.url(n),
           "NETNS_HOST": f"h{n}"}  # fmt: skip
    argv = ["-A", "tests.cluster.netns_app", "worker", "-Q", queue, "-P", args.pool,
            "-c", str(args.concurrency), "-n", f"h{n}-{queue}@netns", "-l", "warning",
            "--without-mingle", "--without-gossip"]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(topology.celeriac(n, argv), env=env, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def _publish(url: str, queue: str, n: int) -> None:
    netns_app.app.conf.update(broker_url=url, result_backend=None)
    for _ in range(n):
        netns_app.noop.apply_async(queue=queue)
    netns_app.app.close()


def drain(topology: NetnsTopology, hosts: int, args: argparse.Namespace,
          workdir: Path) -> dict[str, Any]:  # fmt: skip
    """Publish ``args.n`` tasks, drain them from ``hosts`` namespaces; the measured rate."""
    queue = f"scale{hosts}-{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(topology.url(0))
    _publish(topology.url(0), queue, args.n)
    assert client.llen(queue) == args.n, "not every task reached the queue"
    workers = [_worker(topology, n, queue, args, workdir / f"{queue}-h{n}.log")
               for n in range(1, hosts + 1)]  # fmt: skip
    high, low = int(args.n * 0.9), int(args.n * 0.1)
    t_high = t_low = None
    memory: list[int] = []
    try:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            left = int(client.llen(queue))
            now = time.monotonic()
            if t_high is None and left <= high:
                t_high = now
            if left <= low:
                t_low = now
                break
            time.sleep(0.02)
        memory = [tree_memory(w.pid).pss_kb for w in workers]
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
        client.delete(queue)
        client.close()
    if t_high is None or t_low is None:
        raise RuntimeError(f"{hosts} hosts did not drain {args.n} tasks in {args.timeout} s")
    rate = (high - low) / max(t_low - t_high, 1e-9)
    print(f"{hosts} host(s): {rate:.0f} tasks/s", flush=True)
    return {"hosts": hosts, "tasks_per_s": rate, "pss_mb": [m / 1024 for m in memory]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.netns_scaling",
                                     description=__doc__)  # fmt: skip
    parser.add_argument("-n", type=int, default=20_000, help="no-op tasks per drain")
    parser.add_argument("--hosts", default="1,2,4", help="host counts (comma-separated)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of each count")
    parser.add_argument("-c", "--concurrency", type=int, default=4, help="per worker")
    parser.add_argument("-P", "--pool", default="threads", help="worker pool")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per drain")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    why = available()
    if why is not None:
        sys.exit(f"netns_scaling: {why}")
    counts = [int(c) for c in args.hosts.split(",")]
    with tempfile.TemporaryDirectory(prefix="netns-scaling-") as tmp:
        topology = NetnsTopology(max(counts), Path(tmp))
        try:
            topology.start()
            runs = [drain(topology, k, args, Path(tmp)) for _ in range(args.reps) for k in counts]
        finally:
            topology.stop()
    best: dict[int, dict[str, Any]] = {}
    for run in runs:
        if run["hosts"] not in best or run["tasks_per_s"] > best[run["hosts"]]["tasks_per_s"]:
            best[run["hosts"]] = run
    base = best[counts[0]]["tasks_per_s"]
    print(
        f"{'hosts':>5} {'tasks/s':>9} {'ratio':>6}  worker PSS (MB)  [n={args.n}, "
        f"-P {args.pool} -c {args.concurrency}, {os.cpu_count()} cores, best of {args.reps}]"
    )
    for k in counts:
        run = best[k]
        rss = ", ".join(f"{m:.0f}" for m in run["pss_mb"])
        print(f"{k:>5} {run['tasks_per_s']:>9.0f} {run['tasks_per_s'] / base:>6.2f}  {rss}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
