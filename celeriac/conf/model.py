"""One entry of the settings table: a Celery setting, its defaults and what celeriac does with it.

The table itself is in :mod:`celeriac.conf.table`; this module only defines its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "CELERIAC_ONLY",
    "IMPLEMENTED",
    "NOT_SUPPORTED",
    "SAME_AS_CELERY",
    "Setting",
    "Status",
]

Status = Literal["implemented", "not supported"]
IMPLEMENTED: Final = "implemented"
NOT_SUPPORTED: Final = "not supported"


class _Marker:
    """A named placeholder value (its repr is its name, for the generated reference)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


SAME_AS_CELERY: Final[Any] = _Marker("SAME_AS_CELERY")
"""``Setting.default`` of a setting whose celeriac default is Celery's."""
CELERIAC_ONLY: Final[Any] = _Marker("CELERIAC_ONLY")
"""``Setting.celery_default`` of a setting Celery does not have."""


@dataclass(frozen=True, slots=True)
class Setting:
    """A setting under its Celery name.

    ``type`` is Celery's type name (``string``, ``int``, ``float``, ``bool``, ``dict``,
    ``list``, ``tuple``, ``bytes``, ``any``). ``celery_default`` is Celery's default, or
    :data:`CELERIAC_ONLY`; ``default`` is celeriac's where it differs, with ``differs``
    saying why. A setting is ``implemented`` (it takes effect as in Celery) or
    ``not supported``, with ``reason`` saying why; setting one of those to anything but
    its default logs a warning at start (:mod:`celeriac.conf.checks`). ``aliases`` are
    the Celery 3 uppercase names that mean the same setting.
    """

    name: str
    type: str
    celery_default: Any
    description: str
    status: Status = IMPLEMENTED
    reason: str = ""
    default: Any = SAME_AS_CELERY
    differs: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def value(self) -> Any:
        """celeriac's default value."""
        return self.celery_default if self.default is SAME_AS_CELERY else self.default

    @property
    def supported(self) -> bool:
        """Whether the setting takes effect."""
        return self.status == IMPLEMENTED

    @property
    def in_celery(self) -> bool:
        """Whether Celery has this setting (else it is celeriac's own)."""
        return self.celery_default is not CELERIAC_ONLY

    @property
    def differs_from_celery(self) -> bool:
        """Whether celeriac's default is not Celery's."""
        return self.default is not SAME_AS_CELERY and self.in_celery
