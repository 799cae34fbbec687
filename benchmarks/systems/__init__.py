"""What the harness knows about each benchmarked system: how to run its worker and producer.

Each system has one adapter module here (its worker command lines and which workloads it
takes part in) and one app module in ``benchmarks/apps`` (its tasks and producer calls,
imported inside the system's own venv).
"""

from __future__ import annotations

from benchmarks.systems import (
    celeriac_adapter,
    celery_adapter,
    dramatiq_adapter,
    huey_adapter,
    taskiq_adapter,
)
from benchmarks.systems.base import Case, System, Variant

__all__ = ["Case", "System", "Variant", "all_systems"]

_ADAPTERS = (celeriac_adapter, celery_adapter, dramatiq_adapter, huey_adapter, taskiq_adapter)


def all_systems() -> list[System]:
    """Every system, celeriac first."""
    return [module.SYSTEM for module in _ADAPTERS]
