"""The commands of Celery's CLI: shell, multi, list bindings, upgrade, and the refused ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.cli_run import ROOT, celeriac, wait_until, write_app

pytestmark = [pytest.mark.timeout(180)]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path, broker=f"sqlite:///{tmp_path / 'broker.db'}")
    return tmp_path


def test_shell_has_the_app_canvas_and_tasks(app_dir: Path) -> None:
    script = "print(app.main, add.name, group.__name__, celery is app)\n"
    done = subprocess.run(
        [sys.executable, "-m", "celeriac", "-A", "cliapp", "shell", "--python"],
        input=script, capture_output=True, text=True, timeout=60, cwd=app_dir,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "cliapp cliapp.add group True" in done.stdout + done.stderr


def test_shell_without_tasks(app_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celeriac", "-A", "cliapp", "shell", "--python", "-T"],
        input="print('add' in dir())\n", capture_output=True, text=True, timeout=60,
        cwd=app_dir, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
    )  # fmt: skip
    assert "False" in done.stdout + done.stderr


def _pid(path: Path) -> int:
    return int(path.read_text())


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_multi_start_stop_restart(app_dir: Path) -> None:
    names = ("w1", "w2")
    options = ("-A", "cliapp", "-c", "1", "-l", "info", "--pidfile", "run/%n.pid",
               "--logfile", "log/%n%I.log")  # fmt: skip
    started = celeriac("multi", "start", *names, *options, cwd=app_dir)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "w1@" in started.stdout and ": OK" in started.stdout
    pidfiles = [app_dir / "run" / f"{name}.pid" for name in names]
    try:
        wait_until(lambda: all(p.exists() for p in pidfiles))
        first = [_pid(p) for p in pidfiles]
        assert len(set(first)) == 2
        again = celeriac("multi", "start", *names, *options, cwd=app_dir)
        assert again.stdout.count("already running") == 2
        task_id = celeriac(
            "-A", "cliapp", "call", "cliapp.add", "-a", "[20, 22]", cwd=app_dir
        ).stdout.strip()
        got = celeriac("-A", "cliapp", "result", "--wait", "--timeout", "60", task_id, cwd=app_dir)
        assert got.stdout.strip() == "42"
        restarted = celeriac("multi", "restart", *names, *options, cwd=app_dir)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert all(_gone(pid) for pid in first)
        wait_until(lambda: all(p.exists() for p in pidfiles))
        second = [_pid(p) for p in pidfiles]
        assert not set(second) & set(first)
        assert (app_dir / "log" / "w1.log").exists()
        stopped = celeriac("multi", "stop", *names, *options, cwd=app_dir)
        assert stopped.returncode == 0, stopped.stdout
        assert stopped.stdout.count(": OK") == 2
        assert all(_gone(pid) for pid in second)
        assert not any(p.exists() for p in pidfiles)
    finally:
        for path in pidfiles:
            if path.exists():
                os.kill(_pid(path), signal.SIGKILL)


@pytest.mark.parametrize("names", [("3",), ("w1", "w2")])
def test_multi_names_as_celery(app_dir: Path, names: tuple[str, ...]) -> None:
    pytest.importorskip("celery")
    ours = celeriac("multi", "names", *names, "-A", "cliapp", cwd=app_dir)
    theirs = subprocess.run(
        [sys.executable, "-m", "celery", "multi", "names", *names, "-A", "cliapp"],
        capture_output=True, text=True, timeout=60, cwd=app_dir, check=False,
    )  # fmt: skip
    assert ours.stdout.split() == theirs.stdout.split()
    assert len(ours.stdout.split()) == (3 if names == ("3",) else 2)


def test_multi_default_files_are_celerys(app_dir: Path) -> None:
    shown = celeriac("multi", "show", "w1", "-A", "cliapp", cwd=app_dir).stdout
    assert "--pidfile /var/run/celery/w1.pid" in shown
    assert "--logfile /var/log/celery/w1.log" in shown


def test_list_bindings_is_celerys_table(app_dir: Path) -> None:
    done = celeriac("-A", "cliapp", "list", "bindings", cwd=app_dir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["Queue", "Exchange", "Routing", "Key"]
    assert lines[2].split() == ["celery", "celery(direct)", "celery"]


def test_upgrade_settings_matches_celery(tmp_path: Path) -> None:
    pytest.importorskip("celery")
    source = (
        "BROKER_URL = 'redis://'\nCELERYD_CONCURRENCY = 4\nCELERY_TASK_SERIALIZER = 'json'\n"
        "CELERYBEAT_SCHEDULE = {}\nunrelated = 1\n"
    )
    for flags in ((), ("--django",)):
        ours, theirs = tmp_path / "ours.py", tmp_path / "theirs.py"
        ours.write_text(source)
        theirs.write_text(source)
        celeriac("upgrade", "settings", str(ours), *flags, cwd=tmp_path)
        subprocess.run(
            [sys.executable, "-m", "celery", "upgrade", "settings", str(theirs), *flags],
            capture_output=True, timeout=60, check=True, cwd=tmp_path,
        )  # fmt: skip
        assert ours.read_text() == theirs.read_text()
        assert (tmp_path / "ours.py.orig").read_text() == source


@pytest.mark.parametrize("command", ["amqp", "graph", "logtool"])
def test_unsupported_commands_say_what_to_use(tmp_path: Path, command: str) -> None:
    done = celeriac(command, "anything", cwd=tmp_path)
    assert done.returncode == 2
    assert "Error:" in done.stderr and "No such command" not in done.stderr


def test_migrate_moves_or_copies_messages(tmp_path: Path) -> None:
    source, target = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    write_app(tmp_path, broker=source)
    (tmp_path / "cliapp.py").write_text(
        (tmp_path / "cliapp.py").read_text()
        + "\n@app.task(name='cliapp.other')\ndef other():\n    return 1\n"
    )
    for name in ("cliapp.add", "cliapp.add", "cliapp.other"):
        celeriac(
            "-A",
            "cliapp",
            "call",
            name,
            "-a",
            "[1, 2]" if name.endswith("add") else "[]",
            cwd=tmp_path,
        )
    moved = celeriac(
        "-A",
        "cliapp",
        "migrate",
        source,
        target,
        "-T",
        "cliapp.add",
        "--ack-messages",
        cwd=tmp_path,
    )
    assert moved.returncode == 0, moved.stderr
    assert "Migrated 2 messages." in moved.stdout
    copied = celeriac("-A", "cliapp", "migrate", source, target, cwd=tmp_path)
    assert "Migrated 1 message." in copied.stdout  # cliapp.other, copied: still in the source
    left = celeriac("-A", "cliapp", "purge", "-f", cwd=tmp_path)
    assert "Purged 1 message " in left.stdout
    arrived = celeriac("-b", target, "-A", "cliapp", "purge", "-f", cwd=tmp_path)
    assert "Purged 3 messages " in arrived.stdout


def test_call_with_exchange_and_serializer_then_purge_excluding(app_dir: Path) -> None:
    sent = celeriac(
        "-A",
        "cliapp",
        "call",
        "cliapp.add",
        "-a",
        "[1, 2]",
        "--serializer",
        "pickle",
        "--exchange",
        "celery",
        "--routing-key",
        "celery",
        cwd=app_dir,
    )
    assert sent.returncode == 0, sent.stderr
    none_left = celeriac("-A", "cliapp", "purge", "-f", "-X", "celery", cwd=app_dir)
    assert none_left.returncode == 2 and "no queue left to purge" in none_left.stderr
    purged = celeriac("-A", "cliapp", "purge", "-f", cwd=app_dir)
    assert "Purged 1 message " in purged.stdout
