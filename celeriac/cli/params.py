"""Click parameter types shared by the commands, named and checked as Celery's are."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from celeriac.worker.jsonlog import LOG_FORMATS

__all__ = ["LOG_LEVEL", "LogLevel", "log_format_option", "loglevel_option"]


class LogLevel(click.Choice[str]):
    """A log level name, any case: DEBUG, INFO, WARNING, ERROR, CRITICAL or FATAL."""

    def __init__(self) -> None:
        super().__init__(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL"))

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The level name in upper case, or a usage error listing the valid ones."""
        return super().convert(str(value).upper(), param, ctx)


LOG_LEVEL = LogLevel()


F = TypeVar("F", bound=Callable[..., Any])


def loglevel_option(function: F) -> F:
    """``-l/--loglevel``, as the worker and beat take it (default WARNING)."""
    return click.option(
        "-l",
        "--loglevel",
        type=LOG_LEVEL,
        default="WARNING",
        show_default=True,
        help="DEBUG, INFO, WARNING, ERROR, CRITICAL or FATAL.",
    )(function)


def log_format_option(function: F) -> F:
    """``--log-format text|json`` (env ``CELERIAC_LOG_FORMAT``), as the worker and beat take
    it; unset, ``worker_log_format_type`` decides."""
    return click.option(
        "--log-format",
        "log_format",
        type=click.Choice(LOG_FORMATS, case_sensitive=False),
        envvar="CELERIAC_LOG_FORMAT",
        help="text (worker_log_format) or json: one JSON object a line"
        " (default: worker_log_format_type, text).",
    )(function)
