"""Loggers for task modules: ``logger = get_task_logger(__name__)``, as in Celery.

Every task logger is a child of Celery's ``celery.task`` logger, and its records carry
``task_name`` and ``task_id`` (``'???'`` outside a task), so a format such as Celery's
``worker_task_log_format`` prints ``tasks.add[<id>]: message``. The worker gives
``celery.task`` a handler with that format (:mod:`celeriac.worker.logging`, which also
holds the formatters re-exported here); other loggers from :func:`get_logger` sit under
``celeriac``.
"""

from __future__ import annotations

import logging
import multiprocessing.util
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from celeriac.context import current_request
from celeriac.worker.logging import TASK_LOGGER, ColorFormatter, TaskFormatter

__all__ = [
    "LOG_LEVELS",
    "ColorFormatter",
    "LoggingProxy",
    "TaskFormatter",
    "base_logger",
    "get_logger",
    "get_multiprocessing_logger",
    "get_task_logger",
    "in_sighandler",
    "mlevel",
    "reset_multiprocessing_logger",
    "set_in_sighandler",
    "task_logger",
]

LOG_LEVELS: dict[Any, Any] = {
    **logging.getLevelNamesMapping(),
    **{level: name for name, level in logging.getLevelNamesMapping().items()},
}
"""Level names to numbers and back (``LOG_LEVELS['INFO'] == 20``, ``LOG_LEVELS[20]``)."""

_RESERVED = frozenset({"celeriac", "celeriac.task", "celery", "celery.task"})
_in_sighandler = False

base_logger = logging.getLogger("celeriac")
"""The parent of every logger :func:`get_logger` returns."""


def _under(parent: logging.Logger, logger: logging.Logger) -> logging.Logger:
    """Make ``logger`` a descendant of ``parent`` unless it already is (Celery's rule)."""
    node: logging.Logger | None = logger
    while node is not None:
        if node is parent:
            return logger
        node = node.parent
    logger.parent = parent
    return logger


def get_logger(name: str) -> logging.Logger:
    """The logger ``name``, placed under ``celeriac`` unless it is a top-level logger."""
    logger = logging.getLogger(name)
    if logging.root not in (logger, logger.parent) and logger is not base_logger:
        _under(base_logger, logger)
    return logger


class _TaskFields(logging.Filter):
    """Adds ``task_name`` and ``task_id`` of the running task to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = current_request()
        if request is not None and request.id is not None:
            record.task_name, record.task_id = request.task, request.id
        else:
            record.__dict__.setdefault("task_name", "???")
            record.__dict__.setdefault("task_id", "???")
        return True


_TASK_FIELDS = _TaskFields()

task_logger = logging.getLogger(TASK_LOGGER)
"""The parent of every task logger (``celery.task``); the worker puts its handler here."""


def get_task_logger(name: str) -> logging.Logger:
    """The logger for a task module: under ``celery.task``, with the task's name and id."""
    if name in _RESERVED:
        raise RuntimeError(f"logger name {name!r} is reserved for celeriac's own loggers")
    logger = _under(task_logger, get_logger(name))
    if _TASK_FIELDS not in logger.filters:
        logger.addFilter(_TASK_FIELDS)
    return logger


def mlevel(level: int | str) -> int:
    """A level number from a name (``'info'``) or a number."""
    if isinstance(level, str):
        return int(LOG_LEVELS[level.upper()])
    return level


class LoggingProxy:
    """A file-like object that writes each line to a logger (for redirecting stdout)."""

    mode = "w"
    name = None
    closed = False

    def __init__(self, logger: logging.Logger, loglevel: int | str | None = None) -> None:
        self.logger = logger
        self.loglevel = mlevel(loglevel) if loglevel is not None else logging.WARNING

    def write(self, data: str) -> int:
        """Log ``data`` (stripped) unless it is blank; returns its length."""
        if not _in_sighandler and data.strip():
            self.logger.log(self.loglevel, data.rstrip("\n"))
        return len(data)

    def writelines(self, lines: Sequence[str]) -> None:
        """Log each line."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Nothing to flush: every write is logged at once."""

    def close(self) -> None:
        """Mark closed."""
        self.closed = True

    def isatty(self) -> bool:
        """Never a terminal."""
        return False


def set_in_sighandler(value: bool) -> None:
    """Record whether a signal handler is running (LoggingProxy then stays quiet)."""
    global _in_sighandler
    _in_sighandler = value


@contextmanager
def in_sighandler() -> Iterator[None]:
    """Mark the enclosed block as running in a signal handler."""
    set_in_sighandler(True)
    try:
        yield
    finally:
        set_in_sighandler(False)


def get_multiprocessing_logger() -> logging.Logger:
    """The :mod:`multiprocessing` package's logger."""
    return multiprocessing.util.get_logger()


def reset_multiprocessing_logger() -> None:
    """Drop the :mod:`multiprocessing` logger so a forked child makes its own."""
    multiprocessing.util._logger = None  # type: ignore[attr-defined]
