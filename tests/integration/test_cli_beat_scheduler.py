"""``celeriac beat -S module:Class`` runs a Celery-interface scheduler; ``--pidfile`` is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.cli_run import celeriac, start, wait_for_line, wait_until

pytestmark = [pytest.mark.timeout(120)]

APP = """\
from celeriac import Celery
app = Celery("bapp", broker="sqlite:///{db}")
@app.task(name="bapp.add")
def add(x, y):
    return x + y
"""

SCHEDULER = """\
import logging, os
log = logging.getLogger("ticker")
class Ticker:
    def __init__(self, app, max_interval=None, **options):
        self.app = app
        log.warning("ticker made with max_interval=%s", max_interval)
    def tick(self):
        self.app.send_task("bapp.add", (1, 2))
        log.warning("ticker tick pid=%s", os.getpid())
        return 0.2
    def close(self):
        open("closed.txt", "w").write("closed")
class NoTick:
    pass
"""


@pytest.fixture
def beat_dir(tmp_path: Path) -> Path:
    (tmp_path / "bapp.py").write_text(APP.format(db=tmp_path / "b.db"))
    (tmp_path / "mysched.py").write_text(SCHEDULER)
    return tmp_path


def test_a_celery_interface_scheduler_runs_and_is_closed(beat_dir: Path) -> None:
    pidfile = beat_dir / "beat.pid"
    beat = start(
        "-A",
        "bapp",
        "beat",
        "-S",
        "mysched:Ticker",
        "--max-interval",
        "2",
        "--pidfile",
        str(pidfile),
        cwd=beat_dir,
    )
    seen = wait_for_line(beat, "ticker tick")
    assert "max_interval=2.0" in seen
    assert f"pid={beat.pid}" in seen
    wait_until((beat_dir / "closed.txt").exists, timeout=30)
    assert not pidfile.exists()  # removed at exit


def test_the_pidfile_is_written_by_the_native_scheduler(beat_dir: Path) -> None:
    pidfile = beat_dir / "native.pid"
    beat = start("-A", "bapp", "beat", "-l", "info", "--pidfile", str(pidfile), cwd=beat_dir)
    try:
        wait_until(lambda: pidfile.exists() or beat.poll() is not None, timeout=30)
        assert int(pidfile.read_text()) == beat.pid
    finally:
        wait_for_line(beat, "Starting")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("nosuchmodule:Scheduler", "cannot load beat scheduler 'nosuchmodule:Scheduler'"),
        ("mysched:NoTick", "is not a beat scheduler class"),
        ("mysched:Missing", "cannot load beat scheduler 'mysched:Missing'"),
    ],
)
def test_a_bad_scheduler_is_one_clear_error(beat_dir: Path, path: str, message: str) -> None:
    done = celeriac("-A", "bapp", "beat", "-S", path, cwd=beat_dir)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
