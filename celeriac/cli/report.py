"""``celeriac report``: information for a bug report (Celery's ``celery report``)."""

from __future__ import annotations

from typing import Any

import click

from celeriac.conf.report import bug_report

__all__ = ["report"]


@click.command()
@click.pass_obj
def report(obj: Any, /) -> None:
    """Show versions, the broker and backend (passwords masked) and the settings in use."""
    app = obj.app
    app.import_default_modules()
    click.echo(bug_report(app))
