"""``celeriac migrate SOURCE DESTINATION``: move waiting task messages to another broker.

As Celery's: the messages of the source's queues (``-Q``, else the app's queues) are
published to the destination, unchanged, to the same queue; ``-T`` moves only the tasks
named; ``-n`` stops after that many; ``-t`` is how long an empty source is waited for
(``-F``: forever). Without ``--ack-messages`` the source keeps its copies (Celery's
default: the messages are put back when the command ends); with it they are removed once
the destination has them. The two URLs may use any of celeriac's transports.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click

from celeriac.app import Celery
from celeriac.transport import Delivery, Outgoing

__all__ = ["migrate", "migrate_messages"]


async def migrate_messages(
    app: Any,
    source: str,
    destination: str,
    *,
    queues: list[str],
    tasks: set[str],
    limit: int | None,
    timeout: float,
    forever: bool,
    ack: bool,
) -> int:
    """Move the messages; return how many were moved."""
    source_app = Celery("migrate-source", broker=source, set_as_current=False)
    target_app = Celery("migrate-target", broker=destination, set_as_current=False)
    for target in (source_app, target_app):
        target.conf.update(app.conf.without_defaults())
        target.conf["broker_url"] = source if target is source_app else destination
    src = await source_app.aget_transport()
    dst = await target_app.aget_transport()
    specs = source_app.router.consume_specs(queues or None)
    names = [spec.name for spec in specs]
    await dst.declare(specs)
    moved = 0
    held: list[Delivery] = []
    try:
        while limit is None or moved < limit:
            room = 100 if limit is None else min(100, limit - moved)
            deliveries = await src.fetch(names, limit=room, timeout=timeout)
            if not deliveries:
                if forever:
                    continue
                break
            chosen = [d for d in deliveries if not tasks or d.envelope.headers.get("task") in tasks]
            others = [d for d in deliveries if d not in chosen]
            held += others
            if chosen:
                await dst.publish([Outgoing(d.envelope, "", d.queue) for d in chosen])
                if ack:
                    await src.ack(chosen)
                else:
                    held += chosen
            for delivery in chosen:
                moved += 1
                headers = delivery.envelope.headers
                click.echo(f"Migrating task {moved} {headers.get('task')}[{headers.get('id')}]")
            if not chosen and len(deliveries) < room:
                break  # only other tasks are left
    finally:
        if held:
            await src.reject(held, requeue=True)
        await source_app.aclose()
        await target_app.aclose()
    return moved


@click.command()
@click.argument("source")
@click.argument("destination")
@click.option("-n", "--limit", type=click.IntRange(min=1), help="Move at most this many.")
@click.option(
    "-t", "--timeout", type=float, default=1.0, show_default=True, help="Wait for messages."
)
@click.option("-a", "--ack-messages", is_flag=True, help="Remove them from the source.")
@click.option("-T", "--tasks", default="", help="Comma-separated task names to move.")
@click.option("-Q", "--queues", default="", help="Comma-separated queues (default: the app's).")
@click.option("-F", "--forever", is_flag=True, help="Keep moving until interrupted.")
@click.pass_obj
def migrate(
    obj: Any,
    /,
    source: str,
    destination: str,
    limit: int | None,
    timeout: float,
    ack_messages: bool,
    tasks: str,
    queues: str,
    forever: bool,
) -> None:
    """Move task messages from broker SOURCE to broker DESTINATION."""
    moved = asyncio.run(
        migrate_messages(
            obj.app,
            source,
            destination,
            queues=[q.strip() for q in queues.split(",") if q.strip()],
            tasks={t.strip() for t in tasks.split(",") if t.strip()},
            limit=limit,
            timeout=timeout,
            forever=forever,
            ack=ack_messages,
        )
    )
    click.echo(f"Migrated {moved} message{'s' if moved != 1 else ''}.")
