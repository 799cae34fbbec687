"""What ``celeriac worker`` does with its flags before the worker runs.

The order is Celery's: umask, detach, pid file, log file, privileges; then the flags that
are settings (``-I``, ``-E``, ``--statedb``, ``--disable-prefetch``) are applied to the app,
``--purge`` empties the queues, and the worker starts.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, fields
from typing import Any

import click

from celeriac.beat.foreign import is_native
from celeriac.cli.daemon import (
    Pidfile,
    detach,
    drop_privileges,
    expand_node_format,
    parse_umask,
    prepare_logfile,
)
from celeriac.conf.defaults import default_concurrency
from celeriac.worker.logging import setup_logging
from celeriac.worker.supervisor import run_loops, run_slots
from celeriac.worker.worker import Worker, WorkerOptions, expand_hostname

__all__ = ["WorkerFlags", "parse_autoscale", "run_worker", "slot_count", "uses_slots"]

logger = logging.getLogger("celeriac.worker")


@dataclass
class WorkerFlags:
    """The options of ``celeriac worker``, as Click parsed them."""

    loglevel: str = "WARNING"
    log_format: str | None = None
    concurrency: int | None = None
    queues: str = ""
    exclude_queues: str = ""
    include: str = ""
    hostname: str | None = None
    pool: str | None = None
    autoscale: tuple[int, int] | None = None
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    prefetch_multiplier: int | None = None
    disable_prefetch: bool = False
    async_concurrency: int = 100
    purge_first: bool = False
    pidfile: str | None = None
    logfile: str | None = None
    detach: bool = False
    uid: str | None = None
    gid: str | None = None
    umask: str | None = None
    statedb: str | None = None
    task_events: bool = False
    optimization: str | None = None
    heartbeat_interval: float | None = None
    without_heartbeat: bool = False
    without_gossip: bool = False
    without_mingle: bool = False
    embed_beat: bool = False
    schedule: str | None = None
    scheduler: str | None = None
    pool_start_method: str | None = None
    executable: str | None = None
    loops: int = 1


def parse_autoscale(
    value: str | None, ctx: click.Context | None = None, param: click.Parameter | None = None
) -> tuple[int, int] | None:
    """``--autoscale MAX,MIN`` (or ``MAX``: MIN 0) as Celery reads it, largest first."""
    if not value:
        return None
    try:
        numbers = sorted((int(part) for part in value.split(",")), reverse=True)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected MAX,MIN, e.g. 10,3", ctx, param) from None
    if len(numbers) not in (1, 2) or numbers[0] < 1 or numbers[-1] < 0:
        raise click.BadParameter(f"{value!r}: expected MAX,MIN with MAX >= 1", ctx, param)
    return numbers[0], numbers[1] if len(numbers) == 2 else 0


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _become_daemon(app: Any, flags: WorkerFlags, nodename: str) -> None:
    umask = parse_umask(flags.umask)
    if umask is not None:
        os.umask(umask)
    if flags.detach:
        detach()
    if flags.pidfile:
        Pidfile(expand_node_format(flags.pidfile, nodename)).acquire()
    drop_privileges(app, flags.uid, flags.gid)


def _apply_settings(app: Any, flags: WorkerFlags) -> None:
    """The flags that are settings, as Celery maps them."""
    conf = app.conf
    if flags.log_format:
        conf["worker_log_format_type"] = flags.log_format.lower()
    if flags.include:
        conf["include"] = [*conf["include"], *_split(flags.include)]
    if flags.statedb:
        conf["worker_state_db"] = flags.statedb
    if flags.disable_prefetch:
        conf["worker_disable_prefetch"] = True
    if flags.max_memory_per_child:
        conf["worker_max_memory_per_child"] = flags.max_memory_per_child
    if flags.schedule:
        conf["beat_schedule_store"] = flags.schedule
    if flags.scheduler:
        if not is_native(flags.scheduler):
            raise click.UsageError(
                f"-S {flags.scheduler}: a worker's embedded beat (-B) runs celeriac's own "
                "scheduler; run `celeriac beat -S ...` as its own process for another class"
            )
        conf["beat_scheduler"] = flags.scheduler
    if flags.executable:
        logger.warning("--executable has no effect: celeriac's --detach forks this process")


def _purge(app: Any, names: list[str]) -> None:
    async def run() -> int:
        transport = await app.aget_transport()
        return int(await transport.purge(names))

    count = app.run_sync(run())
    click.echo(f"purge: Erased {count} message{'s' if count != 1 else ''} from the queues.")


def worker_options(flags: WorkerFlags) -> WorkerOptions:
    """The WorkerOptions the flags ask for."""
    options = WorkerOptions(
        hostname=flags.hostname,
        queues=_split(flags.queues),
        exclude_queues=_split(flags.exclude_queues),
        concurrency=flags.concurrency,
        pool=flags.pool,
        prefetch_multiplier=flags.prefetch_multiplier,
        max_tasks_per_child=flags.max_tasks_per_child,
        time_limit=flags.time_limit,
        soft_time_limit=flags.soft_time_limit,
        async_concurrency=flags.async_concurrency,
        beat=flags.embed_beat,
    )
    options.task_events = flags.task_events or None  # None: worker_send_task_events
    options.heartbeat = not flags.without_heartbeat
    known = {field.name for field in fields(WorkerOptions)}
    for name in ("autoscale", "heartbeat_interval", "max_memory_per_child"):
        value = getattr(flags, name)
        if name in known:
            setattr(options, name, value)
        elif value:
            # Heartbeats are events; where the worker sends none, say so instead of ignoring.
            logger.warning(
                "--%s has no effect: this worker sends no heartbeat events",
                name.replace("_", "-"),
            )
    return options


def run_worker(obj: Any, flags: WorkerFlags) -> None:
    """Daemonize as asked, apply the flags and run the worker until it stops."""
    nodename = expand_hostname(flags.hostname)
    app = obj.app  # imported first, as Celery does: before detaching and changing user
    _become_daemon(app, flags, nodename)
    if getattr(obj, "no_color", False):
        app.conf["worker_log_color"] = False
    _apply_settings(app, flags)
    options = worker_options(flags)
    options.loglevel = flags.loglevel
    options.logfile = prepare_logfile(flags.logfile and expand_node_format(flags.logfile, nodename))
    options.banner = options.banner and not getattr(obj, "quiet", False)
    if flags.purge_first:
        queues = app.router.consume_specs(options.queues, options.exclude_queues)
        _purge(app, [queue.name for queue in queues])
    if flags.loops > 1:
        setup_logging(app, flags.loglevel, options.logfile)  # the supervisor logs too
        sys.exit(run_loops(app, options, flags.loops))
    if uses_slots(app, options):
        setup_logging(app, flags.loglevel, options.logfile)
        sys.exit(run_slots(app, options, slot_count(app, options)))
    sys.exit(Worker(app, options).start())


def uses_slots(app: Any, options: WorkerOptions) -> bool:
    """Whether the worker runs slots (:mod:`celeriac.worker.slots`): ``-P slots`` or
    ``worker_pool = "slots"`` (``--autoscale`` needs prefork)."""
    chosen = options.pool or app.conf["worker_pool"]
    return str(chosen).strip().lower() == "slots" and not options.autoscale


def slot_count(app: Any, options: WorkerOptions) -> int:
    """``-c`` (or ``worker_concurrency``, else the cores): how many slots."""
    return int(options.concurrency or app.conf["worker_concurrency"] or default_concurrency())
