"""The ``celeriac`` command: Celery's command line, for celeriac apps."""

from __future__ import annotations

import json
from typing import Any

import click

from celeriac.app import Celery
from celeriac.cli.beat import beat
from celeriac.cli.control import control, inspect, status
from celeriac.cli.daemon import daemon_options
from celeriac.cli.demo import demo
from celeriac.cli.errors import UserErrorGroup
from celeriac.cli.events import events
from celeriac.cli.flower import flower
from celeriac.cli.listing import list_
from celeriac.cli.loading import apply_config_module, change_directory, check_loader, find_app
from celeriac.cli.migrate import migrate
from celeriac.cli.multi import multi
from celeriac.cli.params import log_format_option, loglevel_option
from celeriac.cli.report import report
from celeriac.cli.shell import shell
from celeriac.cli.unsupported import unsupported_commands
from celeriac.cli.upgrade import upgrade
from celeriac.cli.web import web
from celeriac.cli.worker_start import WorkerFlags, parse_autoscale, run_worker
from celeriac.worker.executors import GREEN_POOLS, POOL_NAMES

__all__ = ["cli", "main"]


class AppContext:
    """What the group options give every subcommand."""

    def __init__(
        self,
        app_spec: str | None,
        broker: str | None,
        backend: str | None,
        config: str | None = None,
        quiet: bool = False,
        no_color: bool = False,
    ) -> None:
        self.app_spec = app_spec
        self.broker = broker
        self.backend = backend
        self.config = config
        self.quiet = quiet
        self.no_color = no_color
        self._app: Celery | None = None

    @property
    def app(self) -> Celery:
        """The loaded app, with --config, -b and --result-backend applied."""
        if self._app is None:
            self._app = find_app(self.app_spec)
            apply_config_module(self._app, self.config, default_app=not self.app_spec)
            if self.broker:
                self._app.conf["broker_url"] = self.broker
            if self.backend:
                self._app.conf["result_backend"] = self.backend
        return self._app


@click.group(cls=UserErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-A",
    "--app",
    "app_spec",
    envvar="CELERY_APP",
    help="The app: module, module:attr or package.module (env CELERY_APP).",
)
@click.option("-b", "--broker", help="Broker URL (overrides broker_url).")
@click.option("--result-backend", help="Result backend URL (overrides result_backend).")
@click.option(
    "--loader",
    envvar="CELERY_LOADER",
    callback=check_loader,
    help="Only Celery's app/default loaders: celeriac has no pluggable loader.",
)
@click.option(
    "--config",
    envvar="CELERY_CONFIG_MODULE",
    help="Settings module read before the app's own (env CELERY_CONFIG_MODULE).",
)
@click.option(
    "--workdir",
    type=click.Path(exists=True, file_okay=False),
    callback=change_directory,
    is_eager=True,
    expose_value=False,
    help="Change to this directory before anything else.",
)
@click.option(
    "-C", "--no-color", is_flag=True, envvar="NO_COLOR", help="No colours in the worker's log."
)
@click.option("-q", "--quiet", is_flag=True, help="No start-up banners.")
@click.option(
    "--skip-checks",
    is_flag=True,
    envvar="CELERY_SKIP_CHECKS",
    help="Celery's switch for Django's checks; celeriac runs none, so nothing is skipped.",
)
@click.version_option(package_name="celeriac")
@click.pass_context
def cli(
    ctx: click.Context,
    /,
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    config: str | None,
    no_color: bool,
    quiet: bool,
    **_: Any,
) -> None:
    """celeriac: a Celery-compatible task queue."""
    ctx.obj = AppContext(app_spec, broker, result_backend, config, quiet, no_color)


