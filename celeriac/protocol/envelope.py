"""The transport-neutral message: a serialized body plus headers and properties."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Envelope"]


@dataclass(slots=True)
class Envelope:
    """A message as transports move it (AMQP's model; kombu's JSON envelope on Redis/SQLite).

    ``properties`` holds the AMQP basic properties Celery sets: ``correlation_id``,
    ``reply_to``, ``delivery_mode`` and ``priority``.
    """

    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/json"
    content_encoding: str = "utf-8"
    properties: dict[str, Any] = field(default_factory=dict)
    plain: bool = field(default=False, compare=False, repr=False)
    """Set by the encoder that built ``headers`` and ``properties`` when they hold only
    exact ``str``/``int``/``bool``/``None`` values, lists of them and empty dicts (JSON
    that orjson writes byte for byte as the standard encoder does: see ``_fastjson``),
    so that the kombu envelope need not look at them again. Whoever changes them after
    the encoder must clear it."""

    @property
    def priority(self) -> int:
        """The message priority (0 when unset)."""
        value = self.properties.get("priority")
        return int(value) if isinstance(value, int) else 0
