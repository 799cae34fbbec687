"""``app.autodiscover_tasks()``: deferred until the task modules are imported, as in Celery."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from celeriac import Celery


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Two importable packages, ``shop_<n>`` with a ``tasks`` module and ``blog_<n>`` without."""
    tag = tmp_path.name.replace("-", "_")
    for name, with_tasks in ((f"shop_{tag}", True), (f"blog_{tag}", False)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
        if with_tasks:
            (tmp_path / name / "tasks.py").write_text(
                "from celeriac import shared_task\n\n@shared_task\ndef ship(x):\n    return x\n"
            )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    return tag


def test_discovery_waits_for_import_default_modules(packages: str) -> None:
    app = Celery("discover", set_as_current=False)
    app.autodiscover_tasks([f"shop_{packages}", f"blog_{packages}"])
    assert f"shop_{packages}.tasks" not in sys.modules
    app.import_default_modules()
    assert f"shop_{packages}.tasks" in sys.modules
    assert f"blog_{packages}.tasks" not in sys.modules  # no such module: skipped


def test_force_imports_at_once_and_a_callable_is_called_then(packages: str) -> None:
    app = Celery("discover", set_as_current=False)
    app.autodiscover_tasks(lambda: [f"shop_{packages}"], force=True)
    assert f"shop_{packages}.tasks" in sys.modules


def test_a_broken_tasks_module_is_not_hidden(packages: str, tmp_path: Path) -> None:
    (tmp_path / f"blog_{packages}" / "tasks.py").write_text("import no_such_module_here\n")
    app = Celery("discover", set_as_current=False)
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        app.autodiscover_tasks([f"blog_{packages}"], force=True)


def test_no_packages_without_django_warns(
    packages: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = Celery("discover", set_as_current=False)
    with caplog.at_level(logging.WARNING):
        app.autodiscover_tasks()
        app.import_default_modules()
    assert "DJANGO_SETTINGS_MODULE is not set" in caplog.text
