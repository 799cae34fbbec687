"""``celeriac multi``: start, stop and restart several named workers in the background.

As Celery's ``celery multi``: ``multi start w1 w2 -A proj -l INFO`` starts one detached
``celeriac worker`` per name, node ``<name>@<host>`` (``multi start 3``: ``celery1`` ..
``celery3``), each with its own pid file and log file: Celery's defaults
``--pidfile=/var/run/celery/%n.pid`` and ``--logfile=/var/log/celery/%n%I.log`` unless
given (``%n`` the name, ``%h`` the host, ``%i``/``%I`` the process index). The options
after the names go to every worker; the global ones (``-A``, ``-b``, ``--result-backend``,
``--config``, ``--workdir``) are moved before ``worker``.
``stop`` sends SIGTERM (a warm shutdown) and waits; ``stopwait`` the same; ``kill``
sends SIGKILL; ``restart`` stops then starts; ``names`` and ``show`` print the nodes and
their commands. Celery's per-node options (``-c:1 3``) are not supported.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from celeriac.cli.daemon import Pidfile, expand_node_format

__all__ = ["Node", "multi", "plan_nodes"]

_GLOBAL_OPTIONS = ("-A", "--app", "-b", "--broker", "--result-backend", "--config", "--workdir")
_DEFAULT_PIDFILE = "/var/run/celery/%n.pid"  # Celery's defaults
_DEFAULT_LOGFILE = "/var/log/celery/%n%I.log"


@dataclass
class Node:
    """One worker of a ``multi`` command."""

    name: str  # the node name, name@host
    pidfile: str
    logfile: str
    argv: list[str]

    def pid(self) -> int | None:
        """The pid in its pid file, when that process is alive."""
        pid = Pidfile(self.pidfile).read_pid()
        if pid is None:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid


def _take_option(args: list[str], names: Sequence[str]) -> tuple[str | None, list[str]]:
    """Remove ``--name value`` / ``--name=value`` (last one wins) from ``args``."""
    value: str | None = None
    rest: list[str] = []
    items = iter(args)
    for item in items:
        key, eq, inline = item.partition("=")
        if item in names:
            value = next(items, None)
        elif eq and key in names:
            value = inline
        else:
            rest.append(item)
    return value, rest


def _split_names(args: Sequence[str]) -> tuple[list[str], list[str]]:
    names: list[str] = []
    index = 0
    while index < len(args) and not args[index].startswith("-"):
        names.append(args[index])
        index += 1
    return names, list(args[index:])


def _node_names(names: Sequence[str], host: str) -> list[str]:
    if len(names) == 1 and names[0].isdigit():
        names = [f"celery{i}" for i in range(1, int(names[0]) + 1)]
    return [name.replace("%h", host) if "@" in name else f"{name}@{host}" for name in names]


def plan_nodes(args: Sequence[str], obj: Any) -> list[Node]:
    """The nodes ``args`` (names, then worker options) describe, with their commands."""
    names, options = _split_names(args)
    if not names:
        raise click.UsageError("give the node names (e.g. multi start w1 w2) or a count")
    host = socket.gethostname()
    pidfile, options = _take_option(options, ("--pidfile", "-p"))
    logfile, options = _take_option(options, ("--logfile", "-f"))
    prefix: list[str] = []
    for flag, value in (("-A", obj.app_spec), ("-b", obj.broker)):
        if value:
            prefix += [flag, value]
    if getattr(obj, "backend", None):
        prefix += ["--result-backend", obj.backend]
    for option in _GLOBAL_OPTIONS:
        value, options = _take_option(options, (option,))
        if value is not None:
            prefix += [option, value]
    nodes = []
    for name in _node_names(names, host):
        node_pidfile = expand_node_format(pidfile or _DEFAULT_PIDFILE, name)
        node_logfile = expand_node_format(logfile or _DEFAULT_LOGFILE, name)
        argv = [
            sys.executable, "-m", "celeriac", *prefix, "worker", "--detach", "-n", name,
            "--pidfile", os.path.abspath(node_pidfile),
            "--logfile", os.path.abspath(node_logfile), *options,
        ]  # fmt: skip
        nodes.append(Node(name, os.path.abspath(node_pidfile), os.path.abspath(node_logfile), argv))
    return nodes


def _start(nodes: Sequence[Node]) -> int:
    click.echo("> Starting nodes...")
    failures = 0
    for node in nodes:
        if node.pid() is not None:
            click.echo(f"\t> {node.name}: already running (pid {node.pid()})")
            continue
        done = subprocess.run(node.argv, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            click.echo(f"\t> {node.name}: OK")
        else:
            failures += 1
            reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
            click.echo(f"\t> {node.name}: * Child terminated with exit code {done.returncode}")
            click.echo(f"\t  {reason}", err=True)
    return failures


def _signal(nodes: Sequence[Node], signum: signal.Signals, timeout: float | None) -> int:
    click.echo(f"> {'Killing' if signum is signal.SIGKILL else 'Stopping'} nodes...")
    waiting: list[tuple[Node, int]] = []
    for node in nodes:
        pid = node.pid()
        if pid is None:
            click.echo(f"> {node.name}: DOWN")
            continue
        os.kill(pid, signum)
        click.echo(f"\t> {node.name}: {signum.name.removeprefix('SIG')} -> {pid}")
        waiting.append((node, pid))
    if not waiting or timeout == 0:
        return 0
    click.echo(f"> Waiting for {len(waiting)} node{'s' if len(waiting) != 1 else ''}...")
    deadline = None if timeout is None else time.monotonic() + timeout
    left = 0
    for node, pid in waiting:
        while _alive(pid) and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
        if _alive(pid):
            left += 1
            click.echo(f"\t> {node.name}: still running after {timeout:g} s")
        else:
            click.echo(f"\t> {node.name}: OK")
    return left


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # not our child: it exists (os.kill succeeded)
    except ProcessLookupError:
        return False
    return waited == 0


_ARGS = {"context_settings": {"ignore_unknown_options": True, "allow_extra_args": True}}
_TIMEOUT = click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait per stop."
)


@click.group()
def multi() -> None:
    """Start, stop and restart several named workers in the background."""


@multi.command(**_ARGS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def start(obj: Any, /, args: tuple[str, ...]) -> None:
    """Start workers NAMES... with the worker options that follow."""
    if _start(plan_nodes(args, obj)):
        sys.exit(1)


@multi.command(**_ARGS)
@_TIMEOUT
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def stop(obj: Any, /, timeout: float, args: tuple[str, ...]) -> None:
    """Stop workers NAMES... warmly (SIGTERM) and wait for them."""
    if _signal(plan_nodes(args, obj), signal.SIGTERM, timeout):
        sys.exit(1)


@multi.command(**_ARGS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def stopwait(obj: Any, /, args: tuple[str, ...]) -> None:
    """Stop workers NAMES... warmly and wait until every running task has finished."""
    _signal(plan_nodes(args, obj), signal.SIGTERM, None)


@multi.command(**_ARGS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def kill(obj: Any, /, args: tuple[str, ...]) -> None:
    """Kill workers NAMES... at once (SIGKILL)."""
    _signal(plan_nodes(args, obj), signal.SIGKILL, 10.0)


@multi.command(**_ARGS)
@_TIMEOUT
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def restart(obj: Any, /, timeout: float, args: tuple[str, ...]) -> None:
    """Stop workers NAMES... (warmly, waiting), then start them again."""
    nodes = plan_nodes(args, obj)
    if _signal(nodes, signal.SIGTERM, timeout) or _start(nodes):
        sys.exit(1)


@multi.command(**_ARGS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def names(obj: Any, /, args: tuple[str, ...]) -> None:
    """Print the node names."""
    for node in plan_nodes(args, obj):
        click.echo(node.name)


@multi.command(**_ARGS)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def show(obj: Any, /, args: tuple[str, ...]) -> None:
    """Print the command that starts each node."""
    for node in plan_nodes(args, obj):
        click.echo(shlex.join(node.argv))
