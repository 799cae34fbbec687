"""``-A``: finding the app as Celery does (``module``, ``module:attr``, ``package.attr``)."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from celeriac import Celery
from celeriac.app import current_app
from celeriac.cli.loading import find_app


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """An empty folder, the current directory, and a package name no other test uses."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    name = f"proj_{uuid.uuid4().hex[:8]}"
    yield tmp_path, name
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]


def write(path: Path, code: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))


APP = "from celeriac import Celery\n{name} = Celery({label!r}, set_as_current=False)\n"


def test_a_module_is_found_from_the_current_directory(project: tuple[Path, str]) -> None:
    root, name = project
    write(root / f"{name}.py", APP.format(name="app", label="plain"))
    app = find_app(name)
    assert isinstance(app, Celery) and app.main == "plain"
    assert sys.path[0] == str(root)  # the current directory became importable


def test_module_colon_attribute(project: tuple[Path, str]) -> None:
    root, name = project
    write(root / f"{name}.py", APP.format(name="workers", label="colon"))
    assert find_app(f"{name}:workers").main == "colon"


def test_package_dot_attribute(project: tuple[Path, str]) -> None:
    root, name = project
    write(root / name / "__init__.py", APP.format(name="queue_app", label="dotted"))
    assert find_app(f"{name}.queue_app").main == "dotted"


def test_any_app_in_the_module_when_it_is_not_called_app(project: tuple[Path, str]) -> None:
    root, name = project
    write(root / f"{name}.py", APP.format(name="tasks_app", label="other-name"))
    assert find_app(name).main == "other-name"


def test_a_package_with_a_celery_module(project: tuple[Path, str]) -> None:
    """``-A proj`` finds the app of ``proj/celery.py``, Celery's Django layout."""
    root, name = project
    write(root / name / "__init__.py", "from . import celery\n")
    write(root / name / "celery.py", APP.format(name="app", label="django-style"))
    assert find_app(name).main == "django-style"


def test_a_package_with_an_empty_init_and_a_celery_module(project: tuple[Path, str]) -> None:
    """``proj/__init__.py`` empty: ``proj.celery`` is imported to find the app, as Celery does."""
    root, name = project
    write(root / name / "__init__.py", "")
    write(root / name / "celery.py", APP.format(name="app", label="empty-init"))
    assert find_app(name).main == "empty-init"
    assert f"{name}.celery" in sys.modules


def test_the_celery_module_wins_over_other_apps_of_the_package(
    project: tuple[Path, str],
) -> None:
    root, name = project
    write(root / name / "__init__.py", APP.format(name="other", label="in-init"))
    write(root / name / "celery.py", APP.format(name="app", label="in-celery-module"))
    assert find_app(name).main == "in-celery-module"


def test_an_error_inside_the_celery_module_is_not_hidden(project: tuple[Path, str]) -> None:
    root, name = project
    write(root / name / "__init__.py", "")
    write(root / name / "celery.py", "import celeriac_no_such_dependency\n")
    with pytest.raises(ModuleNotFoundError, match="celeriac_no_such_dependency"):
        find_app(name)


def test_no_spec_is_the_current_app(project: tuple[Path, str]) -> None:
    assert find_app(None) is current_app()


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        ("{name}_missing", None, "cannot import app module"),
        ("{name}:nothing", "x = 1\n", "is not a celeriac app"),
        ("{name}", "x = 1\n", "has no celeriac app"),
        ("{name}.nothing", "x = 1\n", "cannot import app module"),
    ],
)
def test_bad_specs_are_usage_errors(
    project: tuple[Path, str], spec: str, code: str | None, message: str
) -> None:
    root, name = project
    if code is not None:
        write(root / f"{name}.py", code)
    with pytest.raises(click.UsageError, match=message):
        find_app(spec.format(name=name))


def test_an_import_error_inside_the_app_module_is_not_hidden(project: tuple[Path, str]) -> None:
    root, name = project
    write(root / f"{name}.py", "import celeriac_no_such_dependency\n")
    with pytest.raises(ModuleNotFoundError, match="celeriac_no_such_dependency"):
        find_app(name)
