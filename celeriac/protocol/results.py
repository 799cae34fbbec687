"""Celery's result document (SPEC §5.1) and the exception encoding inside it."""

from __future__ import annotations

import builtins
import datetime as dt
import importlib
from typing import Any

from celeriac import exceptions as celeriac_exceptions
from celeriac import states
from celeriac.exceptions import RemoteError

__all__ = [
    "exception_from_dict",
    "exception_to_dict",
    "make_meta",
    "now_iso",
]


def now_iso() -> str:
    """The current UTC time as Celery writes ``date_done``."""
    return dt.datetime.now(dt.UTC).isoformat()


def _json_safe_args(exc: BaseException) -> list[Any]:
    """Exception args that survive JSON; anything else becomes its ``str``."""
    safe: list[Any] = []
    for arg in exc.args:
        if arg is None or isinstance(arg, str | int | float | bool):
            safe.append(arg)
        else:
            safe.append(str(arg))
    return safe


def exception_to_dict(exc: BaseException) -> dict[str, Any]:
    """Encode an exception as Celery does: ``exc_type``, ``exc_message`` (args), ``exc_module``."""
    cls = type(exc)
    return {
        "exc_type": cls.__qualname__,
        "exc_message": _json_safe_args(exc),
        "exc_module": cls.__module__,
    }


def _resolve_exception_class(module: str | None, qualname: str) -> type[BaseException] | None:
    if not module:
        return None
    if module == "celery.exceptions":
        # Celery's names (ChordError, TaskRevokedError, ...) become celeriac's own classes.
        ours = getattr(celeriac_exceptions, qualname, None)
        if isinstance(ours, type) and issubclass(ours, BaseException):
            return ours
    try:
        obj: Any = builtins if module == "builtins" else importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:  # an unimportable module or missing name: fall back to RemoteError
        return None
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None


def exception_from_dict(data: Any) -> BaseException:
    """Rebuild an exception from its dict; RemoteError when the type is not importable here."""
    if not isinstance(data, dict) or "exc_type" not in data:
        return RemoteError("Exception", None, data)
    qualname = str(data["exc_type"])
    module = data.get("exc_module")
    message = data.get("exc_message", [])
    args = list(message) if isinstance(message, list | tuple) else [message]
    cls = _resolve_exception_class(module, qualname)
    if cls is not None:
        try:
            return cls(*args)
        except Exception:  # a constructor with a different signature
            exc = cls.__new__(cls)
            exc.args = tuple(args)
            return exc
    return RemoteError(qualname, module, message)


def make_meta(
    task_id: str,
    status: str,
    result: Any = None,
    *,
    traceback: str | None = None,
    children: list[Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a result document with Celery's keys, in Celery's order."""
    done = status in states.READY_STATES
    meta: dict[str, Any] = {
        "status": status,
        "result": result,
        "traceback": traceback,
        "children": children or [],
        "date_done": now_iso() if done else None,
    }
    if extra:
        meta.update({k: v for k, v in extra.items() if v is not None})
    meta["task_id"] = task_id
    return meta
