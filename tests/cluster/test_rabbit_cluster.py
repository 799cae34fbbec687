"""celeriac on a 3-node RabbitMQ cluster with quorum queues, started by this module.

One cluster for the whole module (:mod:`tests.cluster.rabbit_cluster`: nodes ``r25a``-``r25c``,
AMQP 5681-5683), stopped in teardown even when a test fails. The fault test publishes tasks with
publisher confirms to a quorum queue, runs a real ``celeriac worker`` on a failover URL list,
SIGKILLs the node the worker is connected to mid-run and reports lost and duplicated executions
and the time until tasks run again (printed, never asserted on).
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import celery
import pytest
from kombu import Queue

from celeriac import Celery
from celeriac.engines.amqp.broker import AMQPTransport
from celeriac.engines.amqp.connection import AMQPOptions, Session
from tests.cluster import rabbit_app
from tests.cluster.rabbit_cluster import NODES, RabbitCluster3
from tests.services import running_celeriac

pytestmark = pytest.mark.timeout(150)

DEAD = "amqp://guest:guest@127.0.0.1:5689//"
"""A port nobody listens on, first in the failover lists (logged once, then skipped)."""

FAULT_TASKS = 10_000
"""Tasks of the fault test."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster3]:
    topology = RabbitCluster3(tmp_path_factory.mktemp("rabbit-cluster"))
    try:
        yield topology.start()
    finally:
        topology.stop()


def _queue_types(cluster: RabbitCluster3, index: int) -> dict[str, str]:
    out = cluster.ctl(index, "list_queues", "name", "type", "--no-table-headers", "-q")
    return dict(line.split("\t", 1) for line in out.strip().splitlines() if "\t" in line)


def test_three_nodes_form_one_cluster(cluster: RabbitCluster3) -> None:
    assert sorted(cluster.running_nodes(2)) == sorted(NODES)


def test_default_queue_type_and_queue_arguments_declare_quorum_queues(
    cluster: RabbitCluster3,
) -> None:
    app = Celery("quorum", broker=cluster.urls())
    app.conf.task_default_queue = "r25.default-q"
    app.conf.task_default_queue_type = "quorum"
    app.send_task("nothing.here", args=(1,))
    other = Celery("quorum2", broker=cluster.urls())
    other.conf.task_queues = [
        Queue("r25.explicit-q", queue_arguments={"x-queue-type": "quorum"}),
        Queue("r25.classic-q"),
    ]
    other.send_task("nothing.here", queue="r25.explicit-q")
    other.send_task("nothing.here", queue="r25.classic-q")
    types = _queue_types(cluster, 1)  # seen from another node of the cluster
    assert types["r25.default-q"] == "quorum"
    assert types["r25.explicit-q"] == "quorum"
    assert types["r25.classic-q"] == "classic"


def test_a_bad_queue_type_or_strategy_is_refused_naming_the_setting(
    cluster: RabbitCluster3,
) -> None:
    app = Celery("bad", broker=cluster.urls())
    app.conf.task_default_queue_type = "stream"
    with pytest.raises(ValueError, match="task_default_queue_type"):
        app.send_task("nothing.here")
    with pytest.raises(Exception, match="broker_failover_strategy"):
        AMQPTransport(cluster.urls(), options={"failover_strategy": "nearest"})


async def test_an_unreachable_url_is_skipped_and_logged_once(
    cluster: RabbitCluster3, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="celeriac.engines.amqp.broker")

    async def nothing() -> None:
        return None

    session = Session(f"{DEAD};{cluster.url(1)}", AMQPOptions(), "r25-failover", nothing)
    try:
        for _ in range(3):
            connection = await session.connection()
            assert session.url == cluster.url(1)
            await connection.close()  # lost: the next use goes through the list again
    finally:
        await session.close()
    ours = [r for r in caplog.records if r.name.startswith("celeriac")]  # aiormq logs too
    unreachable = [r for r in ours if "5689" in r.getMessage()]
    assert len(unreachable) == 1, [r.getMessage() for r in caplog.records]


def _runs(record: Path) -> collections.Counter[int]:
    counts: collections.Counter[int] = collections.Counter()
    if record.exists():
        for line in record.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] == "run":
                counts[int(parts[1])] += 1
    return counts


def _leader(cluster: RabbitCluster3, index: int, queue: str) -> str:
    """The node leading quorum queue ``queue``, as node ``index`` sees it."""
    out = cluster.ctl(index, "list_queues", "name", "leader", "--no-table-headers", "-q")
    found = dict(line.split("\t", 1) for line in out.strip().splitlines() if "\t" in line)
    return found.get(queue, "?")


def _connected_node(cluster: RabbitCluster3, name: str) -> int | None:
    """Index of the node holding a client connection called ``name`` (prefix)."""
    for index in range(3):
        try:
            out = cluster.ctl(index, "list_connections", "client_properties", "-q", timeout=20)
        except Exception:
            continue
        if name in out:
            return index
    return None


