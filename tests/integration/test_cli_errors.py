"""A user's mistake on the command line gives one clear line and a non-zero exit status."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.integration.cli_run import celeriac, start, wait_for_line, write_app
from tests.services import amqp_vhost_url

pytestmark = [pytest.mark.timeout(120)]


def _one_error_line(stderr: str) -> str:
    """The ``Error:`` line; fails when there is a traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_unknown_vhost_is_named(tmp_path: Path) -> None:
    vhost = f"celeriac-missing-{uuid.uuid4().hex[:8]}"
    write_app(tmp_path)
    done = celeriac("-A", "cliapp", "-b", amqp_vhost_url(vhost), "worker", cwd=tmp_path)
    assert done.returncode != 0
    line = _one_error_line(done.stderr)
    assert repr(vhost) in line and "rabbitmqctl add_vhost" in line


def test_unknown_log_level(tmp_path: Path) -> None:
    write_app(tmp_path)
    done = celeriac("-A", "cliapp", "worker", "-l", "verbose", cwd=tmp_path)
    assert done.returncode == 2
    assert "'VERBOSE' is not one of" in _one_error_line(done.stderr)


def test_lower_case_log_level_is_accepted(tmp_path: Path) -> None:
    write_app(tmp_path)
    done = celeriac("-A", "cliapp", "beat", "-l", "info", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_result_wait_timeout(tmp_path: Path) -> None:
    write_app(tmp_path, broker=f"sqlite:///{tmp_path / 'b.db'}")
    done = celeriac("-A", "cliapp", "result", "--wait", "--timeout", "0.5", "nope", cwd=tmp_path)
    assert done.returncode == 1
    assert "not ready after 0.5" in _one_error_line(done.stderr)


@pytest.mark.parametrize("command", [("worker",), ("call", "cliapp.add"), ("purge", "-f")])
def test_unknown_url_scheme(tmp_path: Path, command: tuple[str, ...]) -> None:
    write_app(tmp_path)
    done = celeriac("-A", "cliapp", "-b", "foo://x", *command, cwd=tmp_path)
    assert done.returncode == 1
    assert "unknown broker URL scheme 'foo'" in _one_error_line(done.stderr)


def test_worker_without_app_warns_that_no_task_is_registered(tmp_path: Path) -> None:
    worker = start("-b", "memory://", "worker", "-P", "solo", cwd=tmp_path)
    assert "give the app with -A" in wait_for_line(worker, "no tasks are registered")
