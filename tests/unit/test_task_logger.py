"""``get_task_logger``: task loggers whose records name the running task, as Celery's."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from celery import Celery as CeleryApp
from celery.app.log import TaskFormatter as CeleryTaskFormatter
from celery.utils.log import get_task_logger as celery_task_logger

from celeriac import Celery
from celeriac.utils.log import TaskFormatter, get_task_logger, task_logger

FORMAT = "%(levelname)s %(task_name)s[%(task_id)s]: %(message)s"


def _log_from_a_task(app: Any, logger: logging.Logger) -> str:
    @app.task(name="proj.tasks.hello")
    def hello() -> None:
        logger.warning("hello %s", "world")

    result = hello.apply()
    logger.warning("outside")
    return str(result.id)


def _captured(logger: logging.Logger, formatter: logging.Formatter) -> tuple[io.StringIO, Any]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    return stream, handler


def test_records_name_the_running_task_as_celery_formats_them() -> None:
    lines = {}
    for name, app, logger, formatter in (
        ("celery", CeleryApp("t", set_as_current=False), celery_task_logger("proj.a"),
         CeleryTaskFormatter(FORMAT, use_color=False)),
        ("celeriac", Celery("t", broker="memory://", set_as_current=False),
         get_task_logger("proj.a"), TaskFormatter(FORMAT, use_color=False)),
    ):  # fmt: skip
        stream, handler = _captured(logger, formatter)
        try:
            task_id = _log_from_a_task(app, logger)
        finally:
            logger.removeHandler(handler)
        lines[name] = stream.getvalue().replace(task_id, "<id>")
    assert lines["celeriac"] == lines["celery"]
    expected = "WARNING proj.tasks.hello[<id>]: hello world\nWARNING ???[???]: outside\n"
    assert lines["celery"] == expected


def test_any_formatter_can_use_the_task_fields() -> None:
    logger = get_task_logger("proj.b")
    stream, handler = _captured(logger, logging.Formatter(FORMAT))  # not a TaskFormatter
    try:
        task_id = _log_from_a_task(Celery("t", broker="memory://", set_as_current=False), logger)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == (
        f"WARNING proj.tasks.hello[{task_id}]: hello world\nWARNING ???[???]: outside\n"
    )


def test_task_loggers_sit_under_the_task_logger_and_reserved_names_are_refused() -> None:
    assert get_task_logger("proj.d").parent is task_logger
    assert celery_task_logger("proj.e").parent is task_logger  # Celery's parent, by name
    for name in ("celeriac.task", "celeriac", "celery.task"):
        with pytest.raises(RuntimeError, match="reserved"):
            get_task_logger(name)
