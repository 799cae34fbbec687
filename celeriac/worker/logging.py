"""How the worker and beat programs set up logging, as Celery's ``app.log.setup`` does.

1. ``setup_logging`` is sent. If it has receivers, they configure logging and nothing else
   is done here (a receiver's exception is raised).
2. Otherwise, with ``worker_hijack_root_logger`` the root logger's handlers (and those of
   Celery's and celeriac's loggers) are removed; the root logger gets a handler writing
   ``worker_log_format`` lines (``worker_log_datefmt``) to stderr or ``logfile``, coloured
   as ``worker_log_color`` says (None: when writing to a terminal), and the log level.
   ``after_setup_logger`` is sent.
3. The task logger (``celery.task``, the parent of every ``get_task_logger`` logger) gets a
   handler writing ``worker_task_log_format`` lines (``worker_task_log_datefmt``), where
   ``%(task_name)s`` and ``%(task_id)s`` are the running task's (``???`` outside a task);
   it does not propagate.
   ``after_setup_task_logger`` is sent.

With ``worker_log_format_type = "json"`` (``--log-format json``) both handlers write one
JSON object a line instead (:mod:`celeriac.worker.jsonlog`), never coloured; the text
formats are then not used. A ``setup_logging`` receiver still takes over.

Logging is set up once per process; later calls do nothing.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from typing import Any

from celeriac import masking, signals
from celeriac.context import request_var
from celeriac.exceptions import ImproperlyConfigured
from celeriac.worker.jsonlog import JsonFormatter, check_log_format

__all__ = ["TASK_LOGGER", "ColorFormatter", "TaskFormatter", "parse_level", "setup_logging"]

TASK_LOGGER = "celery.task"
"""The parent of every task logger (Celery's name, so Celery-style task loggers inherit)."""

_HIJACKED = ("celery", "celery.task", "celery.redirected", "celeriac")
_COLORS = {"DEBUG": "34", "WARNING": "33", "ERROR": "31", "CRITICAL": "35"}
_done = False


class ColorFormatter(logging.Formatter):
    """Celery's: the whole line coloured by its level (blue, yellow, red, magenta)."""

    def __init__(
        self, fmt: str | None = None, use_color: bool = True, datefmt: str | None = None
    ) -> None:
        super().__init__(fmt, datefmt)
        self.use_color = use_color

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        color = _COLORS.get(record.levelname) if self.use_color else None
        return f"\033[1;{color}m{line}\033[0m" if color else line


class TaskFormatter(ColorFormatter):
    """Adds ``task_name`` and ``task_id`` of the task running in this thread/context."""

    def format(self, record: logging.LogRecord) -> str:
        request = request_var.get(None)
        if request is not None and request.id:
            record.__dict__.update(task_id=request.id, task_name=request.task)
        else:
            record.__dict__.setdefault("task_name", "???")
            record.__dict__.setdefault("task_id", "???")
        return super().format(record)


def parse_level(level: str | int) -> int:
    """``"info"``, ``"INFO"`` or ``20`` → 20; ValueError naming the accepted names."""
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ValueError(
            f"unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR, CRITICAL or FATAL"
        )
    return value


def setup_logging(
    app: Any, loglevel: str | int, logfile: str | None = None, colorize: bool | None = None
) -> bool:
    """Set up this process's logging for a worker or beat; whether receivers of
    ``setup_logging`` did it instead (Celery's "custom logging")."""
    global _done
    if _done:
        return False
    _done = True
    masking.install()  # no password of a broker or backend URL in any log line, custom or not
    conf = app.conf
    level = parse_level(loglevel)
    fmt = conf["worker_log_format"]
    color = _use_color(conf["worker_log_color"] if colorize is None else colorize, logfile)
    receivers = signals.setup_logging.send(
        sender=None, loglevel=level, logfile=logfile, format=fmt, colorize=color
    )
    for _, response in receivers:
        if isinstance(response, Exception):
            _done = False
            raise response
    if receivers:
        return True
    json_lines = _log_format(conf) == "json"
    color = color and not json_lines
    root = logging.getLogger()
    if conf["worker_hijack_root_logger"]:
        for logger in (root, *map(logging.getLogger, _HIJACKED)):
            logger.handlers = []
    formatter = ColorFormatter(fmt, color, conf["worker_log_datefmt"])
    _add_handler(root, logfile, JsonFormatter() if json_lines else formatter)
    root.setLevel(level)
    signals.after_setup_logger.send(
        sender=None, logger=root, loglevel=level, logfile=logfile, format=fmt, colorize=color
    )
    _setup_task_logger(app, level, logfile, color, json_lines)
    return False


def _log_format(conf: Any) -> str:
    """``worker_log_format_type``, checked: ``text`` or ``json``."""
    try:
        return check_log_format(conf["worker_log_format_type"])
    except ValueError as exc:
        global _done
        _done = False
        raise ImproperlyConfigured(f"worker_log_format_type: {exc}") from None


def _setup_task_logger(
    app: Any, level: int, logfile: str | None, color: bool, json_lines: bool
) -> None:
    fmt = app.conf["worker_task_log_format"]
    logger = logging.getLogger(TASK_LOGGER)
    datefmt = app.conf["worker_task_log_datefmt"]
    formatter = JsonFormatter() if json_lines else TaskFormatter(fmt, color, datefmt)
    _add_handler(logger, logfile, formatter)
    logger.setLevel(level)
    logger.propagate = False
    signals.after_setup_task_logger.send(
        sender=None, logger=logger, loglevel=level, logfile=logfile, format=fmt, colorize=color
    )


def _use_color(wanted: bool | None, logfile: str | None) -> bool:
    """Celery's rule: colour only to a terminal, never to a file, unless told not to."""
    if wanted is False:
        return False
    return logfile is None and sys.stderr.isatty()


def _add_handler(logger: logging.Logger, logfile: str | None, formatter: logging.Formatter) -> None:
    """Give ``logger`` a handler, unless it has a real one already (as Celery leaves it)."""
    if any(not isinstance(h, logging.NullHandler) for h in logger.handlers):
        return
    handler: logging.Handler
    if logfile is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.handlers.WatchedFileHandler(logfile, encoding="utf-8")
    handler.setFormatter(formatter)
    logger.addHandler(handler)
