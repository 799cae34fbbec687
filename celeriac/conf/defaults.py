"""celeriac's default value of every setting, and Celery 3's names for them.

Both come from the settings table (:mod:`celeriac.conf.table`), where each default that
differs from Celery's says why and which value restores Celery's behaviour.
"""

from __future__ import annotations

import os
from typing import Any

from celeriac.conf.table import ALIASES, SETTINGS

__all__ = ["DEFAULTS", "OLD_NAMES", "default_concurrency"]

DEFAULTS: dict[str, Any] = {name: row.value for name, row in SETTINGS.items()}
"""Setting name -> celeriac's default (shared: copy before changing a mutable one)."""

OLD_NAMES: dict[str, str] = ALIASES
"""Celery 3-style uppercase names still found in settings files, mapped to the new ones."""


def default_concurrency() -> int:
    """Celery's default: one slot per CPU."""
    return os.cpu_count() or 1
