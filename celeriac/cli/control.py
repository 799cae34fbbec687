"""``celeriac inspect``, ``celeriac control`` and ``celeriac status``: Celery's remote-control
commands, with Celery's output (``->  host: OK`` then the indented reply, ``N nodes
online.``) and, when ``-d`` named workers, the names of those that did not answer."""

from __future__ import annotations

import json as jsonlib
import pprint
from collections.abc import Callable
from typing import Any, Literal

import click

from celeriac.control.client import flatten_reply
from celeriac.control.panel import ALIASES, COMMANDS

__all__ = ["control", "inspect", "status"]

EX_UNAVAILABLE = 69
"""Celery's exit status when no worker answered."""

Kind = Literal["inspect", "control"]


def _indent(text: str, width: int) -> str:
    return "\n".join(" " * width + line for line in text.split("\n"))


def pretty(reply: Any) -> tuple[str, str]:
    """(status, text) of one reply, as Celery's command line shows it."""
    if isinstance(reply, list):
        return "OK", "\n".join(f"* {item}" for item in reply) if reply else "- empty -"
    if isinstance(reply, dict):
        if "ok" in reply:
            return "OK", _indent(pretty(reply["ok"])[1], 4)
        if "error" in reply:
            return "ERROR", _indent(pretty(reply["error"])[1], 4)
        return "OK", jsonlib.dumps(reply, sort_keys=True, indent=4, default=repr)
    if isinstance(reply, str):
        return "OK", reply
    return "OK", pprint.pformat(reply)


def _say(show_reply: bool) -> Callable[[dict[str, Any]], None]:
    def say(replies: dict[str, Any]) -> None:
        node, reply = next(iter(replies.items()))
        state, text = pretty(reply)
        click.echo(f"->  {node}: {state}")
        if show_reply and text:
            click.echo(_indent(text, 4))

    return say


def commands_of(kind: Kind) -> list[str]:
    """The visible commands of a kind, sorted."""
    return sorted(n for n, c in COMMANDS.items() if c.kind == kind and n not in ALIASES)


def _list_commands(kind: Kind) -> Callable[[click.Context, Any, bool], None]:
    def callback(ctx: click.Context, _param: Any, value: bool) -> None:
        if not value:
            return
        formatter = click.HelpFormatter()
        with formatter.section(f"{kind.capitalize()} Commands"):
            rows = []
            for name in commands_of(kind):
                command = COMMANDS[name]
                rows.append((f"{name} {command.signature}".strip(), command.help))
            formatter.write_dl(rows)
        click.echo(formatter.getvalue(), nl=False)
        ctx.exit()

    return callback


def compile_arguments(kind: Kind, name: str, args: list[str]) -> dict[str, Any]:
    """The command's arguments from the words after its name (Celery's rules)."""
    command = COMMANDS.get(name)
    if command is None or command.kind != kind:
        known = ", ".join(commands_of(kind))
        raise click.UsageError(f"Command {name} not recognized. Available {kind} commands: {known}")
    arguments: dict[str, Any] = {}
    rest = []
    for word in args:  # --terminate, --signal=KILL: keyword arguments (revoke's)
        if word.startswith("--") and len(word) > 2:
            key, eq, value = word[2:].partition("=")
            arguments[key.replace("-", "_")] = value if eq else True
        else:
            rest.append(word)
    for (arg_name, convert), word in zip(command.args, list(rest), strict=False):
        try:
            arguments[arg_name] = convert(word)
        except ValueError as exc:
            raise click.UsageError(f"{name}: bad {arg_name} {word!r}: {exc}") from None
        rest.pop(0)
    if rest and command.variadic is None:
        raise click.UsageError(f"Command {name!r} takes arguments: {command.signature}")
    if command.variadic is not None:
        arguments[command.variadic] = rest
    return arguments


def _destination(value: str | None) -> list[str] | None:
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    return names or None


def _finish(replies: list[dict[str, Any]], destination: list[str] | None, as_json: bool) -> None:
    """Say who answered (or exit 69 when nobody did) and who did not."""
    if not replies:
        _silent(destination, [])
        raise click.ClickException("No nodes replied within time constraint")
    by_node = flatten_reply(replies)
    if as_json:
        click.echo(jsonlib.dumps(by_node, default=repr))
    else:
        count = len(by_node)
        click.echo(f"\n{count} node{'s' if count != 1 else ''} online.")
    _silent(destination, list(by_node))


def _silent(destination: list[str] | None, answered: list[str]) -> None:
    missing = [n for n in destination or () if n not in answered]
    if missing:
        click.echo(f"No reply from: {', '.join(missing)}", err=True)


_common = [
    click.option(
        "-t",
        "--timeout",
        type=float,
        default=1.0,
        show_default=True,
        help="Seconds to wait for replies.",
    ),
    click.option("-d", "--destination", help="Comma-separated node names to address."),
    click.option("-j", "--json", "as_json", is_flag=True, help="Print the replies as JSON."),
]


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_common):
        fn = option(fn)
    return fn


class _ClickExit(click.ClickException):
    exit_code = EX_UNAVAILABLE


def _run(
    obj: Any,
    kind: Kind,
    name: str,
    args: list[str],
    timeout: float,
    destination: str | None,
    as_json: bool,
) -> None:
    arguments = compile_arguments(kind, name, args)
    names = _destination(destination)
    callback = None if as_json else _say(show_reply=True)
    try:
        replies = obj.app.control.broadcast(
            name,
            arguments=arguments,
            destination=names,
            reply=True,
            timeout=timeout,
            callback=callback,
        )
    finally:
        obj.app.close()  # removes this client's reply binding from the broker
    try:
        _finish(replies or [], names, as_json)
    except click.ClickException as exc:
        raise _ClickExit(exc.message) from None


def _remote_command(kind: Kind, doc: str) -> click.Command:
    """``celeriac inspect`` or ``celeriac control``: COMMAND [ARGS...] to the workers."""

    @click.command(
        name=kind,
        help=doc,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    @click.argument("command")
    @click.argument("args", nargs=-1)
    @click.option(
        "--list",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_list_commands(kind),
        help=f"List {kind} commands and exit.",
    )
    @_options
    @click.pass_obj
    def run(
        obj: Any,
        command: str,
        args: tuple[str, ...],
        timeout: float,
        destination: str | None,
        as_json: bool,
    ) -> None:
        _run(obj, kind, command, list(args), timeout, destination, as_json)

    return run


inspect = _remote_command(
    "inspect", "Ask the workers about their state: ping, active, stats, registered, ..."
)
control = _remote_command(
    "control", "Tell the workers to do something: revoke, rate_limit, shutdown, add_consumer, ..."
)


@click.command()
@_options
@click.pass_obj
def status(obj: Any, timeout: float, destination: str | None, as_json: bool) -> None:
    """List the workers that are online."""
    names = _destination(destination)
    callback = None if as_json else _say(show_reply=False)
    try:
        replies = obj.app.control.broadcast(
            "ping", destination=names, reply=True, timeout=timeout, callback=callback
        )
    finally:
        obj.app.close()  # removes this client's reply binding from the broker
    try:
        _finish(replies or [], names, as_json)
    except click.ClickException as exc:
        raise _ClickExit(exc.message) from None
