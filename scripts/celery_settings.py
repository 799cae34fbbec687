"""Compare celeriac's settings table with the installed Celery, or write the table's first version.

    python scripts/celery_settings.py            # names Celery has and celeriac lacks, as stubs
    python scripts/celery_settings.py --write NOTES.py [--force]

The table (``celeriac/conf/table/``) was generated once by ``--write`` from Celery's
``celery.app.defaults.NAMESPACES`` and a notes file of statuses and descriptions
(``NOTES = {name: (status 'I'|'N', reason, description, {'default': ..., 'differs': ...})}``
and ``CELERIAC = {name: (group, type, default, description)}``); since then the modules are
edited by hand. When a Celery release adds settings, ``tests/unit/test_settings_table.py``
fails and the default mode prints a stub per new name to paste into its group module.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import math
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

from celery.app.defaults import _TO_OLD_KEY, NAMESPACES, flatten

TABLE = pathlib.Path(__file__).resolve().parent.parent / "celeriac" / "conf" / "table"

GROUPS = {
    "app": "the application: content types, imports, time zone, and beat",
    "broker": "the broker connection",
    "results": "result storage: the result backend, PostgreSQL and Redis stores",
    "stores": "result backends of Celery that celeriac does not have",
    "tasks": "tasks: publishing, routing, execution and acknowledgement",
    "worker": "the worker",
    "messaging": "events, remote control and message signing",
}
_PREFIXES = {
    "beat_": "app",
    "broker_": "broker",
    "result_": "results",
    "database_": "results",
    "redis_": "results",
    "cache_": "results",
    "task_": "tasks",
    "worker_": "worker",
    "control_": "messaging",
    "event_": "messaging",
    "security_": "messaging",
}
_TOP = {"accept_content", "result_accept_content", "enable_utc", "imports", "include", "timezone"}
_TYPES = {"str": "string"}


def group_of(name: str) -> str:
    """The table module a setting belongs in."""
    if name in _TOP:
        return "app"
    for prefix, group in _PREFIXES.items():
        if name.startswith(prefix):
            return group
    return "stores"


def type_name(kind: Any) -> str:
    """Celery's type name, normalised (``str`` and the class ``int`` appear too)."""
    text = kind.__name__ if isinstance(kind, type) else str(kind)
    return _TYPES.get(text, text)


def literal(value: Any) -> str:
    """Python source for a default value."""
    if isinstance(value, dt.timedelta):
        return f"dt.timedelta(seconds={value.total_seconds():g})"
    if isinstance(value, float) and math.isinf(value):
        return "math.inf"
    return repr(value)


def text_literal(text: str, indent: int) -> str:
    """A string literal, split over lines within the line length."""
    width = 96 - indent - 3
    if len(repr(text)) <= width:
        return repr(text)
    parts = textwrap.wrap(text, width - 2, drop_whitespace=False)
    return "(" + (" ").join(repr(p) for p in parts) + ")"


def entry(name: str, kind: str, default: Any, aliases: tuple[str, ...], note: tuple) -> str:
    """The source of one ``Setting(...)``."""
    status, reason, description, extra = note
    lines = [
        "    Setting(",
        f"        {name!r},",
        f"        {kind!r},",
        f"        {literal(default)},",
        f"        {text_literal(description, 8)},",
    ]
    if status == "N":
        lines.append("        status=NOT_SUPPORTED,")
        lines.append(f"        reason={text_literal(reason, 15)},")
    if "default" in extra:
        lines.append(f"        default={literal(extra['default'])},")
    if extra.get("differs"):
        lines.append(f"        differs={text_literal(extra['differs'], 16)},")
    if aliases:
        lines.append(f"        aliases={aliases!r},")
    lines.append("    ),")
    return "\n".join(lines)


def module_source(group: str, entries: list[str]) -> str:
    """The source of one table module."""
    body = "\n".join(entries)
    imports = ["from __future__ import annotations", ""]
    std = [m for m in ("datetime as dt", "math") if m.split()[-1] + "." in body]
    imports += [f"import {m}" for m in std] + ([""] if std else [])
    names = ["Setting"]
    if "NOT_SUPPORTED" in body:
        names.insert(0, "NOT_SUPPORTED")
    if "CELERIAC_ONLY" in body:
        names.insert(0, "CELERIAC_ONLY")
    imports.append(f"from celeriac.conf.model import {', '.join(names)}")
    head = (
        f'"""Settings of {GROUPS[group]}.\n\n'
        "Generated once from Celery 5.7's ``celery.app.defaults.NAMESPACES`` by\n"
        "``scripts/celery_settings.py``, and edited by hand since: statuses, reasons and\n"
        'celeriac\'s defaults live here.\n"""\n\n'
    )
    table = '__all__ = ["SETTINGS"]\n\nSETTINGS = (\n' + body + "\n)\n"
    return head + "\n".join(imports) + "\n\n" + table


def load_notes(path: str) -> Any:
    """The notes module given on the command line."""
    spec = importlib.util.spec_from_file_location("notes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(notes_path: str, force: bool) -> None:
    """Write every group module from Celery's table and the notes."""
    notes = load_notes(notes_path)
    by_group: dict[str, list[str]] = {g: [] for g in GROUPS}
    missing = []
    for name, option in flatten(NAMESPACES):
        note = notes.NOTES.get(name)
        if note is None:
            missing.append(name)
            continue
        alias = _TO_OLD_KEY[name]
        aliases = (alias,) if alias != name else ()
        by_group[group_of(name)].append(
            entry(name, type_name(option.type), option.default, aliases, note)
        )
    if missing:
        sys.exit(f"no notes for: {', '.join(missing)}")
    for name, (group, kind, default, description) in notes.CELERIAC.items():
        source = entry(name, kind, "CELERIAC_ONLY", (), ("I", "", description, {}))
        source = source.replace("'CELERIAC_ONLY'", "CELERIAC_ONLY")
        source = source.replace("    ),", f"        default={literal(default)},\n    ),")
        by_group[group].append(source)
    TABLE.mkdir(exist_ok=True)
    for group, entries in by_group.items():
        target = TABLE / f"{group}.py"
        if target.exists() and not force:
            sys.exit(f"{target} exists (it is edited by hand now); --force overwrites it")
        target.write_text(module_source(group, entries))
    subprocess.run([sys.executable, "-m", "ruff", "format", str(TABLE)], check=True)


def missing_stubs() -> int:
    """Print a stub for each Celery setting the table lacks; the number of them."""
    sys.path.insert(0, str(TABLE.parent.parent.parent))
    from celeriac.conf.table import SETTINGS  # noqa: PLC0415 - the script runs outside the package

    count = 0
    for name, option in flatten(NAMESPACES):
        if name not in SETTINGS:
            count += 1
            alias = _TO_OLD_KEY[name]
            note = ("N", "not supported yet", "TODO: what it does.", {})
            print(f"# {group_of(name)}.py")
            print(entry(name, type_name(option.type), option.default, (alias,), note))
    return count


def main() -> None:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="NOTES", help="write the table from a notes file")
    parser.add_argument("--force", action="store_true", help="overwrite the table modules")
    args = parser.parse_args()
    if args.write:
        write(args.write, args.force)
    else:
        sys.exit(1 if missing_stubs() else 0)


if __name__ == "__main__":
    main()
