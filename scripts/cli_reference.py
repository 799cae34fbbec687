"""Write the command-line reference, ``docs/cli.md``, from the Click commands themselves.

    python scripts/cli_reference.py > docs/cli.md

``tests/unit/test_cli_reference.py`` fails when the committed page differs from what this
prints, so a new command or option cannot ship undocumented.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from celeriac.cli.main import cli  # noqa: E402 - after making the package importable

__all__ = ["render"]

INTRO = """\
# Command-line reference

Generated from the commands by `python scripts/cli_reference.py > docs/cli.md`; do not edit
by hand. The commands and options are Celery's, under the `celeriac` program; where one
is not supported, its help says so and what to use instead. Options given before the
command (`celeriac -A proj worker`) are the global ones. A mistake of the user (a bad
option, an unknown setting or URL scheme, a broker that refuses the connection or the
vhost, a timeout) prints one `Error:` line and exits with status 1 (2 for a bad option);
a traceback means a bug in celeriac.
"""


def _walk(
    command: click.Command, path: list[str], parent: click.Context | None
) -> Iterator[tuple[list[str], click.Command, click.Context]]:
    # The command's context settings, as make_context applies them (help_option_names, which
    # subcommands inherit): without them the page depends on click's per-command caches.
    ctx = click.Context(command, info_name=path[-1], parent=parent, **command.context_settings)
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, [*path, name], ctx)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _options(command: click.Command, ctx: click.Context) -> list[str]:
    rows = []
    for param in command.params:  # the command's own: the help option is written below
        if not isinstance(param, click.Option):
            continue  # arguments are in the usage line
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        rows.append(f"| `{_cell(names)}` | {_cell(help_text)} |")
    if command.add_help_option and ctx.help_option_names:
        # From the context, not command.get_params: click caches each command's help option
        # the first time any context asks, so that row would depend on what ran before.
        rows.append(f"| `{', '.join(ctx.help_option_names)}` | Show this message and exit. |")
    if not rows:
        return []
    return ["| option | meaning |", "| --- | --- |", *rows, ""]


def _section(path: list[str], command: click.Command, ctx: click.Context) -> list[str]:
    title = " ".join(path)
    level = "#" * min(2 + len(path) - 2, 4) if len(path) > 1 else "##"
    lines = [f"{level} `{title}`", ""]
    if command.help:
        lines += [click.unstyle(command.help).strip(), ""]
    pieces = command.collect_usage_pieces(ctx)
    lines += ["```", f"{title} {' '.join(pieces)}".rstrip(), "```", ""]
    lines += _options(command, ctx)
    return lines


def render() -> str:
    """The whole page."""
    lines = [INTRO]
    for path, command, ctx in _walk(cli, ["celeriac"], None):
        lines += _section(path, command, ctx)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
