"""A broker and one worker process for the remote-control tests, driven through a CLI.

:func:`cluster` starts a ``celeriac`` (``control_app``) or a ``celery``
(``control_celery_app``) worker named :data:`NAME` on a fresh broker and waits until it
answers a ping; :class:`Cluster` runs either command line against it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from tests.services import (
    REDIS_URL,
    amqp_vhost,
    amqp_vhost_url,
    delete_prefixed,
    key_prefix,
    redis_client,
)

__all__ = ["NAME", "Cluster", "cluster"]

ROOT = Path(__file__).resolve().parents[2]
APPS = {
    "celeriac": "tests.integration.control_app",
    "celery": "tests.integration.control_celery_app",
}
NAME = "ctl-worker@test"
Tool = Literal["celeriac", "celery"]


class Cluster:
    """The environment of one broker and its worker."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log

    def cli(
        self, *args: str, tool: Tool = "celeriac", timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``<tool> -A <its app> ARGS``."""
        return subprocess.run(
            [sys.executable, "-m", tool, "-A", APPS[tool], *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def json(self, *args: str, tool: Tool = "celeriac") -> Any:
        """The ``-j`` output of an inspect/control command to the worker."""
        done = self.cli(*args, "-j", "-d", NAME, "-t", "5", tool=tool)
        assert done.returncode == 0, done.stderr + done.stdout
        return json.loads(done.stdout.strip().splitlines()[-1])


@contextmanager
def _broker(kind: str, tmp: Path) -> Iterator[tuple[str, str]]:
    """(broker URL, Redis key prefix) of a fresh broker of ``kind``."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'broker.sqlite'}", ""
    elif kind == "redis":
        client = redis_client()
        prefix = key_prefix("ctl")
        try:
            yield REDIS_URL, prefix
        finally:
            delete_prefixed(client, prefix)
            client.close()
    else:
        with amqp_vhost() as vhost:
            yield amqp_vhost_url(vhost), ""


@contextmanager
def cluster(kind: str, tmp: Path, worker: Tool = "celeriac") -> Iterator[Cluster]:
    """A fresh ``kind`` broker with a ``worker`` worker process answering; stopped after."""
    with _broker(kind, tmp) as (url, prefix):
        env = {
            **os.environ,
            "CONTROL_URL": url,
            "CONTROL_PREFIX": prefix,
            "CONTROL_BACKEND": f"sqlite:///{tmp / 'results.sqlite'}",
            "PYTHONPATH": str(ROOT),
        }
        log = tmp / f"{worker}-worker.log"
        pool = ["-c", "2", "-P", "prefork"] if worker == "celeriac" else ["-P", "solo"]
        command = [sys.executable, "-m", worker, "-A", APPS[worker], "worker", "-n", NAME]
        proc = subprocess.Popen(
            [*command, *pool, "-l", "info"],
            env=env,
            cwd=ROOT,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        here = Cluster(env, log)
        try:
            _wait_online(here, proc)
            yield here
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_online(cluster: Cluster, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise AssertionError(f"worker exited: {cluster.log.read_text()[-3000:]}")
        if cluster.cli("inspect", "ping", "-d", NAME, "-t", "1").returncode == 0:
            return
    raise AssertionError(f"worker never answered: {cluster.log.read_text()[-3000:]}")
