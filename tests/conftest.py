"""Shared test wiring: the tests that must run in a process without coverage.

The servers the tests use are chosen in ``tests/services.py``.
"""

from __future__ import annotations

import pytest

# On Python 3.11, clearing an exception raised asynchronously in a thread before it lands
# (PyThreadState_SetAsyncExc(ident, NULL), as the thread executor does when a time limit
# fires just as its job ends) leaves the interpreter's "eval breaker" set for good; from then
# on any trace function, coverage's included, makes every thread spin at its next function
# call. These tests make the executor do exactly that, so `make test` runs them in a second
# pytest process without coverage (``-m untraced``); plain ``pytest`` runs them with the rest.
UNTRACED = {
    "tests/worker/test_executor_threads.py::test_soft_limit_raises_inside_fn_and_does_not_leak",
    "tests/worker/test_executor_threads.py::test_hard_limit_raises_and_other_jobs_continue",
    "tests/worker/test_executor_threads.py::test_abandoned_thread_keeps_its_slot_until_it_ends",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the UNTRACED tests ``untraced``."""
    for item in items:
        if item.nodeid in UNTRACED:
            item.add_marker(pytest.mark.untraced)
