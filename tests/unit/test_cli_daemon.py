"""Daemon helpers and flag parsing of ``celeriac worker``/``beat`` (no processes started)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import click
import pytest

from celeriac.cli.daemon import Pidfile, expand_node_format, parse_umask
from celeriac.cli.worker_start import WorkerFlags, parse_autoscale, worker_options


def test_node_formats_as_celery_multi_writes_them() -> None:
    host = socket.gethostname()
    assert expand_node_format("/var/run/%n.pid", "w1@example.com") == "/var/run/w1.pid"
    assert expand_node_format("%h|%d|%i|%I|%%", "w1@example.com", 2) == "example.com|com|2|-2|%"
    assert expand_node_format("%I", "w1@x", 0) == ""
    assert expand_node_format("%n@%h", None) == f"celery@{host}"


def test_pidfile_is_written_and_removed(tmp_path: Path) -> None:
    lock = Pidfile(str(tmp_path / "sub" / "w.pid"))
    lock.acquire()
    assert lock.read_pid() == os.getpid()
    lock.release()
    assert not (tmp_path / "sub" / "w.pid").exists()


def test_pidfile_held_by_a_live_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.pid"
    path.write_text(f"{os.getppid()}\n")  # our parent is alive
    with pytest.raises(click.ClickException, match="held by running process"):
        Pidfile(str(path)).acquire()


@pytest.mark.parametrize(
    ("value", "expected"), [("10,3", (10, 3)), ("3,10", (10, 3)), ("4", (4, 0)), (None, None)]
)
def test_autoscale_values(value: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_autoscale(value) == expected


@pytest.mark.parametrize("value", ["x", "0", "1,2,3", "-1,-2"])
def test_bad_autoscale_values(value: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_autoscale(value)


def test_umask_is_octal() -> None:
    assert parse_umask("022") == 0o22 and parse_umask("0o77") == 0o77 and parse_umask(None) is None
    with pytest.raises(click.BadParameter):
        parse_umask("9x")


def test_flags_become_worker_options() -> None:
    options = worker_options(
        WorkerFlags(queues="a, b", exclude_queues="b", autoscale=(5, 2), max_memory_per_child=9)
    )
    assert options.queues == ["a", "b"] and options.exclude_queues == ["b"]
    assert options.autoscale == (5, 2) and options.max_memory_per_child == 9


def test_heartbeat_flags_become_worker_options() -> None:
    options = worker_options(WorkerFlags(heartbeat_interval=5.0, without_heartbeat=True))
    assert options.heartbeat_interval == 5.0
    assert options.heartbeat is False
