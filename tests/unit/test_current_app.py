"""The process-wide current app: made on first use, by the factory app.py registers."""

from __future__ import annotations

import pytest

from celeriac import Celery, _state
from celeriac.app import current_app


def test_the_first_use_makes_a_default_app_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_state, "_current", None)
    first = current_app()
    assert isinstance(first, Celery)
    assert current_app() is first is _state.get_current_app()


def test_a_new_app_becomes_current_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_state, "_current", None)
    mine = Celery("mine")
    Celery("other", set_as_current=False)
    assert current_app() is mine


def test_without_app_py_there_is_no_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_state, "_current", None)
    monkeypatch.setattr(_state, "_default_factory", None)
    with pytest.raises(RuntimeError, match=r"celeriac.app is not imported"):
        _state.get_current_app()
