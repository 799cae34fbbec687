"""``celeriac.contrib.pytest`` works as ``celery.contrib.pytest``: the same test module,
using the fixtures as Celery documents them, passes with either plugin.

Each run is a pytest subprocess on a generated module that names one plugin. celeriac's
own plugin is registered by installing celeriac, so the Celery run also proves that
Celery's plugin, named later, keeps its fixtures.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.interop, pytest.mark.timeout(180)]

MODULE = """
import pytest

from {lib}.contrib.abortable import AbortableTask
from {lib}.contrib.testing.worker import start_worker

pytest_plugins = ("{lib}.contrib.pytest",)


@pytest.fixture(scope="session")
def celery_config():
    return {{"task_default_queue": "tests"}}


def test_a_task_defined_in_the_test_runs(celery_app, celery_worker):
    @celery_app.task
    def mul(x, y):
        return x * y

    celery_worker.reload()
    assert mul.delay(4, 4).get(timeout=10) == 16


def test_failures_propagate(celery_app, celery_worker):
    @celery_app.task
    def boom():
        raise KeyError("missing")

    with pytest.raises(KeyError):
        boom.delay().get(timeout=10)


@pytest.mark.celery(result_expires=123)
def test_the_marker_overrides_the_config(celery_app):
    assert celery_app.conf.result_expires == 123
    assert celery_app.conf.task_default_queue == "tests"
    assert "celery.ping" in celery_app.tasks


def test_start_worker(celery_app):
    @celery_app.task(bind=True, base=AbortableTask)
    def add(self, x, y):
        return x + y

    with start_worker(celery_app, perform_ping_check=True) as worker:
        assert worker.app is celery_app
        assert add.delay(1, 2).get(timeout=10) == 3


def test_the_session_worker(celery_session_app, celery_session_worker):
    assert celery_session_app.tasks["celery.ping"].delay().get(timeout=10) == "pong"
"""


def _run(lib: str, tmp_path: Path) -> str:
    folder = tmp_path / lib
    folder.mkdir()
    (folder / "test_generated.py").write_text(MODULE.format(lib=lib))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-o",
            "addopts=",
            str(folder),
        ],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=150,
        check=False,
    )
    return done.stdout + done.stderr


def test_the_same_module_passes_with_either_plugin(tmp_path: Path) -> None:
    pytest.importorskip("celery")
    summaries = {}
    for lib in ("celery", "celeriac"):
        output = _run(lib, tmp_path)
        found = re.search(r"(\d+) passed", output)
        summaries[lib] = (found.group(1) if found else None, "failed" in output, output)
    for lib, (passed, failed, output) in summaries.items():
        assert passed == "5" and not failed, f"{lib}:\n{output}"
