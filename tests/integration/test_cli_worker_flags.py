"""``celeriac worker`` flags in real processes: daemon files, purge, include, pools, autoscale."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.integration.cli_run import ROOT, celeriac, start, wait_for_line, wait_until, write_app

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """``cliapp`` on an SQLite broker and result store of its own."""
    write_app(tmp_path, broker=f"sqlite:///{tmp_path / 'broker.db'}")
    (tmp_path / "cliapp_extra.py").write_text(
        "import time\nfrom cliapp import app\n\n"
        "@app.task(name='cliapp.nap')\ndef nap(seconds):\n    time.sleep(seconds)\n"
        "    return seconds\n"
    )
    return tmp_path


def test_detach_with_pidfile_and_logfile(app_dir: Path) -> None:
    run = app_dir / "run"
    started = celeriac(
        "-A",
        "cliapp",
        "worker",
        "--detach",
        "-l",
        "info",
        "-n",
        "w1@%h",
        "-c",
        "1",
        "--pidfile",
        str(run / "%n.pid"),
        "--logfile",
        str(run / "%n-%i.log"),
        cwd=app_dir,
    )
    assert started.returncode == 0, started.stderr
    pidfile, logfile = run / "w1.pid", run / "w1-0.log"
    wait_until(lambda: logfile.exists() and "ready" in logfile.read_text() and pidfile.exists())
    pid = int(pidfile.read_text())
    try:
        held = celeriac(
            "-A", "cliapp", "worker", "--pidfile", str(run / "%n.pid"), "-n", "w1@%h", cwd=app_dir
        )
        assert held.returncode == 1 and f"held by running process {pid}" in held.stderr
        task_id = celeriac(
            "-A", "cliapp", "call", "cliapp.add", "-a", "[2, 3]", cwd=app_dir
        ).stdout.strip()
        result = celeriac(
            "-A", "cliapp", "result", "--wait", "--timeout", "30", task_id, cwd=app_dir
        )
        assert result.stdout.strip() == "5"
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not pidfile.exists())  # removed at exit
    assert "warm shutdown" in logfile.read_text()


def test_a_stale_pidfile_is_replaced(app_dir: Path) -> None:
    pidfile = app_dir / "stale.pid"
    pidfile.write_text("999999999\n")
    worker = start(
        "-A", "cliapp", "worker", "-P", "solo", "--pidfile", str(pidfile), "-l", "info", cwd=app_dir
    )
    wait_for_line(worker, "ready")
    assert not pidfile.exists()  # ours was removed when it stopped


@pytest.mark.parametrize("pool", ["gevent", "eventlet"])
def test_green_pools_are_refused_with_the_alternatives(app_dir: Path, pool: str) -> None:
    done = celeriac("-A", "cliapp", "worker", "-P", pool, cwd=app_dir)
    assert done.returncode == 2
    assert f"the {pool} pool is not supported" in done.stderr
    assert "-P threads" in done.stderr and "async def" in done.stderr


def test_purge_before_start(app_dir: Path) -> None:
    for _ in range(2):
        celeriac("-A", "cliapp", "call", "cliapp.add", "-a", "[1, 1]", cwd=app_dir)
    worker = start("-A", "cliapp", "worker", "--purge", "-P", "solo", cwd=app_dir)
    wait_for_line(worker, "Erased 2 messages")


def test_include_imports_task_modules(app_dir: Path) -> None:
    worker = start("-A", "cliapp", "worker", "-I", "cliapp_extra", "-P", "solo", cwd=app_dir)
    wait_for_line(worker, "cliapp.nap")  # listed under [tasks] in the banner


def test_autoscale_grows_the_pool_under_load(app_dir: Path) -> None:
    for _ in range(4):
        celeriac("-A", "cliapp", "call", "cliapp.nap", "-a", "[3]", cwd=app_dir)
    worker = start(
        "-A",
        "cliapp",
        "worker",
        "-I",
        "cliapp_extra",
        "--autoscale",
        "3,1",
        "-l",
        "info",
        cwd=app_dir,
    )
    assert "autoscale: 1 -> 3 processes" in wait_for_line(worker, "autoscale: 1 -> 3")


def test_autoscale_needs_the_prefork_pool(app_dir: Path) -> None:
    done = celeriac("-A", "cliapp", "worker", "--autoscale", "3,1", "-P", "threads", cwd=app_dir)
    assert done.returncode == 1
    assert "--autoscale needs the prefork pool" in done.stderr


def test_bad_autoscale_value(app_dir: Path) -> None:
    done = celeriac("-A", "cliapp", "worker", "--autoscale", "many", cwd=app_dir)
    assert done.returncode == 2 and "expected MAX,MIN" in done.stderr


def test_autoscale_banner_as_celery(app_dir: Path) -> None:
    worker = start("-A", "cliapp", "worker", "--autoscale", "3,1", cwd=app_dir)
    assert "{min=1, max=3} (prefork)" in wait_for_line(worker, "concurrency:")


@pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
def test_uid_gid_umask_are_applied(tmp_path: Path) -> None:
    write_app(tmp_path)  # memory broker: nothing to write as the other user
    tmp_path.chmod(0o755)
    worker = start(
        "-A",
        "cliapp",
        "worker",
        "-P",
        "solo",
        "--uid",
        "nobody",
        "--gid",
        "nogroup",
        "--umask",
        "027",
        "-l",
        "info",
        cwd=tmp_path,
    )
    try:
        # The user changes last (after the umask, the group and the engines' imports).
        wait_until(lambda: worker.poll() is not None or _uid(worker.pid) == "65534")
        status = _status(worker.pid)
        assert status["Uid"].split()[0] == "65534"
        assert status["Gid"].split()[0] == "65534"
        assert status["Umask"] == "0027"
    finally:
        wait_for_line(worker, "ready")


_UNREADABLE_AFTER_DROP = """\
import importlib.abc, os, sys

class RefuseEnginesAfterDrop(importlib.abc.MetaPathFinder):
    \"\"\"As a checkout under a private home is to the user the worker drops to.\"\"\"
    def find_spec(self, name, path=None, target=None):
        if name.startswith("celeriac.engines.") and os.geteuid() != 0:
            raise ImportError(f"{name}: permission denied (simulated)")
        return None

sys.meta_path.insert(0, RefuseEnginesAfterDrop())
"""


def test_uid_drop_with_a_checkout_the_new_user_cannot_read(tmp_path: Path) -> None:
    """The broker and result engines are imported before the worker changes user: after it,
    the code's directory may be closed to the new user."""
    write_app(tmp_path)
    tmp_path.chmod(0o755)
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(_UNREADABLE_AFTER_DROP)
    worker = start("-A", "cliapp", "worker", "-P", "solo", "--uid", "nobody", "-l", "info",
                   cwd=tmp_path, env={"PYTHONPATH": f"{guard}{os.pathsep}{ROOT}"})  # fmt: skip
    wait_for_line(worker, "ready")


def _uid(pid: int) -> str:
    return _status(pid).get("Uid", "").split("\t")[0]


def _status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return {}
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def test_excluding_every_queue_is_an_error(app_dir: Path) -> None:
    done = celeriac("-A", "cliapp", "worker", "-Q", "a,b", "-X", "a,b", cwd=app_dir)
    assert done.returncode == 1 and "no queue to consume" in done.stderr
