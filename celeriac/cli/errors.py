"""Errors a user meets on the command line: one line and a non-zero exit, no traceback.

A wrong setting, an unreachable or misconfigured broker, a missing extra, a timeout or an
unknown task is the user's to fix, so the command prints ``Error: <what is wrong>`` (exit
status 1) as Click does for a bad option. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import builtins
from typing import Any

import click

from celeriac.exceptions import CeleriacError

__all__ = ["USER_ERRORS", "UserErrorGroup", "as_click_error"]

USER_ERRORS: tuple[type[BaseException], ...] = (
    CeleriacError,
    builtins.ConnectionError,
    builtins.TimeoutError,
)
"""Exception types that mean "the user must fix something", not "celeriac has a bug"."""


def as_click_error(exc: BaseException) -> click.ClickException:
    """A one-line Click error for ``exc``, naming its kind when the message alone is vague."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, builtins.ConnectionError) and type(exc).__name__ not in message:
        message = f"cannot connect: {message}"
    return click.ClickException(message)


class UserErrorGroup(click.Group):
    """A command group that turns :data:`USER_ERRORS` of any subcommand into one line."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; report a user error as ``Error: ...`` (exit status 1)."""
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise as_click_error(exc) from None
