"""JSON log lines for the worker and beat (``--log-format json``).

Each record is one JSON object on one line: ``time`` (ISO 8601, UTC), ``level``,
``logger``, ``message``, ``process`` (pid) and ``process_name``; in a task, ``task_id``
and ``task_name``; a traceback as ``exception``. The worker's task-lifecycle lines
(received, succeeded, failed, retry...) also carry ``state`` and, once the task ran,
``runtime`` (seconds), given by :func:`task_fields` as the record's ``extra``; beat's
"Sending due task" lines carry the ``entry`` name and the sent task's id and name.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from celeriac.context import request_var

__all__ = ["LIFECYCLE_FIELDS", "LOG_FORMATS", "JsonFormatter", "check_log_format", "task_fields"]

LOG_FORMATS = ("text", "json")
"""The values of ``--log-format`` and ``worker_log_format_type``."""

LIFECYCLE_FIELDS = ("task_id", "task_name", "state", "runtime", "entry")
"""The fields a record may carry as ``extra`` that a JSON line copies."""


def check_log_format(value: str) -> str:
    """``value`` in lower case if it is a log format; ValueError naming the choices."""
    kind = str(value).strip().lower()
    if kind not in LOG_FORMATS:
        raise ValueError(f"unknown log format {value!r}: use {' or '.join(LOG_FORMATS)}")
    return kind


def task_fields(task_id: str, task_name: str, state: str, **more: Any) -> dict[str, Any]:
    """The ``extra`` of a task-lifecycle log record: which task, its state, and ``more``
    (``runtime=``)."""
    return {"task_id": task_id, "task_name": task_name, "state": state, **more}


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON (see the module's docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's fields as a JSON object; never more than one line."""
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "process_name": record.processName,
        }
        line.update(_task_of(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # default=str: a value json cannot write (an id object, a path) is written as text.
        return json.dumps(line, default=str, ensure_ascii=False)


def _task_of(record: logging.LogRecord) -> dict[str, Any]:
    """The task fields the record carries, else those of the task running now."""
    found = {
        name: record.__dict__[name]
        for name in LIFECYCLE_FIELDS
        if record.__dict__.get(name) not in (None, "???")
    }
    if "task_id" not in found:
        request = request_var.get(None)
        if request is not None and request.id:
            found.update(task_id=request.id, task_name=request.task)
    return found
