"""The global options of ``celeriac``, as Celery's: --workdir, --config, --loader, -A lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.cli_run import celeriac

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """``proj/`` with an empty ``__init__.py`` and the app in ``proj/celery.py``."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "__init__.py").write_text("")
    (tmp_path / "proj" / "celery.py").write_text(
        "from celeriac import Celery\n"
        "app = Celery('proj', broker='memory://own')\n"
        "app.conf.task_default_queue = 'own-queue'\n"
    )
    (tmp_path / "cfgmod.py").write_text(
        "broker_url = 'memory://from-config'\ntask_default_queue = 'config-queue'\n"
        "result_expires = 123\n"
    )
    return tmp_path


def test_workdir_and_app_in_proj_celery(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    done = celeriac("--workdir", str(project), "-A", "proj", "report", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert "own-queue" in done.stdout


def test_config_module_is_read_under_the_apps_own_settings(project: Path) -> None:
    done = celeriac("-A", "proj", "--config", "cfgmod", "report", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "result_expires: 123" in done.stdout  # from the module
    assert "own-queue" in done.stdout and "config-queue" not in done.stdout  # the app wins


def test_config_from_the_environment(project: Path) -> None:
    done = celeriac(
        "report", cwd=project, env={"CELERY_CONFIG_MODULE": "cfgmod", "CELERY_APP": "proj"}
    )
    assert done.returncode == 0, done.stderr
    assert "result_expires: 123" in done.stdout


def test_default_app_reads_celeryconfig(tmp_path: Path) -> None:
    (tmp_path / "celeryconfig.py").write_text("task_default_queue = 'from-celeryconfig'\n")
    done = celeriac("report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "from-celeryconfig" in done.stdout


def test_a_missing_config_module_is_one_error_line(project: Path) -> None:
    done = celeriac("-A", "proj", "--config", "nosuchmodule", "report", cwd=project)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "nosuchmodule" in done.stderr


def test_custom_loader_is_refused_builtin_accepted(project: Path) -> None:
    refused = celeriac("-A", "proj", "--loader", "myproj.loaders:Loader", "report", cwd=project)
    assert refused.returncode == 2
    assert "custom loaders are not supported" in refused.stderr
    accepted = celeriac("-A", "proj", "--loader", "app", "report", cwd=project)
    assert accepted.returncode == 0, accepted.stderr


def test_compat_flags_are_accepted(project: Path) -> None:
    done = celeriac("-q", "-C", "--skip-checks", "-A", "proj", "report", cwd=project)
    assert done.returncode == 0, done.stderr
