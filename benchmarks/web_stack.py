"""Seed 004's web stack on celeriac and on Celery, side by side.

``python -m benchmarks.web_stack [-n 2000] [-c 50] [--only celeriac,celery] [--direct]``
runs the same Flask app (``examples/process_data``) twice: nginx (``deploy/``'s local
template) → gunicorn (4 sync workers) → RabbitMQ → two workers (``-c 2`` each) → PostgreSQL,
once with celeriac and once with Celery (``PROCESS_DATA_QUEUE=celery`` swaps the app's import
line and nothing else). Each run gets a RabbitMQ vhost and a PostgreSQL schema of its own,
dropped afterwards. After the seed's 50 POSTs as a warm-up, it sends ``-n`` POSTs from ``-c``
client threads and reports the POST latency (p50/p99, as the client sees it) and the
end-to-end completion time and rate (first POST sent to last job row marked done), then the
celeriac/Celery ratios. ``--direct`` skips nginx and talks to gunicorn.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

__all__ = ["Outcome", "main", "run_stack"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "process_data"
TEMPLATE = REPO / "deploy" / "nginx-local.conf.template"
BIN = Path(sys.executable).parent
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgres@127.0.0.1:5432/test")
AMQP = os.environ.get("BENCH_AMQP", "guest:guest@127.0.0.1:5672")
WARMUP = 50


@dataclass
class Outcome:
    """One system's numbers (milliseconds and seconds)."""

    system: str
    n: int
    concurrency: int
    post_p50_ms: float
    post_p99_ms: float
    post_rate: float
    completion_s: float
    completion_rate: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def isolated(system: str) -> Iterator[dict[str, str]]:
    """A vhost and a schema for one run, and the environment that points the app at them;
    both removed afterwards, also when the run (or the setup itself) fails."""
    name = f"bench_web_{system}_{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "add_vhost", name], check=True, capture_output=True)
    try:
        subprocess.run(
            ["rabbitmqctl", "set_permissions", "-p", name, AMQP.split(":")[0], ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
        with psycopg.connect(f"postgresql://{POSTGRES}", autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
            try:
                yield environment(system, name)
            finally:
                drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                admin.execute(drop)
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", name], capture_output=True)


def environment(system: str, name: str) -> dict[str, str]:
    """The app's variables for ``system``, with vhost and schema ``name``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(EXAMPLE),
        "PROCESS_DATA_QUEUE": system,
        "BROKER_URL": f"amqp://{AMQP}/{name}",
        "DATABASE_URL": f"postgresql+psycopg://{POSTGRES}",
        "DATABASE_SCHEMA": name,
    }
    if system == "celery":
        # Celery's database backend takes no schema in its URL: libpq's PGOPTIONS sets one.
        env["RESULT_BACKEND"] = f"db+postgresql+psycopg://{POSTGRES}"
        env["PGOPTIONS"] = f"-c search_path={name}"
    else:
        env["RESULT_BACKEND"] = f"db+postgresql://{POSTGRES}?schema={name}"
    return env


class Processes:
    """The stack's processes, each in its own session so a stop reaches its children."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.run_dir, self.env = run_dir, env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> None:
        log = open(self.run_dir / f"{name}.log", "wb")  # closed by the process
        self.procs.append(
            subprocess.Popen(
                args,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def start_stack(procs: Processes, system: str, web_port: int, http_port: int | None) -> None:
    """Tables first (so no two processes race to create them), then workers, web and nginx."""
    prepare = "from process_data.db import create_tables; create_tables()"
    if system == "celery":
        prepare += "\nfrom process_data.tasks import app; app.backend.ResultSession().close()"
    subprocess.run([sys.executable, "-c", prepare], env=procs.env, check=True)
    cli = str(BIN / ("celery" if system == "celery" else "celeriac"))
    for name in ("worker1", "worker2"):
        procs.start(
            name,
            cli,
            "-A",
            "process_data.tasks",
            "worker",
            "-n",
            f"{name}@%h",
            "-c",
            "2",
            "-l",
            "info",
        )
    procs.start(
        "web",
        str(BIN / "gunicorn"),
        "--workers",
        "4",
        "--bind",
        f"127.0.0.1:{web_port}",
        "process_data:create_app()",
    )
    if http_port is not None:
        conf = TEMPLATE.read_text()
        for key, value in (
            ("RUN_DIR", procs.run_dir),
            ("HTTP_PORT", http_port),
            ("WEB_PORT", web_port),
        ):
            conf = conf.replace(f"@{key}@", str(value))
        (procs.run_dir / "nginx.conf").write_text(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        procs.start(
            "nginx",
            nginx,
            "-p",
            str(procs.run_dir),
            "-c",
            str(procs.run_dir / "nginx.conf"),
            "-g",
            "daemon off;",
        )


class Client:
    """POSTs documents from many threads, a keep-alive connection per thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def post(self, value: int) -> tuple[int, str | None, float]:
        body = json.dumps({"value": value, "tags": ["bench"], "nested": {"w": value % 7}})
        started = time.perf_counter()
        try:
            conn = self._conn()
            conn.request(
                "POST", "/api/process_data", body=body, headers={"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.local.conn = None
            return 0, None, time.perf_counter() - started
        elapsed = time.perf_counter() - started
        task_id = json.loads(raw).get("task_id") if response.status == 202 else None
        return response.status, task_id, elapsed

    def healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/healthz")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return conn


def wait_until(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout}s")
        time.sleep(0.2)


def workers_ready(run_dir: Path) -> bool:
    return all("ready" in (run_dir / f"worker{i}.log").read_text(errors="replace") for i in (1, 2))


def done_span(schema: str, ids: list[str]) -> tuple[int, dt.datetime | None]:
    """How many of ``ids`` are done, and when the last of them finished."""
    with psycopg.connect(f"postgresql://{POSTGRES}", autocommit=True) as conn:
        count, last = conn.execute(
            sql.SQL(
                "SELECT count(*), max(finished_at) FROM {}.jobs "
                "WHERE status = 'done' AND id = ANY(%s)"
            ).format(sql.Identifier(schema)),
            (ids,),
        ).fetchone() or (0, None)
    return int(count), last


def drive(
    client: Client, schema: str, values: range, concurrency: int, timeout: float
) -> tuple[list[tuple[int, str | None, float]], float, float]:
    """POST ``values``; the replies, the POST phase's length and the time to the last done."""
    start_wall = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        replies = list(pool.map(client.post, values))
    posting = time.perf_counter() - started
    ids = [task_id for _, task_id, _ in replies if task_id]
    wait_until("every job done", lambda: done_span(schema, ids)[0] == len(ids), timeout)
    last = done_span(schema, ids)[1]
    completion = (last - start_wall).total_seconds() if last else posting
    return replies, posting, completion


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def run_stack(
    system: str, n: int, concurrency: int, *, direct: bool = False, timeout: float = 300
) -> Outcome:
    """Start the stack on ``system``, warm it up, measure ``n`` POSTs, stop it."""
    with isolated(system) as env, tempfile.TemporaryDirectory(prefix="web-bench-") as tmp:
        run_dir = Path(tmp)
        web_port = free_port()
        http_port = None if direct else free_port()
        procs = Processes(run_dir, env)
        try:
            start_stack(procs, system, web_port, http_port)
            client = Client(http_port or web_port)
            wait_until("the API", client.healthy, 60)
            wait_until("both workers", lambda: workers_ready(run_dir), 60)
            schema = env["DATABASE_SCHEMA"]
            drive(client, schema, range(WARMUP), min(concurrency, 10), timeout)
            replies, posting, completion = drive(
                client, schema, range(WARMUP, WARMUP + n), concurrency, timeout
            )
        finally:
            procs.stop()
    latencies = [elapsed * 1000 for status, _, elapsed in replies if status == 202]
    return Outcome(
        system=system,
        n=n,
        concurrency=concurrency,
        post_p50_ms=percentile(latencies, 0.5),
        post_p99_ms=percentile(latencies, 0.99),
        post_rate=n / posting,
        completion_s=completion,
        completion_rate=n / completion,
        errors=sum(1 for status, _, _ in replies if status != 202),
    )


def render(outcomes: list[Outcome], front: str) -> str:
    """The side-by-side table and, with both systems, celeriac's ratios (above 1 = better)."""
    rows = [
        ("POST latency p50 (ms)", "post_p50_ms", False),
        ("POST latency p99 (ms)", "post_p99_ms", False),
        ("POSTs answered per s", "post_rate", True),
        ("end-to-end completion (s)", "completion_s", False),
        ("end-to-end completion rate (jobs/s)", "completion_rate", True),
        ("errors (non-202)", "errors", False),
    ]
    first = outcomes[0]
    lines = [f"{first.n} POSTs at concurrency {first.concurrency}, {front}", ""]
    names = [o.system for o in outcomes]
    both = {"celeriac", "celery"} <= set(names)
    header = "| measure | " + " | ".join(names) + (" | celeriac/Celery |" if both else " |")
    lines += [header, "|" + " --- |" * (len(names) + 1 + both)]
    by = {o.system: o for o in outcomes}
    for label, key, higher_better in rows:
        cells = [f"{getattr(o, key):.1f}" if key != "errors" else str(o.errors) for o in outcomes]
        ratio = ""
        if both and key != "errors":
            ours, theirs = getattr(by["celeriac"], key), getattr(by["celery"], key)
            value = ours / theirs if higher_better else theirs / ours
            ratio = f" {value:.2f}x |"
        lines.append(f"| {label} | " + " | ".join(cells) + (" |" + ratio if both else " |"))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.web_stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-n", type=int, default=2000, help="POSTs measured (default 2,000)")
    parser.add_argument("-c", type=int, default=50, help="client threads (default 50)")
    parser.add_argument("--only", default="celeriac,celery", help="systems, comma-separated")
    parser.add_argument("--direct", action="store_true", help="no nginx: POST to gunicorn")
    parser.add_argument("--out", type=Path, help="append the numbers to this JSON list")
    return parser.parse_args(argv)


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Add ``record`` to the JSON list in ``path`` (a new list if the file is missing)."""
    runs = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*runs, record], indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.direct and not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        sys.exit("nginx is not installed; use --direct to POST to gunicorn")
    load = os.getloadavg()
    outcomes = [
        run_stack(name, args.n, args.c, direct=args.direct) for name in args.only.split(",")
    ]
    front = "gunicorn direct" if args.direct else "through nginx"
    print(render(outcomes, front))
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(
        f"\nload average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: {uptime}"
    )
    if args.out:
        record = {
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "front": front,
            "load_before": load,
            "uptime_after": uptime,
            "cpus": os.cpu_count(),
            "outcomes": [o.__dict__ for o in outcomes],
        }
        append_record(args.out, record)
    return 0 if all(o.errors == 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
