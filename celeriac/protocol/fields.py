"""The types the fields of a task message must have, checked in one place.

Both ends use these checks: a client building a message from ``apply_async`` options
(a wrong option is a ``TypeError`` or ``ValueError`` at the call, naming the option), and a
worker decoding a message from the wire (the decoder turns the same errors into a
``MessageError``, so that one message is dead-lettered with the cause in the log line).

Error messages show the offending value through :func:`describe`, which is bounded in
length and depth: a value nested ten thousand levels deep is described, never recursed into.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

__all__ = [
    "count",
    "describe",
    "mapping",
    "optional_int",
    "optional_mapping",
    "optional_seconds",
    "optional_text",
    "priority",
    "signatures",
    "time_limits",
]

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 60
_REPR.maxother = 60

MAX_PRIORITY = 255
"""The largest priority AMQP carries (a byte); brokers with fewer levels map it down."""


def describe(value: Any) -> str:
    """A short, safe description of ``value`` for an error message: its type and a repr."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a broken __repr__ must not hide the real problem
        text = "?"
    return f"{type(value).__name__} {text}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def count(value: Any, name: str) -> int:
    """A whole number >= 0 (``retries``, ``replaced_task_nesting``); None counts as 0."""
    if value is None:
        return 0
    if not _is_int(value):
        raise TypeError(f"{name} must be a whole number, not {describe(value)}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def optional_int(value: Any, name: str) -> int | None:
    """None or a whole number >= 0 (``group_index``)."""
    return None if value is None else count(value, name)


def priority(value: Any, name: str = "priority") -> int | None:
    """None or a whole number from 0 to 255."""
    level = optional_int(value, name)
    if level is not None and level > MAX_PRIORITY:
        raise ValueError(f"{name} must be from 0 to {MAX_PRIORITY}, got {level}")
    return level


def optional_seconds(value: Any, name: str) -> float | None:
    """None or a finite number of seconds >= 0 (time limits)."""
    if value is None:
        return None
    if not (_is_int(value) or isinstance(value, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {describe(value)}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value) if isinstance(value, float) else int(value)


def time_limits(value: Any, name: str = "timelimit") -> tuple[float | None, float | None]:
    """The ``timelimit`` header: ``[hard, soft]``, each None or seconds; None means none."""
    if value is None:
        return None, None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise TypeError(f"{name} must be a pair [hard, soft], not {describe(value)}")
    return optional_seconds(value[0], f"{name}[0]"), optional_seconds(value[1], f"{name}[1]")


def optional_text(value: Any, name: str) -> str | None:
    """None or a string (ids, names, reprs)."""
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{name} must be a string or None, not {describe(value)}")


def mapping(value: Any, name: str) -> dict[str, Any]:
    """A dict with string keys (kwargs, stamps, custom headers); None is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, not {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be strings, not {describe(key)}")
    return value


def optional_mapping(value: Any, name: str) -> dict[str, Any] | None:
    """None or a dict with string keys (a chord's signature)."""
    return None if value is None else mapping(value, name)


def signatures(value: Any, name: str) -> list[dict[str, Any]] | None:
    """None or a list of signature dicts (callbacks, errbacks, the rest of a chain)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise TypeError(f"{name} must be a list of signatures, not {describe(value)}")
    for item in value:
        if not isinstance(item, dict):
            raise TypeError(f"{name} must hold signature dicts, not {describe(item)}")
    return list(value)
