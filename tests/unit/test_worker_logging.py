"""The worker's logging set-up against Celery's ``app.log.setup_logging_subsystem``: the
same signals with the same arguments, ``setup_logging`` receivers taking over, the hijack
rule, and the task name and id in task log lines."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery, signals
from celeriac.context import Context, request_var
from celeriac.exceptions import ImproperlyConfigured
from celeriac.worker import jsonlog
from celeriac.worker import logging as worker_logging

celery = pytest.importorskip("celery")
celery_signals = pytest.importorskip("celery.signals")
celery_log = pytest.importorskip("celery.app.log")

NAMES = ("setup_logging", "after_setup_logger", "after_setup_task_logger")


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts unconfigured and leaves the loggers as they were."""
    monkeypatch.setattr(worker_logging, "_done", False)
    monkeypatch.setattr(celery_log.Logging, "_setup", False)
    loggers = [logging.getLogger(), *map(logging.getLogger, ("celery", "celery.task", "celeriac"))]
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def _record(module: Any, names: tuple[str, ...] = NAMES) -> tuple[list[Any], list[Any]]:
    """Connect a recorder to ``names`` of a signals module; (calls, receivers to keep)."""
    calls: list[tuple[str, dict[str, Any]]] = []
    kept = []
    for name in names:

        def receiver(_name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            calls.append((_name, kwargs))

        getattr(module, name).connect(receiver)
        kept.append((getattr(module, name), receiver))
    return calls, kept


def _disconnect(kept: list[Any]) -> None:
    for signal, receiver in kept:
        signal.disconnect(receiver)


def _celery_setup(names: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    app = celery.Celery("probe", set_as_current=False)
    calls, kept = _record(celery_signals, names)
    try:
        app.log.setup_logging_subsystem(loglevel="INFO")
    finally:
        _disconnect(kept)
    return calls


def _our_setup(names: tuple[str, ...], **conf: Any) -> list[tuple[str, dict[str, Any]]]:
    app = Celery("probe", **conf)
    calls, kept = _record(signals, names)
    try:
        worker_logging.setup_logging(app, "INFO")
    finally:
        _disconnect(kept)
    return calls


def _comparable(calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The calls with loggers named (the objects differ between the two runs)."""
    return [
        (name, {k: (v.name if isinstance(v, logging.Logger) else v) for k, v in kw.items()})
        for name, kw in calls
    ]


def test_signals_and_arguments_are_celerys_without_a_setup_logging_receiver() -> None:
    names = ("after_setup_logger", "after_setup_task_logger")
    theirs = _comparable(_celery_setup(names))
    logging.getLogger().handlers = []  # as before Celery's run
    logging.getLogger("celery.task").handlers = []
    ours = _comparable(_our_setup(names))
    assert [n for n, _ in ours] == ["after_setup_logger", "after_setup_task_logger"]
    assert ours == theirs
    assert ours[0][1]["logger"] == "root" and ours[1][1]["logger"] == "celery.task"


def test_a_setup_logging_receiver_takes_over() -> None:
    theirs = _comparable(_celery_setup(NAMES))
    root = logging.getLogger()
    before = root.handlers[:]
    ours = _comparable(_our_setup(NAMES))
    assert ours == theirs and [n for n, _ in ours] == ["setup_logging"]
    default_format = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
    assert ours[0][1] == {"sender": None, "loglevel": logging.INFO, "logfile": None,
                          "colorize": False, "format": default_format}  # fmt: skip
    assert root.handlers == before  # nothing configured by celeriac


def test_a_failing_setup_logging_receiver_is_raised() -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("my logging config is broken")

    signals.setup_logging.connect(broken)
    try:
        with pytest.raises(RuntimeError, match="broken"):
            worker_logging.setup_logging(Celery("probe"), "INFO")
    finally:
        signals.setup_logging.disconnect(broken)


def test_hijack_root_logger_replaces_the_root_handlers() -> None:
    root = logging.getLogger()
    mine = logging.StreamHandler(io.StringIO())
    root.handlers = [mine]
    worker_logging.setup_logging(Celery("probe"), "DEBUG")
    assert mine not in root.handlers and len(root.handlers) == 1
    assert root.level == logging.DEBUG


def test_without_hijack_the_root_handlers_stay_and_none_is_added() -> None:
    root = logging.getLogger()
    mine = logging.StreamHandler(io.StringIO())
    root.handlers = [mine]
    worker_logging.setup_logging(Celery("probe", worker_hijack_root_logger=False), "INFO")
    assert root.handlers == [mine]  # Celery leaves a configured logger alone


def test_log_formats_are_the_settings_and_task_lines_name_the_task() -> None:
    app = Celery(
        "probe",
        worker_log_format="W %(levelname)s %(message)s",
        worker_task_log_format="T %(task_name)s[%(task_id)s] %(message)s",
    )
    logging.getLogger().handlers = []
    logging.getLogger("celery.task").handlers = []
    worker_logging.setup_logging(app, "INFO")
    root_out, task_out = io.StringIO(), io.StringIO()
    logging.getLogger().handlers[0].stream = root_out  # type: ignore[attr-defined]
    task_logger = logging.getLogger("celery.task")
    task_logger.handlers[0].stream = task_out  # type: ignore[attr-defined]
    assert task_logger.propagate is False
    logging.getLogger("some.module").info("plain")
    child = logging.getLogger("celery.task.mytasks")  # what get_task_logger returns
    child.info("outside")
    token = request_var.set(Context(id="id-1", task="mytasks.add"))
    try:
        child.info("inside")
    finally:
        request_var.reset(token)
    assert root_out.getvalue() == "W INFO plain\n"
    assert task_out.getvalue() == "T ???[???] outside\nT mytasks.add[id-1] inside\n"


def test_colour_only_when_asked_and_on_a_terminal() -> None:
    formatter = worker_logging.ColorFormatter("%(message)s", use_color=True)
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "bad", None, None)
    assert formatter.format(record) == "\033[1;31mbad\033[0m"
    assert worker_logging.ColorFormatter("%(message)s", use_color=False).format(record) == "bad"
    logging.getLogger().handlers = []
    worker_logging.setup_logging(Celery("probe", worker_log_color=True), "INFO")
    handler = logging.getLogger().handlers[0]
    assert handler.formatter.use_color is False  # type: ignore[union-attr]  # not a terminal


def test_log_file_and_bad_level() -> None:
    with pytest.raises(ValueError, match="unknown log level 'verbose'"):
        worker_logging.parse_level("verbose")
    assert worker_logging.parse_level("warning") == logging.WARNING


def test_setup_happens_once_per_process() -> None:
    app = Celery("probe")
    logging.getLogger().handlers = []
    worker_logging.setup_logging(app, "INFO")
    calls, kept = _record(signals)
    try:
        worker_logging.setup_logging(app, "INFO")
    finally:
        _disconnect(kept)
    assert calls == [] and len(logging.getLogger().handlers) == 1


def test_json_lines_replace_both_formats_and_carry_the_task() -> None:
    app = Celery(
        "probe",
        worker_log_format_type="json",
        worker_log_format="W %(message)s",
        worker_log_color=True,
    )
    logging.getLogger().handlers = []
    logging.getLogger("celery.task").handlers = []
    worker_logging.setup_logging(app, "INFO")
    root_out, task_out = io.StringIO(), io.StringIO()
    logging.getLogger().handlers[0].stream = root_out  # type: ignore[attr-defined]
    logging.getLogger("celery.task").handlers[0].stream = task_out  # type: ignore[attr-defined]
    extra = jsonlog.task_fields("id-9", "mytasks.mul", "SUCCESS", runtime=0.25)
    logging.getLogger("celeriac.worker").info("done %s", "here", extra=extra)
    token = request_var.set(Context(id="id-1", task="mytasks.add"))
    try:
        logging.getLogger("celery.task.mytasks").warning("inside")
        try:
            raise KeyError("k")
        except KeyError:
            logging.getLogger("some.module").exception("with a\nsecond line")
    finally:
        request_var.reset(token)
    done, failed = map(json.loads, root_out.getvalue().splitlines())
    (inside,) = map(json.loads, task_out.getvalue().splitlines())
    assert {k: done[k] for k in ("level", "logger", "message", "process", "process_name")} == {
        "level": "INFO",
        "logger": "celeriac.worker",
        "message": "done here",
        "process": os.getpid(),
        "process_name": "MainProcess",
    }
    assert (done["task_id"], done["task_name"], done["state"], done["runtime"]) == (
        "id-9", "mytasks.mul", "SUCCESS", 0.25,
    )  # fmt: skip
    assert dt.datetime.fromisoformat(done["time"]).utcoffset() == dt.timedelta(0)
    assert (inside["task_id"], inside["task_name"], inside["message"]) == (
        "id-1", "mytasks.add", "inside",
    )  # fmt: skip
    assert "state" not in inside and "runtime" not in inside
    assert failed["message"] == "with a\nsecond line" and failed["task_id"] == "id-1"
    assert "KeyError: 'k'" in failed["exception"]


def test_text_stays_the_default_and_an_unknown_format_is_refused() -> None:
    assert Celery("probe").conf.worker_log_format_type == "text"
    logging.getLogger().handlers = []
    with pytest.raises(ImproperlyConfigured, match="'xml': use text or json"):
        worker_logging.setup_logging(Celery("probe", worker_log_format_type="xml"), "INFO")
    app = Celery("probe", broker="memory://", worker_log_format_type="XML")
    with pytest.raises(ImproperlyConfigured, match="worker_log_format_type: unknown log format"):
        app._prepare()  # at worker and beat start
    worker_logging.setup_logging(Celery("probe", worker_log_format_type="Text"), "INFO")
    handler = logging.getLogger().handlers[0]
    assert type(handler.formatter) is worker_logging.ColorFormatter
