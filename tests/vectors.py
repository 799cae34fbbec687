"""Where the tests find the messages captured from real Celery (``tests/data/celery-vectors``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["VECTORS", "load_vector"]

VECTORS = Path(__file__).resolve().parent / "data" / "celery-vectors"


def load_vector(name: str) -> dict[str, Any]:
    """One capture file (``name`` relative to :data:`VECTORS`), parsed."""
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data
