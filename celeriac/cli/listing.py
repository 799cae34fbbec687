"""``celeriac list bindings``: the queues, exchanges and routing keys the app declares.

Celery asks the broker (RabbitMQ's management plugin) for every binding of the vhost;
celeriac prints the bindings its own declarations make: every queue of ``task_queues``
(or the default queue), with Celery's defaults filled in, which is what a worker of this
app binds. ``rabbitmqctl list_bindings -p <vhost>`` shows everything on the server.
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["list_"]


def _row(queue: str, exchange: str, routing_key: str) -> str:
    return f"{queue:<28} {exchange:<28} {routing_key}"


@click.group(name="list")
def list_() -> None:
    """Show information about the app's broker set-up."""


@list_.command()
@click.pass_obj
def bindings(obj: Any, /) -> None:
    """Show the queue bindings this app declares (Celery's table)."""
    router = obj.app.router
    click.echo(_row("Queue", "Exchange", "Routing Key"))
    click.echo(_row("-" * 16, "-" * 16, "-" * 16))
    for spec in router.consume_specs(None):
        exchange = spec.exchange or "(default)"
        click.echo(_row(spec.name, f"{exchange}({spec.exchange_type})", spec.routing_key))