def _pool_choice(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``-P``: Celery's pool names; gevent and eventlet are refused with what to use."""
    if value is None:
        return None
    kind = value.strip().lower()
    if kind in GREEN_POOLS:
        raise click.BadParameter(GREEN_POOLS[kind], ctx, param)
    if kind not in POOL_NAMES:
        raise click.BadParameter(
            f"{value!r} is not one of {', '.join(sorted(POOL_NAMES))}", ctx, param
        )
    return kind


def _comma_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


@cli.command()
@loglevel_option
@log_format_option
@click.option("-c", "--concurrency", type=int, help="Pool size (default: number of CPUs).")
@click.option("-Q", "--queues", default="", help="Comma-separated queues to consume.")
@click.option("-X", "--exclude-queues", default="", help="Comma-separated queues not to consume.")
@click.option("-I", "--include", default="", help="Comma-separated modules to import.")
@click.option("-n", "--hostname", help="Node name, e.g. worker1@%h.")
@click.option(
    "-P",
    "--pool",
    callback=_pool_choice,
    help="Pool for sync tasks: prefork (processes), threads, solo, or slots (a process each).",
)
@click.option(
    "--autoscale",
    callback=lambda ctx, param, value: parse_autoscale(value, ctx, param),
    help="MAX,MIN: grow the pool up to MAX processes under load, shrink to MIN when idle.",
)
@click.option(
    "--max-tasks-per-child", type=int, help="Replace a pool process after this many tasks."
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(min=1),
    help="Replace a pool process once its resident memory exceeds this many KiB.",
)
@click.option("--time-limit", type=float, help="Hard time limit per task, seconds.")
@click.option("--soft-time-limit", type=float, help="Soft time limit per task, seconds.")
@click.option(
    "--prefetch-multiplier",
    type=int,
    help="Messages held per pool slot: a fixed window (unset: it adapts to task run times).",
)
@click.option(
    "--disable-prefetch",
    is_flag=True,
    help="Hold only as many messages as there are free pool slots (worker_disable_prefetch).",
)
@click.option(
    "--async-concurrency",
    type=int,
    default=100,
    show_default=True,
    help="async def tasks in flight at once.",
)
@click.option(
    "--purge", "--discard", "purge_first", is_flag=True, help="Purge the queues before start."
)
@daemon_options
@click.option(
    "--statedb", help="Celery's revokes file: not needed (revokes are kept in the broker)."
)
@click.option(
    "-E",
    "--task-events",
    "--events",
    "task_events",
    is_flag=True,
    help="Send task events (worker_send_task_events).",
)
@click.option(
    "-O",
    "--optimization",
    "optimization",
    type=click.Choice(["default", "fair"]),
    help="Celery's scheduling: celeriac always gives a task to a free slot (fair).",
)
@click.option("--heartbeat-interval", type=float, help="Seconds between worker heartbeat events.")
@click.option(
    "--without-heartbeat", is_flag=True, help="Send no worker-online/-heartbeat/-offline events."
)
@click.option(
    "--without-gossip",
    is_flag=True,
    help="Celery's gossip: celeriac has none (nothing to disable).",
)
@click.option(
    "--without-mingle",
    is_flag=True,
    help="Celery's mingle: celeriac has none (nothing to disable).",
)
@click.option("-B", "--beat", "embed_beat", is_flag=True, help="Also run beat in this worker.")
@click.option(
    "-s",
    "--schedule-filename",
    "--schedule",
    "schedule",
    help="With -B: the schedule store (beat_schedule_store), as beat's -s.",
)
@click.option(
    "-S", "--scheduler", help="With -B: Celery's default scheduler only (use beat -S for others)."
)
@click.option(
    "--pool-start-method",
    type=click.Choice(["fork"]),
    help="How prefork children start: celeriac's always fork.",
)
@click.option(
    "--executable", help="Celery's Python for --detach: celeriac forks, so it is not used."
)
@click.option(
    "--loops",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run this many complete workers (one event loop each) in their own processes.",
)
@click.pass_obj
def worker(obj: AppContext, /, **flags: Any) -> None:
    """Start a worker."""
    run_worker(obj, WorkerFlags(**flags))


@cli.command()
@click.argument("name")
@click.option("-a", "--args", default="[]", help="JSON list, e.g. '[2, 2]'.")
@click.option("-k", "--kwargs", default="{}", help="JSON object.")
@click.option("--countdown", type=float, help="Seconds to wait before running.")
@click.option("--eta", help="ISO-8601 time to run at.")
@click.option("--expires", type=float, help="Seconds after which the task is discarded.")
@click.option("--queue", help="Queue to send to.")
@click.option("--exchange", help="Exchange to send to (with --routing-key).")
@click.option("--routing-key", help="Routing key of the message.")
@click.option("--serializer", help="json, pickle, yaml or msgpack (default: task_serializer).")
@click.option("--priority", type=int)
@click.pass_obj
def call(
    obj: AppContext,
    name: str,
    args: str,
    kwargs: str,
    countdown: float | None,
    eta: str | None,
    expires: float | None,
    queue: str | None,
    exchange: str | None,
    routing_key: str | None,
    serializer: str | None,
    priority: int | None,
) -> None:
    """Send task NAME and print its id."""
    try:
        parsed_args = json.loads(args)
        parsed_kwargs = json.loads(kwargs)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"--args/--kwargs must be JSON: {exc}") from exc
    if not isinstance(parsed_args, list) or not isinstance(parsed_kwargs, dict):
        raise click.BadParameter("--args must be a JSON list and --kwargs a JSON object")
    options = {
        "countdown": countdown,
        "eta": eta,
        "expires": expires,
        "queue": queue,
        "exchange": exchange,
        "routing_key": routing_key,
        "serializer": serializer,
        "priority": priority,
    }
    result = obj.app.send_task(
        name, parsed_args, parsed_kwargs, **{k: v for k, v in options.items() if v is not None}
    )
    click.echo(result.id)


