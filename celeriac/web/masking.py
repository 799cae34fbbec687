"""Secrets in task arguments, masked before the dashboard keeps or shows them.

Events carry a task's arguments as text (their ``repr``: ``"{'password': 'hunter2'}"``).
Every ``key: value`` or ``key=value`` whose key matches the pattern has its value replaced
by ``'********'`` in ``args``, ``kwargs`` and ``result`` as the feed takes each event, so no
page, API answer, history row or event stream holds it. The default pattern names the
usual secret keys; ``--mask-pattern`` sets another (a regular expression searched in each
key name), and an empty pattern turns masking off. Positional arguments have no names:
they are not masked.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["DEFAULT_PATTERN", "MASK", "Masker"]

DEFAULT_PATTERN = (
    r"(^|[_-])(pass(word|wd)?|secret|token|api[_-]?key|apikey|auth(orization)?|credentials?)"
    r"($|[_-])"
)
"""Key names whose values are masked: the usual secret words as whole parts of the name
(``password``, ``db_password``, ``auth_token``; not ``author`` or ``tokens_used``),
case-insensitive."""

MASK = "'********'"

_FIELDS = ("args", "kwargs", "result")

# A quoted or bare key, then : or =, then its value: a quoted string, or a bare word.
_PAIR = re.compile(
    r"""(?P<key>['"]?(?P<name>[\w-]+)['"]?\s*[:=]\s*)(?P<value>'[^']*'|"[^"]*"|[^,)}\]\s]+)"""
)


class Masker:
    """Masks the values of secret-looking keys in the text fields of an event."""

    def __init__(self, pattern: str | None = DEFAULT_PATTERN) -> None:
        try:
            self._names = re.compile(pattern, re.IGNORECASE) if pattern else None
        except re.error as exc:
            raise ValueError(
                f"mask pattern {pattern!r} is not a regular expression: {exc}"
            ) from None

    def text(self, value: str) -> str:
        """``value`` with the value of every key the pattern finds masked."""
        names = self._names
        if names is None:
            return value

        def masked(match: re.Match[str]) -> str:
            secret = names.search(match.group("name"))
            return match.group("key") + MASK if secret else match.group(0)

        return _PAIR.sub(masked, value)

    def value(self, value: Any) -> Any:
        """``value`` (text, or lists and dicts as decoded from JSON) with every secret-named
        key's value masked; a new object, the given one untouched."""
        names = self._names
        if names is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                key: MASK if isinstance(key, str) and names.search(key) else self.value(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event with its ``args``, ``kwargs`` and ``result`` masked (in place)."""
        if self._names is not None:
            for field in _FIELDS:
                value = event.get(field)
                if isinstance(value, str):
                    event[field] = self.text(value)
        return event
