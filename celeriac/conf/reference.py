"""The configuration reference, written from the settings table.

``python -m celeriac.conf.reference > docs/configuration.md`` regenerates the page; a test
checks that the committed page is up to date with the table.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from celeriac.conf.model import Setting
from celeriac.conf.table import AREAS, SETTINGS

__all__ = ["render", "render_value"]

_INTRO = """\
# Configuration reference

Every setting of Celery {celery}, under Celery's name, and celeriac's own. Set them as in
Celery: `Celery('proj', broker_pool_limit=5)`, `app.conf.update(...)`, `app.conf.name = ...`,
`app.config_from_object('proj.celeryconfig')` (a module, a class, a dict, or
`'django.conf:settings'` with `namespace='CELERY'`). Celery 3's uppercase names
(`CELERYD_CONCURRENCY`, `BROKER_URL`...) mean the same settings. Every setting is readable
with its default (`app.conf.broker_pool_limit` is `10`).

- **implemented**: the setting takes effect as in Celery.
- **not supported**: it has no effect, for the reason given. Setting one to anything but its
  default logs a warning naming it at worker, beat and client start (once per process), and
  `celeriac report` lists it.
- A name celeriac does not know (a typo) is kept, as Celery keeps it, with a warning naming
  the closest known names.

{counts}. Where celeriac's default differs from Celery's, the entry says so and why; the
README's table of defaults summarises the differences that change behaviour.

This page is generated from `celeriac/conf/table/` by
`python -m celeriac.conf.reference > docs/configuration.md`.
"""


def render_value(value: Any) -> str:
    """A default as a reader would write it in a settings file."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
        return f"`{seconds:g}` s ({value})"
    if isinstance(value, float) and math.isinf(value):
        return "`inf`"
    return f"`{value!r}`"


def _counts() -> str:
    of_celery = [row for row in SETTINGS.values() if row.in_celery]
    tally = Counter(row.status for row in of_celery)
    own = len(SETTINGS) - len(of_celery)
    return (
        f"Of Celery's {len(of_celery)} settings, {tally['implemented']} are implemented and"
        f" {tally['not supported']} are not supported; {own} more are celeriac's own"
    )


def _entry(row: Setting) -> list[str]:
    facts = [f"*{row.type}*"]
    if row.in_celery:
        facts.append(f"Celery default {render_value(row.celery_default)}")
    else:
        facts.append("celeriac only")
    if row.differs_from_celery or not row.in_celery:
        facts.append(f"celeriac default {render_value(row.value)}")
    if row.aliases:
        facts.append("old name " + ", ".join(f"`{alias}`" for alias in row.aliases))
    facts.append(f"**{row.status}**")
    lines = [f"### `{row.name}`", "", " · ".join(facts), "", row.description]
    if row.differs:
        lines += ["", f"celeriac differs: {row.differs}."]
    if not row.supported:
        lines += ["", f"Not supported: {row.reason}."]
    return [*lines, ""]


def _unsupported_index(rows: Iterable[Setting]) -> list[str]:
    names = [f"`{row.name}`" for row in rows if not row.supported]
    return ["Not supported here: " + ", ".join(names) + ".", ""] if names else []


def render(celery_version: str = "5.7") -> str:
    """The whole page."""
    lines = [_INTRO.format(celery=celery_version, counts=_counts())]
    lines.append("## Contents\n")
    lines += [f"- [{area}](#{_anchor(area)}) ({len(rows)})" for area, rows in AREAS.items()]
    lines.append("")
    for area, rows in AREAS.items():
        lines += [f"## {area}", ""]
        lines += _unsupported_index(rows)
        for row in rows:
            lines += _entry(row)
    return "\n".join(lines).rstrip() + "\n"


def _anchor(title: str) -> str:
    kept = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -")
    return kept.replace(" ", "-")


if __name__ == "__main__":
    print(render(), end="")