@cli.command()
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Wait for the result.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@click.option(
    "--traceback", "show_traceback", is_flag=True, help="Print the traceback of a failure."
)
@click.option(
    "-t", "--task", help="The task's name (Celery picks its backend; celeriac has one store)."
)
@click.pass_obj
def result(
    obj: AppContext,
    task_id: str,
    wait: bool,
    timeout: float | None,
    show_traceback: bool,
    task: str | None,
) -> None:
    """Print the state and result of TASK_ID."""
    res = obj.app.AsyncResult(task_id)
    if wait:
        res.get(timeout=timeout, propagate=False)
    state = res.state
    value = res.result
    if show_traceback and res.traceback:
        click.echo(res.traceback)
    click.echo(f"{state}: {value!r}" if state != "SUCCESS" else repr(value))


@cli.command()
@click.option("-Q", "--queues", default="", help="Queues to purge (default: the consumed queues).")
@click.option("-X", "--exclude-queues", default="", help="Queues not to purge.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def purge(obj: AppContext, queues: str, exclude_queues: str, force: bool) -> None:
    """Delete all waiting messages from the queues."""
    app = obj.app
    specs = app.router.consume_specs(_comma_list(queues), _comma_list(exclude_queues))
    names = [spec.name for spec in specs]
    if not names:
        raise click.UsageError("no queue left to purge")
    if not force:
        click.confirm(f"Purge all waiting messages from {', '.join(names)}?", abort=True)

    async def run() -> int:
        transport = await app.aget_transport()
        return await transport.purge(names)

    count = app.run_sync(run())
    click.echo(
        f"Purged {count} message{'s' if count != 1 else ''} from "
        f"{len(names)} known task queue{'s' if len(names) != 1 else ''}."
    )


@cli.group()
def dead() -> None:
    """List, requeue and purge dead-lettered messages."""


@dead.command("list")
@click.option("--limit", type=int, default=100, show_default=True)
@click.pass_obj
def dead_list(obj: AppContext, limit: int) -> None:
    """Show dead-lettered messages with the reason."""
    app = obj.app

    async def run() -> list[Any]:
        transport = await app.aget_transport()
        return await transport.list_dead(limit)

    letters = app.run_sync(run())
    for letter in letters:
        task = letter.envelope.headers.get("task", "?")
        click.echo(f"{letter.id}  queue={letter.queue}  task={task}  reason={letter.reason}")
    click.echo(f"{len(letters)} dead letter(s)")


@dead.command("requeue")
@click.argument("ids", nargs=-1)
@click.option("--all", "requeue_all", is_flag=True, help="Requeue every dead letter.")
@click.pass_obj
def dead_requeue(obj: AppContext, ids: tuple[str, ...], requeue_all: bool) -> None:
    """Put dead letters (IDS, or --all) back on their queues."""
    if not ids and not requeue_all:
        raise click.UsageError("give dead-letter ids or --all")
    app = obj.app

    async def run() -> int:
        transport = await app.aget_transport()
        return await transport.requeue_dead(list(ids) if ids else None)

    click.echo(f"Requeued {app.run_sync(run())} message(s).")


@dead.command("purge")
@click.argument("ids", nargs=-1)
@click.option("--all", "purge_all", is_flag=True, help="Delete every dead letter.")
@click.pass_obj
def dead_purge(obj: AppContext, ids: tuple[str, ...], purge_all: bool) -> None:
    """Delete dead letters (IDS, or --all) for good."""
    if not ids and not purge_all:
        raise click.UsageError("give dead-letter ids or --all")
    app = obj.app

    async def run() -> int:
        transport = await app.aget_transport()
        return await transport.purge_dead(list(ids) if ids else None)

    click.echo(f"Deleted {app.run_sync(run())} message(s).")


cli.add_command(beat)
cli.add_command(control)
cli.add_command(inspect)
cli.add_command(status)
cli.add_command(demo)
cli.add_command(events)
cli.add_command(flower)
cli.add_command(report)
cli.add_command(web)
cli.add_command(shell)
cli.add_command(multi)
cli.add_command(migrate)
cli.add_command(list_)
cli.add_command(upgrade)
for _command in unsupported_commands():
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``celeriac`` script."""
    cli(prog_name="celeriac")
