"""``celeriac -A proj flower [flower options]``: the real Flower, watching celeriac workers.

Runs ``celery -A celeriac.contrib.flower:app flower <options>`` in place of this process
(see :mod:`celeriac.contrib.flower`); every option after ``flower`` is Flower's own
(``--port=5555``, ``--basic-auth=…``, ``--url-prefix=…``). Needs ``pip install flower``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

import click

__all__ = ["flower"]

#: Brokers Flower can reach: Celery's own transports (not celeriac's SQLite or memory ones).
FLOWER_SCHEMES = ("redis", "rediss", "sentinel", "amqp", "amqps", "pyamqp")


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def flower(obj: Any, /, flower_args: tuple[str, ...]) -> None:
    """Start Flower (pip install flower) on this app's broker and result backend."""
    if importlib.util.find_spec("flower") is None:
        raise click.ClickException(
            "Flower is not installed: pip install flower (or use `celeriac web`, the built-in "
            "dashboard)"
        )
    scheme = obj.app.broker_url.partition("://")[0]
    if scheme not in FLOWER_SCHEMES:
        raise click.ClickException(
            f"Flower needs a Redis or RabbitMQ broker; this app's is {scheme}:// "
            "(`celeriac web` works on every broker)"
        )
    env = {**os.environ, "CELERIAC_FLOWER_APP": obj.app_spec or ""}
    if obj.broker:
        env["CELERIAC_FLOWER_BROKER"] = obj.broker
    if obj.backend:
        env["CELERIAC_FLOWER_BACKEND"] = obj.backend
    argv = [sys.executable, "-m", "celery", "-A", "celeriac.contrib.flower:app", "flower"]
    sys.stdout.flush()
    os.execve(sys.executable, [*argv, *flower_args], env)
