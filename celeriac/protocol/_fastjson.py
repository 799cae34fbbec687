"""JSON through orjson when it is installed (``pip install 'celeriac[speedups]'``).

Every message a worker takes is parsed twice (the kombu envelope, then the task body)
and orjson does that about three times faster. It is stricter than the standard
library (no ``NaN``) and reads integers beyond 64 bits as floats, so text it refuses
or that holds a run of 19 or more digits goes to :func:`json.loads`: results never
differ, only speed does.

Every message a client publishes is encoded twice too (the body, then the envelope).
:func:`dumps` gives orjson's bytes only for values made of exact ``str``, ``int``,
``bool``, ``None``, lists, tuples and ``str``-keyed dicts, for which they are the very
bytes of the compact, non-ASCII-escaping standard encoder; anything else (floats, whose
text differs, ``UUID``, ``Enum`` and datetimes, which orjson would write its own way,
subclasses, integers beyond 64 bits, lone surrogates) is left to the caller's encoder.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - exercised only without the extra
    orjson = None  # type: ignore[assignment]

__all__ = ["HAVE_ORJSON", "SCALARS", "dumps", "dumps_plain", "is_plain", "loads"]

HAVE_ORJSON = orjson is not None
# Digits become b"1", everything else b"0": a run of 19 (2**63 has 19 digits) is then a
# plain substring search, ten times faster than a regular expression.
_DIGITS = bytes(0x31 if 0x30 <= b <= 0x39 else 0x30 for b in range(256))
_LONG_RUN = b"1" * 19
# Types both encoders write alike: exact types only (a subclass may carry its own meaning).
SCALARS = frozenset({str, int, bool, type(None)})
"""The scalar types orjson writes as the standard encoder does (exact types only)."""
_SCALARS = SCALARS
_CONTAINERS = frozenset({dict, list, tuple})
_MAX_DEPTH = 32


def loads(data: bytes) -> Any:
    """Parse JSON ``data`` exactly as :func:`json.loads` would."""
    if orjson is not None and _LONG_RUN not in data.translate(_DIGITS):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def is_plain(value: Any, depth: int = 0) -> bool:
    """True if ``value`` holds only exact str/int/bool/None, lists, tuples and dicts.

    Dict keys are not looked at: orjson refuses any key that is not an exact ``str``,
    and the caller's encoder then writes the value as usual.
    """
    kind = type(value)
    if kind is dict:
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    else:
        return kind in _SCALARS
    if depth >= _MAX_DEPTH:
        return False  # deep (maybe circular) data: the caller's encoder reports it
    for item in items:
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind not in _CONTAINERS:
            return False
        if item and not is_plain(item, depth + 1):  # (empty ones need no call)
            return False
    return True


def dumps(value: Any) -> bytes | None:
    """orjson's UTF-8 JSON of ``value`` when it equals the standard encoder's, else None."""
    if orjson is None or not is_plain(value):
        return None
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return None  # an integer beyond 64 bits or a lone surrogate


def dumps_plain(value: Any) -> bytes | None:
    """orjson's JSON of ``value``, which the caller knows :func:`is_plain` (not checked
    again); None without orjson, or for an integer beyond 64 bits or a lone surrogate."""
    if orjson is None:
        return None
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return None
