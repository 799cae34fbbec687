"""The settings table against the installed Celery: a Celery release that adds, removes or
changes a setting makes these tests fail (``scripts/celery_settings.py`` prints stubs)."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from celeriac.conf import ALIASES, SETTINGS, Settings
from celeriac.conf.model import IMPLEMENTED, NOT_SUPPORTED
from celeriac.conf.reference import render

defaults = pytest.importorskip("celery.app.defaults")
ROOT = Path(__file__).resolve().parents[2]
CELERY = dict(defaults.flatten(defaults.NAMESPACES))


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(theirs, float) and math.isinf(theirs):
        return isinstance(ours, float) and math.isinf(ours)
    return type(ours) is type(theirs) and ours == theirs


def test_every_celery_setting_is_known_and_nothing_else_claims_to_be_celerys() -> None:
    ours = {name for name, row in SETTINGS.items() if row.in_celery}
    assert ours == set(CELERY), (sorted(set(CELERY) - ours), sorted(ours - set(CELERY)))
    assert len(ours) == 207  # Celery 5.7


def test_celery_defaults_and_types_as_in_celery() -> None:
    wrong = []
    for name, option in CELERY.items():
        row = SETTINGS[name]
        kind = option.type.__name__ if isinstance(option.type, type) else str(option.type)
        if not _same(row.celery_default, option.default) or row.type != {"str": "string"}.get(
            kind, kind
        ):
            wrong.append((name, row.celery_default, option.default, row.type, kind))
    assert wrong == []


def test_every_celery_3_name_maps_to_the_new_one() -> None:
    assert ALIASES == defaults._TO_NEW_KEY
    conf = Settings()
    for old, new in defaults._TO_NEW_KEY.items():
        assert _same(conf[old], conf[new])


def test_celeriac_defaults_are_celerys_unless_the_entry_says_why() -> None:
    conf = Settings()
    for name, row in SETTINGS.items():
        if not row.in_celery:
            continue
        if row.differs_from_celery:
            assert row.differs, f"{name}: a different default needs its reason"
        else:
            value = conf[name]
            assert _same(value, row.celery_default) or (
                isinstance(value, dt.timedelta) and value == row.celery_default
            ), name


def test_every_entry_is_documented() -> None:
    for name, row in SETTINGS.items():
        assert row.status in (IMPLEMENTED, NOT_SUPPORTED), name
        assert len(row.description) > 20 and row.description.endswith((".", ")")), name
        if row.status == NOT_SUPPORTED:
            assert row.reason and not row.reason.endswith("."), name
        assert all(alias.isupper() for alias in row.aliases), name


def test_configuration_reference_is_up_to_date() -> None:
    """docs/configuration.md is generated: run ``python -m celeriac.conf.reference``."""
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == render(), "regenerate: python -m celeriac.conf.reference > docs/configuration.md"


def test_the_comparison_script_finds_nothing_missing() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "celery_settings.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
