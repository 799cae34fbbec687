"""Celery commands that celeriac does not have, each answering with what to use instead.

They exist so that a script calling them gets one clear line and exit status 2, not
"No such command".
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["UNSUPPORTED", "unsupported_commands"]

UNSUPPORTED = {
    "amqp": (
        "Celery's AMQP shell is not supported: use rabbitmqadmin or rabbitmqctl "
        "(list_queues, list_bindings, purge_queue) against the broker"
    ),
    "graph": (
        "celeriac has no bootsteps to graph; `celeriac report` shows the set-up and "
        "`celeriac list bindings` the queues"
    ),
    "logtool": (
        "logtool is not supported: grep the worker log (lines 'Task <name>[<id>] "
        "succeeded/raised/retry') or use `celeriac events`"
    ),
}
"""Command name → the message that says what to use instead."""


def _refusing(name: str, message: str) -> click.Command:
    @click.command(
        name=name,
        help=f"Not supported: {message.split(': ', 1)[-1]}",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> Any:
        raise click.UsageError(message)

    return command


def unsupported_commands() -> list[click.Command]:
    """One refusing command per entry of :data:`UNSUPPORTED`."""
    return [_refusing(name, message) for name, message in UNSUPPORTED.items()]
