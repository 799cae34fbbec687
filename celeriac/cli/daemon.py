"""Running a worker or beat as a daemon: pid files, log files, detaching, dropping privileges.

Celery's meanings: ``--pidfile`` refuses to start while the pid it names is alive (a stale
file is replaced) and is removed at exit; ``--logfile`` appends there instead of stderr;
``%n``, ``%h``, ``%d`` and ``%i`` in either expand to the node name, the host name, the
domain and the process index (``%I``: the index with a leading ``-``, empty for 0) as
``celery multi`` writes them; ``--detach`` forks into the background (its own session,
standard streams on ``/dev/null``, the working directory kept); ``--uid``/``--gid`` (name
or number) and ``--umask`` (octal) are applied before the app starts.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import grp
import os
import pwd
import socket
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from celeriac.engines import preload_engines

__all__ = [
    "Pidfile",
    "daemon_options",
    "detach",
    "drop_privileges",
    "expand_node_format",
    "parse_umask",
    "prepare_logfile",
]


def expand_node_format(template: str, nodename: str | None, index: int = 0) -> str:
    """``template`` with Celery's ``%n %h %d %i %I %%`` expanded for ``nodename``."""
    host = socket.gethostname()
    full = nodename or f"celery@{host}"
    name, _, node_host = full.partition("@")
    node_host = node_host or host
    domain = node_host.partition(".")[2]
    values = {
        "n": name,
        "h": node_host,
        "d": domain,
        "i": str(index),
        "I": f"-{index}" if index else "",
        "%": "%",
    }
    out: list[str] = []
    chars = iter(template)
    for char in chars:
        if char != "%":
            out.append(char)
            continue
        code = next(chars, "")
        out.append(values.get(code, f"%{code}"))
    return "".join(out)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Pidfile:
    """A pid file held for the life of this process (Celery's ``Pidfile`` lock)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def read_pid(self) -> int | None:
        """The pid written in the file, or None when there is no file or it is not a pid."""
        try:
            with open(self.path) as handle:
                return int(handle.read().strip() or 0) or None
        except FileNotFoundError:
            return None
        except ValueError:
            return None

    def acquire(self) -> None:
        """Write our pid; refuse (ClickException) when another live process holds it."""
        pid = self.read_pid()
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise click.ClickException(
                f"pidfile {self.path} is held by running process {pid}; stop it first or "
                "give another --pidfile"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # stale: its process is gone
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileExistsError:
            raise click.ClickException(
                f"pidfile {self.path} was created by another process just now"
            ) from None
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        atexit.register(self.release)

    def release(self) -> None:
        """Remove the file if it still names this process."""
        if self.read_pid() == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def prepare_logfile(path: str | None) -> str | None:
    """``path`` made absolute, its directory created (as ``celery multi`` creates it)."""
    if not path:
        return None
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def parse_umask(value: str | None) -> int | None:
    """``--umask``: an octal string (``022``, ``0o22``) as Celery reads it."""
    if value is None or value == "":
        return None
    try:
        return int(str(value).removeprefix("0o"), 8)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an octal umask such as 022") from None


def _resolve(value: str, lookup: Callable[[str], Any], kind: str) -> int:
    """A user or group id from its number or its name."""
    if value.isdigit():
        return int(value)
    try:
        return int(lookup(value)[2])  # pw_uid / gr_gid
    except KeyError:
        raise click.BadParameter(f"no such {kind}: {value!r}") from None


def drop_privileges(app: Any, uid: str | None, gid: str | None) -> None:
    """Become ``gid`` then ``uid`` (the group first, while we still may change it), once
    ``app``'s engines are imported: they are otherwise imported when first used, and the
    new user may not read the code's directory (a checkout under a private home)."""
    if uid or gid:
        preload_engines(app)
    if gid:
        os.setgid(_resolve(gid, grp.getgrnam, "group"))
    if uid:
        user = _resolve(uid, pwd.getpwnam, "user")
        if not gid:
            os.setgid(pwd.getpwuid(user).pw_gid)
        with contextlib.suppress(OSError):
            os.initgroups(pwd.getpwuid(user).pw_name, os.getgid())
        os.setuid(user)


def detach() -> None:
    """Fork into the background: the parent exits 0, the child leads a new session with its
    standard streams on ``/dev/null`` (log with ``--logfile``)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        try:
            os.dup2(null, fd)
        except OSError as exc:  # pragma: no cover - a closed stream is fine
            if exc.errno != errno.EBADF:
                raise
    os.close(null)


F = TypeVar("F", bound=Callable[..., Any])


def daemon_options(function: F) -> F:
    """``--pidfile``, ``-f/--logfile``, ``--detach``, ``--uid``, ``--gid``, ``--umask``: the
    options the worker and beat share (Celery's)."""
    options = [
        click.option("--pidfile", help="Write the pid here (%n, %h, %i); refuse if held."),
        click.option("-f", "--logfile", help="Log to this file instead of stderr (%n, %h, %i)."),
        click.option("-D", "--detach", is_flag=True, help="Run in the background (use -f)."),
        click.option("--uid", help="Run as this user (name or id)."),
        click.option("--gid", help="Run as this group (name or id)."),
        click.option("--umask", help="Octal umask, e.g. 022."),
    ]
    for option in reversed(options):
        function = option(function)
    return function
