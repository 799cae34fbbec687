"""Publishing stores exactly the bytes it stored before the publish path was made fast.

``data/publish_golden.json`` was written by ``python -m tests.unit.publish_cases`` from
the code before any publish-path cache or fast encoder existed; every case (each
``apply_async`` option, task-level options, settings, routes, router functions, canvas
options, tagged JSON types, compression, pickle, publishing from inside a task) must
still give the same route, due time and stored bytes, key order included.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.publish_cases import GOLDEN, cases

_GOLDEN: dict[str, Any] = json.loads(GOLDEN.read_text())
_CASES = dict(cases())


def test_every_golden_case_is_still_produced() -> None:
    assert set(_CASES) == set(_GOLDEN)


@pytest.mark.parametrize("name", sorted(_GOLDEN))
def test_publish_gives_the_recorded_bytes(name: str) -> None:
    assert _CASES[name]() == _GOLDEN[name]


@pytest.mark.parametrize("name", sorted(_GOLDEN))
def test_publishing_twice_gives_the_same_bytes(name: str) -> None:
    """Whatever is cached by the first publish must not leak into the second."""
    assert _CASES[name]() == _CASES[name]() == _GOLDEN[name]
