"""Fault tests: each module runs its own broker process; every test is bounded in time."""

from __future__ import annotations

import pytest

from tests.faults import app as fault_app


@pytest.fixture(autouse=True)
def _close_app() -> object:
    yield None
    fault_app.app.close()
