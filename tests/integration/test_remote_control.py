"""Remote control of a real worker process through the ``celeriac`` command line.

One worker per broker for the whole module (SQLite, Redis; RabbitMQ in its own vhost),
with the processes pool, so ``terminate`` kills a real child. Everything goes through the
CLI a user would type: ``call``, ``inspect``, ``control``, ``status``, ``result``.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from celeriac import Celery
from tests.integration.control_cluster import NAME, Cluster
from tests.integration.control_cluster import cluster as running
from tests.services import redis_client

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module", params=["sqlite", "redis", "amqp"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with running(request.param, tmp_path_factory.mktemp(request.param)) as here:
        yield here


def test_status_and_ping(cluster: Cluster) -> None:
    status = cluster.cli("status", "-t", "2", "-d", NAME)
    assert status.returncode == 0, status.stderr
    assert f"->  {NAME}: OK" in status.stdout
    assert "1 node online." in status.stdout
    ping = cluster.cli("inspect", "ping", "-t", "2", "-d", f"{NAME},ghost@nowhere")
    assert f"->  {NAME}: OK\n        pong" in ping.stdout
    assert "No reply from: ghost@nowhere" in ping.stderr
    silent = cluster.cli("inspect", "ping", "-t", "0.5", "-d", "ghost@nowhere")
    assert silent.returncode == 69
    assert "No nodes replied within time constraint" in silent.stderr
    assert "No reply from: ghost@nowhere" in silent.stderr


def test_inspect_shapes(cluster: Cluster) -> None:
    stats = cluster.json("inspect", "stats")[NAME]
    assert stats["pool"]["max-concurrency"] == 2
    assert len(stats["pool"]["processes"]) == 2
    assert cluster.json("inspect", "registered")[NAME] == [
        "ctl.add",
        "ctl.sleep [rate_limit=100/s]",
    ]
    assert [q["name"] for q in cluster.json("inspect", "active_queues")[NAME]] == ["celery"]
    assert cluster.json("inspect", "reserved") == {NAME: []}
    assert "software ->" in cluster.json("inspect", "report")[NAME]["ok"]


def test_pool_grow_and_shrink(cluster: Cluster) -> None:
    def pool() -> tuple[int, int]:
        stats = cluster.json("inspect", "stats")[NAME]
        return stats["pool"]["max-concurrency"], len(stats["pool"]["processes"])

    assert cluster.json("control", "pool_grow", "1") == {NAME: {"ok": "pool will grow"}}
    assert pool() == (3, 3)
    assert cluster.json("control", "pool_shrink", "1") == {NAME: {"ok": "pool will shrink"}}
    deadline = time.monotonic() + 20
    while pool() != (2, 2):
        assert time.monotonic() < deadline, pool()
    assert cluster.json("inspect", "stats")[NAME]["prefetch_count"] == 2 * 4


def test_terminate_kills_the_running_task(cluster: Cluster) -> None:
    task_id = cluster.cli("call", "ctl.sleep", "-a", "[60]").stdout.strip()
    deadline = time.monotonic() + 20
    active: list[dict[str, Any]] = []
    while not active and time.monotonic() < deadline:
        active = cluster.json("inspect", "active")[NAME]
    assert [a["id"] for a in active] == [task_id]
    pids = cluster.json("inspect", "stats")[NAME]["pool"]["processes"]
    assert active[0]["worker_pid"] in pids
    reply = cluster.json("control", "terminate", "KILL", task_id)
    assert reply == {NAME: {"ok": f"terminate: {task_id}"}}
    result = cluster.cli("result", task_id, "--wait", "--timeout", "20")
    assert result.stdout.startswith("REVOKED"), result.stdout + result.stderr
    assert task_id in cluster.json("inspect", "revoked")[NAME]


def test_revoke_terminate_of_a_finished_task_says_it_was_not_running(cluster: Cluster) -> None:
    task_id = cluster.cli("call", "ctl.add", "-a", "[1, 2]").stdout.strip()
    assert cluster.cli("result", task_id, "--wait", "--timeout", "20").stdout.strip() == "3"
    done = cluster.cli("control", "revoke", task_id, "--terminate", "-d", NAME, "-t", "5")
    assert "not running" in done.stdout, done.stdout + done.stderr


def test_rate_limit_and_consumers(cluster: Cluster) -> None:
    assert cluster.json("control", "rate_limit", "ctl.add", "7/s") == {
        NAME: {"ok": "new rate limit set successfully"}
    }
    assert "ctl.add [rate_limit=7/s]" in cluster.json("inspect", "registered")[NAME]
    assert cluster.json("control", "add_consumer", "extra") == {NAME: {"ok": "add consumer extra"}}
    task_id = cluster.cli("call", "ctl.add", "-a", "[2, 5]", "--queue", "extra").stdout.strip()
    assert cluster.cli("result", task_id, "--wait", "--timeout", "20").stdout.strip() == "7"
    assert cluster.json("control", "cancel_consumer", "extra") == {
        NAME: {"ok": "no longer consuming from extra"}
    }


def test_unknown_commands_are_refused_by_the_cli(cluster: Cluster) -> None:
    done = cluster.cli("inspect", "frobnicate")
    assert done.returncode == 2
    assert "Command frobnicate not recognized" in done.stderr


def _bindings(cluster: Cluster) -> Any:
    """Everything on the broker that a control client could leave behind."""
    url = cluster.env["CONTROL_URL"]
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return sorted(db.execute("SELECT exchange, queue, routing_key FROM celeriac_bindings"))
    if url.startswith("redis"):
        client = redis_client()
        try:
            found: dict[str, Any] = {}
            for key in client.scan_iter(cluster.env["CONTROL_PREFIX"] + "*"):
                kind = client.type(key).decode()
                if kind == "set":
                    found[key.decode()] = client.smembers(key)
                elif kind == "hash":
                    found[key.decode()] = set(client.hkeys(key))
                elif kind != "string":  # liveness keys: refreshed, same names
                    found[key.decode()] = kind
            return found
        finally:
            client.close()
    vhost = urlsplit(url).path.lstrip("/")
    listed = subprocess.run(
        ["rabbitmqctl", "list_bindings", "-p", vhost, "-q", "source_name", "destination_name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return sorted(listed.stdout.splitlines())


def test_control_clients_leave_no_reply_binding(cluster: Cluster) -> None:
    before = _bindings(cluster)
    for _ in range(3):  # each CLI run is a new client, with a reply queue of its own
        assert cluster.cli("inspect", "ping", "-d", NAME, "-t", "2").returncode == 0
    app = Celery("ctl", broker=cluster.env["CONTROL_URL"], set_as_current=False)
    if cluster.env["CONTROL_PREFIX"]:
        app.conf.broker_transport_options = {"global_keyprefix": cluster.env["CONTROL_PREFIX"]}
    assert app.control.ping(destination=[NAME], timeout=2) == [{NAME: {"ok": "pong"}}]
    app.close()
    assert _bindings(cluster) == before


def test_shutdown(cluster: Cluster) -> None:
    """Last: the worker stops warm, exit status 0, as after SIGTERM."""
    done = cluster.cli("control", "shutdown", "-d", NAME, "-t", "0.5")
    assert done.returncode == 69  # Celery's workers do not answer a shutdown either
    deadline = time.monotonic() + 30
    while cluster.cli("inspect", "ping", "-d", NAME, "-t", "0.5").returncode == 0:
        assert time.monotonic() < deadline, "still answering after shutdown"
    assert "Got shutdown from remote" in cluster.log.read_text()
