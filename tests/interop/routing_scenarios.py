"""Routing scenarios run by the real Celery and by celeriac, one vhost each, to compare.

``python routing_scenarios.py <celery|celeriac> <amqp url> <scenario>`` configures an app the
same way on either library, declares what a worker declares, publishes the scenario's
calls and exits. The test then compares the vhosts' bindings and queue depths.
"""

from __future__ import annotations

import sys
from typing import Any

LIB, URL, SCENARIO = sys.argv[1], sys.argv[2], sys.argv[3]

if LIB == "celery":
    from celery import Celery
    from kombu import Exchange, Queue
    from kombu.common import Broadcast
else:
    from celeriac import Celery
    from celeriac.routing import Broadcast, Exchange, Queue

app: Any = Celery("routing", broker=URL)


@app.task(name="routing.add")
def add(x: int, y: int) -> int:
    return x + y


def seed002() -> None:
    """The configuration of seed 002: two queues on their own exchanges, default 'default'."""
    app.conf.task_queues = (
        Queue("default", exchange=Exchange("default", type="direct"), routing_key="default"),
        Queue(
            "high_priority",
            exchange=Exchange("custom", type="direct"),
            routing_key="high_priority",
        ),
    )
    app.conf.task_default_exchange = "default"
    app.conf.task_default_exchange_type = "direct"
    app.conf.task_default_routing_key = "default"
    declare_worker()
    add.delay(1, 2)
    add.apply_async((1, 2), queue="default")
    add.apply_async((1, 2), exchange="default", routing_key="default")
    add.apply_async((1, 2), queue="high_priority")


def defaults_only() -> None:
    """No task_queues: the default queue takes task_default_exchange and routing key."""
    app.conf.task_default_exchange = "ex"
    app.conf.task_default_routing_key = "rk"
    declare_worker()
    add.delay(1, 2)
    add.apply_async((1, 2), queue="other")
    add.apply_async((1, 2), exchange="ex", routing_key="rk")


def bare_queues() -> None:
    """Queues given without an exchange or key, a topic queue, and a fanout call."""
    app.conf.task_queues = (
        Queue("bare"),
        Queue("news", Exchange("news", type="topic"), routing_key="news.#"),
    )
    declare_worker()
    add.apply_async((1, 2), queue="bare")
    add.apply_async((1, 2), queue="news")
    add.apply_async((1, 2), queue="news", routing_key="news.sport")
    add.apply_async((1, 2), exchange=Exchange("fan", type="fanout"), routing_key="")
    add.apply_async((1, 2), exchange="news", routing_key="news.x")


def broadcast() -> None:
    """A Broadcast queue: declared per worker (auto-delete) on a fanout exchange."""
    app.conf.task_queues = (Queue("celery"), Broadcast("everyone"))
    declare_worker()
    add.apply_async((1, 2), queue="everyone")


def worker_direct() -> None:
    """worker_direct: the worker also declares <hostname>.dq2 bound to C.dq2."""
    app.conf.worker_direct = True
    declare_worker(hostname="w1@example")
    add.apply_async((1, 2), exchange="C.dq2", routing_key="w1@example")


def declare_worker(hostname: str = "w1@example") -> None:
    """Declare what a worker with no -Q declares, through each library's own worker code."""
    if LIB == "celery":
        from celery.utils.nodenames import worker_direct as direct_queue

        queues = app.amqp.queues
        if app.conf.worker_direct:
            queues.select_add(direct_queue(hostname))
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            for queue in queues.consume_from.values():
                queue(channel).declare()
        return
    from celeriac.worker.worker import Worker, WorkerOptions

    worker = Worker(app, WorkerOptions(hostname=hostname))

    async def declare() -> None:
        transport = await app.aget_transport()
        await transport.declare(worker.queues)

    app.run_sync(declare())


if __name__ == "__main__":
    {
        "seed002": seed002,
        "defaults_only": defaults_only,
        "bare_queues": bare_queues,
        "broadcast": broadcast,
        "worker_direct": worker_direct,
    }[SCENARIO]()
    if LIB != "celery":
        app.close()
