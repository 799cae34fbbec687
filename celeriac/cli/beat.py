"""``celeriac beat``: run the periodic-task scheduler (Celery's ``celery beat``).

Any number of these may run against the same schedule store; a lease makes exactly one
of them send each tick (see :mod:`celeriac.beat.scheduler`). SIGTERM or SIGINT stops it
warmly: it gives the lease up so another beat takes over at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from datetime import datetime
from typing import Any

import click

from celeriac._version import __version__
from celeriac.beat.foreign import is_native, load_scheduler_class, run_scheduler
from celeriac.beat.scheduler import Beat, BeatOptions
from celeriac.beat.sources import source_for_app
from celeriac.beat.stores import store_for_app
from celeriac.cli.daemon import (
    Pidfile,
    daemon_options,
    drop_privileges,
    expand_node_format,
    parse_umask,
    prepare_logfile,
)
from celeriac.cli.daemon import detach as daemonize
from celeriac.cli.params import log_format_option, loglevel_option
from celeriac.exceptions import ImproperlyConfigured
from celeriac.masking import mask_url
from celeriac.worker.logging import setup_logging

__all__ = ["beat"]

logger = logging.getLogger("celeriac.beat")


def banner(beat: Beat, loglevel: str) -> str:
    """The start-up text, laid out like Celery's beat banner."""
    opts = beat.options
    return (
        f"celeriac beat v{__version__} is starting.\n"
        "__    -    ... __   -        _\n"
        f"LocalTime -> {datetime.now().astimezone():%Y-%m-%d %H:%M:%S}\n"
        "Configuration ->\n"
        f"    . broker -> {mask_url(beat.app.broker_url, '**')}\n"
        f"    . scheduler -> celeriac.beat.scheduler.Beat"
        f" (lease {opts.lease_seconds:g}s, renewed every {opts.renew_interval:g}s)\n"
        f"    . entries from -> {beat.source!r}\n"
        f"    . store -> {mask_url(beat.store.url, '**')} [namespace {beat.store.namespace}]\n"
        f"    . holder -> {beat.holder}\n"
        f"    . logfile -> [stderr]@%{loglevel.upper()}\n"
        f"    . maxinterval -> {opts.max_interval:g} seconds\n"
        f"    . entries -> {len(beat.entries)}"
    )


def _stop_event() -> asyncio.Event:
    """Set by SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _serve_class(
    cls: type[Any], app: Any, max_interval: float, store: str | None, log: tuple[str, str | None]
) -> None:
    setup_logging(app, *log)
    try:
        await run_scheduler(
            cls, app, _stop_event(), max_interval=max_interval, schedule_filename=store
        )
    finally:
        await app.aclose()


async def _serve(
    beat: Beat, loglevel: str, quiet: bool = False, logfile: str | None = None
) -> None:
    stop = _stop_event()
    try:
        await beat.start()
        if not quiet:
            click.echo(banner(beat, loglevel))
        setup_logging(beat.app, loglevel, logfile)  # after the imports and the banner, as Celery
        for entry in beat.entries:
            logger.debug("beat: entry %s -> %s %r", entry.name, entry.task, entry.schedule)
        logger.info("beat: Starting...")
        await beat.run(stop)
    finally:
        await beat.app.aclose()


@click.command()
@loglevel_option
@log_format_option
@click.option(
    "-s",
    "--schedule",
    "store_url",
    help="Schedule store: sqlite:///file, redis://..., memory:// or a file path"
    " (default: beat_schedule_store, else the broker).",
)
@click.option(
    "--max-interval", type=float, help="Longest sleep between checks, seconds (default 5)."
)
@click.option(
    "-S",
    "--scheduler",
    help="A scheduler class with Celery's interface, module:Class (default: celeriac's own,"
    " leased; also beat_scheduler). django_celery_beat.schedulers:DatabaseScheduler (or"
    " django): celeriac's, leased, with the entries from django-celery-beat's tables.",
)
@click.option("-n", "--hostname", help="The name this beat holds its lease under.")
@click.option(
    "--enable-remote-control/--no-enable-remote-control",
    default=False,
    help="Celery's beat remote control: not supported (beat answers no commands).",
)
@click.option("--executable", help="Celery's Python for --detach: celeriac forks instead.")
@daemon_options
@click.pass_obj
def beat(
    obj: Any,
    /,
    loglevel: str,
    log_format: str | None,
    store_url: str | None,
    max_interval: float | None,
    scheduler: str | None,
    pidfile: str | None,
    logfile: str | None,
    detach: bool,
    uid: str | None,
    gid: str | None,
    umask: str | None,
    hostname: str | None,
    enable_remote_control: bool,
    executable: str | None,
) -> None:
    """Start the periodic task scheduler (safe to run several: one sends each tick)."""
    if enable_remote_control:
        raise click.UsageError("--enable-remote-control is not supported: beat answers no commands")
    if executable:
        logger.warning("--executable has no effect: celeriac's --detach forks this process")
    app = obj.app  # imported first, as Celery does: before detaching and changing user
    if log_format:
        app.conf["worker_log_format_type"] = log_format.lower()
    mask = parse_umask(umask)
    if mask is not None:
        os.umask(mask)
    if detach:
        daemonize()
    if pidfile:
        Pidfile(expand_node_format(pidfile, None)).acquire()
    drop_privileges(app, uid, gid)
    logfile = prepare_logfile(logfile and expand_node_format(logfile, None))
    path = scheduler or app.conf["beat_scheduler"]
    if not is_native(path):
        options = BeatOptions.from_conf(app.conf, max_interval)
        cls = load_scheduler_class(path)
        asyncio.run(_serve_class(cls, app, options.max_interval, store_url, (loglevel, logfile)))
        return
    try:
        scheduler_ = Beat(
            app,
            store_for_app(app, store_url),
            options=BeatOptions.from_conf(app.conf, max_interval),
            holder=hostname,
            source=source_for_app(app, path),
        )
        asyncio.run(_serve(scheduler_, loglevel, getattr(obj, "quiet", False), logfile))
    except ImproperlyConfigured as exc:
        raise click.ClickException(str(exc)) from exc