def test_a_countdown_to_a_quorum_queue_runs_when_due(
    cluster: RabbitCluster3, tmp_path: Path
) -> None:
    urls = cluster.urls((1, 2, 0))
    rabbit_app.app.conf.broker_url = urls
    record = tmp_path / "runs.log"
    env = {"RABBIT_CLUSTER_URLS": urls, "RABBIT_CLUSTER_RECORD": str(record)}
    args = ["-A", "tests.cluster.rabbit_app", "worker", "-c", "1", "-P", "threads",
            "-n", "r25-eta@%h", "-l", "info", "-Q", "r25.quorum,r25.topic-q"]  # fmt: skip
    log = tmp_path / "worker.log"
    celery_client = celery.Celery("r25-celery-client", broker=cluster.url(2))
    celery_client.conf.task_queues = rabbit_app.TOPIC_QUEUES
    with running_celeriac(args, log, env):
        deadline = time.monotonic() + 30
        while "ready" not in log.read_text():  # bound: Celery's delayed topology declared
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        sent = time.time()
        rabbit_app.record.apply_async((-1,), countdown=2)
        # a real Celery client: the native delayed delivery exchanges (celery_delayed_27 ...)
        celery_client.send_task(
            "tests.cluster.rabbit_app.record", args=(-2,), countdown=2, queue="r25.topic-q"
        )
        while len(_runs(record)) < 2:
            assert time.monotonic() < deadline + 30, log.read_text()[-3000:]
            time.sleep(0.1)
    ran = {int(line.split()[1]): float(line.split()[3]) for line in record.read_text().splitlines()}
    print(
        f"\ncountdown=2 on a quorum queue ran after {ran[-1] - sent:.2f} s (celeriac client), "
        f"{ran[-2] - sent:.2f} s (Celery client, native delayed delivery)"
    )
    assert min(ran.values()) >= sent + 2  # never early
    assert _runs(record) == {-1: 1, -2: 1}
    types = _queue_types(cluster, 0)
    assert types["celery_delayed_27"] == types["celery_delayed_0"] == "quorum"


def test_a_celeriac_countdown_to_a_quorum_queue_is_run_by_a_celery_worker(
    cluster: RabbitCluster3, tmp_path: Path
) -> None:
    url = cluster.url(1)
    rabbit_app.app.conf.broker_url = url
    record = tmp_path / "runs.log"
    log = tmp_path / "celery.log"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "RABBIT_CLUSTER_URLS": url,
           "RABBIT_CLUSTER_RECORD": str(record)}  # fmt: skip
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.cluster.rabbit_celery_app", "worker",
             "-P", "solo", "-Q", "r25.topic-q", "--without-mingle", "--without-gossip",
             "--without-heartbeat", "-l", "info"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        sent = time.time()
        rabbit_app.record.apply_async((-3,), countdown=2, queue="r25.topic-q")
        while not _runs(record):
            assert time.monotonic() < deadline + 30, log.read_text()[-3000:]
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGQUIT)  # cold shutdown: nothing is running by now
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    ran = float(record.read_text().split()[3])
    print(f"\ncelery worker ran celeriac's countdown=2 after {ran - sent:.2f} s")
    assert ran >= sent + 2
    assert _runs(record) == {-3: 1}
    assert "PRECONDITION" not in log.read_text()  # its delayed topology agreed with ours


# Publishing 10,000 confirmed tasks, running them around a node's death and stopping the
# module's cluster after it (its teardown) take well over the module's 150 s on a busy machine.
@pytest.mark.timeout(300)
def test_killing_the_workers_node_loses_no_confirmed_task(
    cluster: RabbitCluster3, tmp_path: Path
) -> None:
    # leader on node a: the producer declares the queue through it
    urls = f"{DEAD};{cluster.urls((0, 1, 2))}"
    rabbit_app.app.conf.broker_url = urls
    started = time.monotonic()
    for n in range(FAULT_TASKS):
        rabbit_app.record.delay(n)  # returns once the broker confirmed the publish
    publish_s = time.monotonic() - started
    record = tmp_path / "runs.log"
    env = {"RABBIT_CLUSTER_URLS": urls, "RABBIT_CLUSTER_RECORD": str(record)}
    args = ["-A", "tests.cluster.rabbit_app", "worker", "-c", "4", "-P", "threads",
            "-n", "r25-fault@%h", "-l", "info"]  # fmt: skip
    log = tmp_path / "worker.log"
    with running_celeriac(args, log, env) as worker:
        deadline = time.monotonic() + 60
        while sum(_runs(record).values()) < FAULT_TASKS // 5:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        victim = _connected_node(cluster, f"celeriac-{worker.pid}")
        assert victim is not None, "the worker's connection is on no node"
        leader = _leader(cluster, victim, "r25.quorum")
        before = sum(_runs(record).values())
        cut = time.time()
        cluster.kill(victim)
        recovered_at: float | None = None
        deadline = time.monotonic() + 90
        while len(_runs(record)) < FAULT_TASKS and time.monotonic() < deadline:
            time.sleep(0.2)
            if recovered_at is None:
                stamps = [float(line.split()[3]) for line in record.read_text().splitlines()]
                late = [s for s in stamps if s > cut + 0.5]
                if late:
                    recovered_at = min(late)
        time.sleep(2)  # let redeliveries of the cut land before counting
    runs = _runs(record)
    lost = FAULT_TASKS - len(runs)
    duplicated = sum(runs.values()) - len(runs)
    first_run: dict[int, float] = {}
    for line in record.read_text().splitlines():
        first_run.setdefault(int(line.split()[1]), float(line.split()[3]))
    # how long before the cut the duplicated tasks had first run: their acks were in flight
    earliest = min((first_run[n] - cut for n, c in runs.items() if c > 1), default=0.0)
    recover = None if recovered_at is None else recovered_at - cut
    print(
        f"\nrabbit cluster fault: tasks={FAULT_TASKS} publish_s={publish_s:.1f} "
        f"run_before_kill={before} lost={lost} duplicated={duplicated} "
        f"recover_s={recover if recover is None else round(recover, 2)} "
        f"duplicates_first_ran_from_s={earliest:.2f} killed={NODES[victim]} "
        f"queue_leader={leader}"
    )
    assert lost == 0, log.read_text()[-3000:]
