"""``celeriac web``: serve the dashboard (pages, Flower's API, metrics) with uvicorn.

The flags are Flower's: ``--address`` (127.0.0.1 by default: only this machine reaches
it), ``--port`` (5555) and ``--basic-auth user:pass[,user2:pass2]`` (or
``CELERIAC_WEB_BASIC_AUTH``). The task history is kept in the app's SQL result database
when it has one (PostgreSQL, or the SQLite backend's file), else in
``celeriac-dashboard.sqlite`` in the current directory; ``--history FILE`` names a SQLite
file either way, ``--no-history`` keeps memory only (Flower without ``--persistent``).
Needs the ``web`` extra.
"""

from __future__ import annotations

from typing import Any

import click

from celeriac.exceptions import ImproperlyConfigured

__all__ = ["DEFAULT_HISTORY", "web"]

DEFAULT_HISTORY = "celeriac-dashboard.sqlite"
"""The task history's file, in the current directory, without a SQL result database or
``--history``."""


@click.command()
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=5555, show_default=True,
              help="Port to listen on.")  # fmt: skip
@click.option("--basic-auth", "basic_auth", default=None, metavar="USER:PASS[,USER:PASS]",
              help="Credentials every request needs (or CELERIAC_WEB_BASIC_AUTH).")  # fmt: skip
@click.option("--auth-token", "auth_token", default=None, metavar="TOKEN[,TOKEN]",
              help="Bearer tokens accepted as credentials (or CELERIAC_WEB_TOKEN).")  # fmt: skip
@click.option("--mask-pattern", default=None, metavar="REGEX",
              help="Key names whose values are masked in task arguments (default: passwords, "
                   "secrets, tokens, API keys; '' for none).")  # fmt: skip
@click.option("--max-tasks", type=click.IntRange(1), default=10000, show_default=True,
              help="Tasks kept in memory.")  # fmt: skip
@click.option("--history", type=click.Path(dir_okay=False), default=None,
              envvar="CELERIAC_WEB_HISTORY",
              help="SQLite file that keeps the task history across restarts (default: the "
                   f"SQL result database if any, else {DEFAULT_HISTORY}).")  # fmt: skip
@click.option("--no-history", is_flag=True, help="Keep tasks in memory only.")
@click.option("--history-max-age", type=click.FloatRange(min=1), default=7 * 24.0,
              show_default=True, help="Hours a task stays in the history.")  # fmt: skip
@click.option("--history-max-tasks", type=click.IntRange(1), default=1_000_000,
              show_default=True, help="Tasks the history keeps at most.")  # fmt: skip
@click.pass_obj
def web(
    obj: Any,
    /,
    address: str,
    port: int,
    basic_auth: str | None,
    auth_token: str | None,
    mask_pattern: str | None,
    max_tasks: int,
    history: str | None,
    no_history: bool,
    history_max_age: float,
    history_max_tasks: int,
) -> None:
    """Serve the dashboard and its HTTP API."""
    try:
        import uvicorn  # noqa: PLC0415 (an optional extra)

        from celeriac.web import create_app  # noqa: PLC0415 (needs starlette)
        from celeriac.web.auth import is_loopback  # noqa: PLC0415
        from celeriac.web.history import open_history  # noqa: PLC0415
    except ImportError as exc:
        raise click.ClickException(
            f"the dashboard needs the web extra: pip install 'celeriac[web]' ({exc})"
        ) from exc
    app = obj.app
    if not app.events.supported:
        raise click.ClickException(f"the broker {app.broker_url} carries no events")
    kept = None
    if not no_history:
        try:
            kept = open_history(
                app, history, max_age=history_max_age * 3600, max_rows=history_max_tasks,
                default=DEFAULT_HISTORY,
            )  # fmt: skip
        except ImproperlyConfigured as exc:
            raise click.BadParameter(str(exc), param_hint="--history") from exc
    try:
        asgi = create_app(
            app,
            basic_auth=basic_auth,
            address=address,
            max_tasks=max_tasks,
            history=kept,
            token=auth_token,
            **({} if mask_pattern is None else {"mask_pattern": mask_pattern}),
        )
    except (ValueError, ImproperlyConfigured) as exc:
        hint = "--mask-pattern" if "mask pattern" in str(exc) else "--basic-auth"
        raise click.BadParameter(str(exc), param_hint=hint) from exc
    click.echo(f"celeriac dashboard on http://{address}:{port}/")
    click.echo(f"task history: {kept.store if kept is not None else 'in memory only'}")
    access = asgi.state.dashboard.access
    if not access.protected and not is_loopback(address):
        click.echo("no --basic-auth or --auth-token: actions over HTTP are refused", err=True)
    # Open event streams would hold a graceful shutdown for ever: give them two seconds.
    uvicorn.run(asgi, host=address, port=port, log_level="warning", timeout_graceful_shutdown=2)
