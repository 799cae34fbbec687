"""The checks of ``apply_async`` options: a wrong one fails at the call, naming itself.

A time limit given as a string, a countdown that is not a number or a priority out of range
used to be published as given; the worker then dead-lettered the message (or, before it
checked, ran it more than once). Each option is checked here with the same field rules the
worker's decoder applies (:mod:`celeriac.protocol.fields`), so what a client can send, a
worker can read. Wrong types raise ``TypeError``, wrong values ``ValueError``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from typing import Any

from celeriac.protocol import fields

__all__ = ["check_options", "check_task_defaults"]

_TEXT = (
    "task_id", "parent_id", "root_id", "shadow", "group_id", "reply_to", "argsrepr",
    "kwargsrepr", "routing_key", "serializer", "compression",
)  # fmt: skip


def check_options(options: Mapping[str, Any]) -> None:
    """Raise TypeError or ValueError naming the first option ``apply_async`` cannot send."""
    for name, value in options.items():
        if value is not None:  # None is "not given" for every option
            check = _CHECKS.get(name)
            if check is not None:
                check(value, name)


def check_task_defaults(time_limit: Any, soft_time_limit: Any, priority: Any) -> None:
    """Check what a task (or a ``task_*`` setting) gives every publish of it."""
    fields.optional_seconds(time_limit, "time_limit")
    fields.optional_seconds(soft_time_limit, "soft_time_limit")
    fields.priority(priority)


def _named(value: Any, name: str) -> None:
    """A queue or exchange: a name, or an object with one (kombu's ``Queue``/``Exchange``)."""
    if value is None or isinstance(value, str) or isinstance(getattr(value, "name", None), str):
        return
    raise TypeError(f"{name} must be a name or a {name} object, not {fields.describe(value)}")


def _signatures(value: Any, name: str) -> None:
    """None, a signature (a mapping), or a list of them."""
    if value is None:
        return
    for item in value if isinstance(value, list | tuple) else (value,):
        if not isinstance(item, Mapping):
            raise TypeError(
                f"{name} must be a signature or a list of signatures, not {fields.describe(item)}"
            )


def _seconds(value: Any, name: str) -> None:
    """A finite number of seconds (negative: already due), or None."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {fields.describe(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")


def _when(value: Any, name: str) -> None:
    """A datetime, seconds from now, a timedelta or an ISO-8601 string, or None."""
    if value is None or isinstance(value, dt.datetime | dt.timedelta):
        return
    if isinstance(value, int | float) and not isinstance(value, bool):
        _seconds(value, name)
        return
    if isinstance(value, str):
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name} is not an ISO-8601 time: {value!r}") from None
        return
    raise TypeError(
        f"{name} must be a datetime, seconds, a timedelta or an ISO-8601 string, "
        f"not {fields.describe(value)}"
    )


_CHECKS: dict[str, Callable[[Any, str], object]] = {
    "time_limit": fields.optional_seconds,
    "soft_time_limit": fields.optional_seconds,
    "retries": fields.count,
    "priority": fields.priority,
    "group_index": fields.optional_int,
    "headers": fields.mapping,
    "queue": _named,
    "exchange": _named,
    "link": _signatures,
    "link_error": _signatures,
    "countdown": _seconds,
    "eta": _when,
    "expires": _when,
    **dict.fromkeys(_TEXT, fields.optional_text),
}
"""The check of each option (given its value and name); options not listed are not checked."""
