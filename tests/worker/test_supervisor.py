"""The ``--loops``/slots supervisor's forking, with a stand-in for the worker it runs."""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac.worker.supervisor import _Supervisor
from celeriac.worker.worker import STOP_SIGNALS

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def own_handlers() -> Iterator[None]:
    """The supervisor installs its handlers in this process: put the test's back."""
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        gc.unfreeze()


class _StopsItsSupervisor:
    """A worker that asks its supervisor to stop as it starts, then installs its own SIGTERM
    handler only later (as a real worker does after loading the app), recording what it saw."""

    def __init__(self, record: Path) -> None:
        self.record = record

    def start(self) -> int:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        os.kill(os.getppid(), signal.SIGTERM)
        time.sleep(0.5)  # the supervisor forwards the stop meanwhile: it must wait for us
        heard: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, frame: heard.append(signum))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self.record.write_text(f"{sorted(int(s) for s in blocked)};{heard}")
        return 0


def test_a_stop_sent_while_a_worker_starts_up_waits_for_its_handler(
    tmp_path: Path, own_handlers: None
) -> None:
    record = tmp_path / "record"
    make: Any = lambda index, first: _StopsItsSupervisor(record)  # noqa: E731
    assert _Supervisor(make, 1).run() == 0
    blocked, heard = record.read_text().split(";")
    assert blocked == str(sorted(int(s) for s in STOP_SIGNALS))  # born with them blocked
    assert heard == f"[{int(signal.SIGTERM)}]"  # the forwarded stop, once, to its own handler
