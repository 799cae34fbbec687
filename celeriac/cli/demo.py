"""``celeriac demo``: run the seed scenarios end to end on the embedded store.

Starts a worker process on a temporary SQLite broker, sends the seed tutorials'
tasks as a client would, prints what comes back, and stops the worker with a
warm shutdown. Exits 0 only if every scenario gave the expected answer.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from celeriac.canvas import chain, group
from celeriac.masking import mask_url

__all__ = ["demo"]


def _start_worker(broker: str, workdir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CELERIAC_BROKER_URL": broker}
    command = [
        sys.executable,
        "-m",
        "celeriac",
        "-A",
        "celeriac.demo.tasks",
        "worker",
        "-c",
        "2",
        "-l",
        "info",
        "-n",
        "demo@%h",
    ]
    log = (workdir / "worker.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)


def _scenarios() -> list[tuple[str, Callable[[], Any], Callable[[Any], bool]]]:
    from celeriac.demo import tasks  # noqa: PLC0415 - imported after the broker env is set

    def factorial_error() -> str:
        result = tasks.heavy_task.apply_async(args=("Сейчас будет ошибка",))
        while not result.ready():
            time.sleep(0.05)
        return "failed: " + str(result.result) if not result.successful() else "unexpected success"

    def wait_ready(n: int) -> Any:
        result = tasks.heavy_task.apply_async(args=(n,))
        while not result.ready():
            time.sleep(0.05)
        return result.get()

    def seed_group() -> Any:
        task_group = group(tasks.buy_milk.s(7), tasks.buy_bread.s(5))
        return task_group.apply_async().get(timeout=30)

    def seed_chain() -> Any:
        task_chain = chain(tasks.fetch_user_name.s(1) | tasks.greeting_user.s())
        return task_chain.apply_async().get(timeout=30)

    return [
        ("seed 003: group(buy_milk.s(7), buy_bread.s(5))", seed_group, lambda v: v == [7, 5]),
        (
            "seed 003: chain(fetch_user_name.s(1) | greeting_user.s())",
            seed_chain,
            lambda v: v == "Здравствуй, Пётр 1Первый!",
        ),
        (
            "seed 000: add(2, 2), worker answers after a delay",
            lambda: tasks.add.delay(2, 2).get(timeout=30),
            lambda v: v == 4,
        ),
        (
            "seed 001: add.delay(4, 5).get()",
            lambda: tasks.add.delay(4, 5).get(timeout=30),
            lambda v: v == 9,
        ),
        (
            "seed 001: e-mail sent in the background",
            lambda: tasks.send_confirmation_email.delay("user@example.com").get(timeout=30),
            lambda v: "user@example.com" in v,
        ),
        (
            "seed 003: get_factorial(50)",
            lambda: wait_ready(50),
            lambda v: v == 608281864034267560872252163321295376887552831379210240000000000,
        ),
        (
            "seed 003: get_factorial('Сейчас будет ошибка')",
            factorial_error,
            lambda v: "cannot be interpreted as an integer" in v,
        ),
        (
            "countdown=1: runs a second later",
            lambda: tasks.add.apply_async((1, 1), countdown=1).get(timeout=30),
            lambda v: v == 2,
        ),
        (
            "retries: fails twice, then succeeds",
            lambda: tasks.flaky.delay(2).get(timeout=30),
            lambda v: v == "succeeded after 2 retries",
        ),
        (
            "async def task on the worker's event loop",
            lambda: tasks.fetch_page.delay("https://example.com").get(timeout=30),
            lambda v: v["status"] == 200,
        ),
    ]


@click.command()
@click.option(
    "--broker", "demo_broker", help="Run on this broker instead, e.g. redis://localhost/5."
)
@click.option(
    "--key-prefix",
    help="Put every Redis key under this prefix (global_keyprefix), to share a server.",
)
@click.option(
    "--keep", is_flag=True, help="Keep the temporary directory (broker file, worker log)."
)
def demo(demo_broker: str | None, key_prefix: str | None, keep: bool) -> None:
    """Run the seed tutorials' scenarios (on the embedded SQLite store) and print the results."""
    workdir = Path(tempfile.mkdtemp(prefix="celeriac-demo-"))
    broker = demo_broker or f"sqlite:///{workdir / 'demo.sqlite'}"
    os.environ["CELERIAC_BROKER_URL"] = broker
    if key_prefix:  # read by celeriac.demo.tasks, here and in the worker process
        os.environ["CELERIAC_DEMO_KEY_PREFIX"] = key_prefix
    where = "embedded SQLite, no server" if demo_broker is None else "as given"
    click.echo(f"broker: {mask_url(broker)}  ({where})")
    worker = _start_worker(broker, workdir)
    failures = 0
    try:
        for title, run, check in _scenarios():
            started = time.perf_counter()
            try:
                value = run()
                ok = check(value)
            except Exception as exc:
                value, ok = mask_url(f"{type(exc).__name__}: {exc}"), False
            failures += not ok
            mark = "ok " if ok else "FAIL"
            click.echo(f"[{mark}] {title}: {value!r}  ({time.perf_counter() - started:.2f}s)")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
        click.echo(
            f"worker stopped with a warm shutdown (exit {code}); log: {workdir / 'worker.log'}"
        )
        if failures or code:
            click.echo(mask_url((workdir / "worker.log").read_text(errors="replace")[-4000:]))
    if not keep and not failures:
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        raise SystemExit(f"{failures} scenario(s) failed")
    click.echo("all scenarios passed")
