"""``celeriac upgrade settings FILE``: rename Celery 3 setting names to the new ones.

As Celery's: every line ``OLD_NAME = ...`` whose name is a Celery 3 uppercase alias
(``CELERYD_CONCURRENCY``, ``BROKER_URL``, …) is rewritten with the lowercase name
(``worker_concurrency``); ``--django`` (or ``--compat``, as in Celery) writes the new
names uppercase with the ``CELERY_`` prefix (``CELERY_WORKER_CONCURRENCY``), as a Django
settings module namespaced ``CELERY`` reads them. The original is kept as ``FILE.orig``
unless ``--no-backup``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import click

from celeriac.conf.table import ALIASES

__all__ = ["rename_settings", "upgrade"]

_ASSIGNMENT = re.compile(r"^(?P<indent>\s*)(?P<name>[A-Z][A-Z0-9_]*)(?P<rest>\s*=.*)$")


def rename_settings(text: str, django: bool = False) -> tuple[str, int]:
    """``text`` with old setting names replaced; and how many lines changed."""
    changed = 0
    lines = []
    for line in text.splitlines(keepends=True):
        match = _ASSIGNMENT.match(line.rstrip("\n"))
        new = ALIASES.get(match["name"]) if match else None
        if match and new:
            upper = new.upper()
            name = (upper if upper.startswith("CELERY") else f"CELERY_{upper}") if django else new
            ending = "\n" if line.endswith("\n") else ""
            line = f"{match['indent']}{name}{match['rest']}{ending}"
            changed += 1
        lines.append(line)
    return "".join(lines), changed


@click.group()
def upgrade() -> None:
    """Upgrade a project's files to the current setting names."""


@upgrade.command()
@click.argument("filename", type=click.Path(exists=True, dir_okay=False))
@click.option("--django", is_flag=True, help="Uppercase names with the CELERY_ prefix.")
@click.option("--compat", is_flag=True, help="As --django (Celery's meaning).")
@click.option("--no-backup", is_flag=True, help="Do not keep FILENAME.orig.")
def settings(filename: str, django: bool, compat: bool, no_backup: bool) -> None:
    """Rename the Celery 3 setting names in FILENAME."""
    path = Path(filename)
    text, changed = rename_settings(path.read_text(), django=django or compat)
    if not changed:
        click.echo(f"{filename}: nothing to upgrade")
        return
    if not no_backup:
        shutil.copyfile(path, f"{filename}.orig")
    path.write_text(text)
    click.echo(f"{filename}: {changed} setting{'s' if changed != 1 else ''} renamed")
