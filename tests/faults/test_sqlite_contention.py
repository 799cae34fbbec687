"""SQLite under contention: four producer processes and two workers on one database file.

The file is locked in turn by every process; a writer that finds it locked waits and
retries. Every task published is run exactly once (nobody dies here, so nothing may run
twice) and every producer call succeeds or raises OperationalError.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.harness import ROOT, Record, Workers, point_at, wait_until

pytestmark = pytest.mark.timeout(150)

PRODUCERS = 4
EACH = 500

PRODUCE = """
import sys
from celeriac.exceptions import OperationalError
from tests.faults.app import app, record
first, count = int(sys.argv[1]), int(sys.argv[2])
for n in range(first, first + count):
    try:
        record.delay(n, 0.0)
    except OperationalError as exc:
        print("refused", n, exc, flush=True)
    else:
        print("sent", n, flush=True)
app.close()
"""


def test_four_producers_two_workers_one_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broker.sqlite'}"
    record = Record(tmp_path / "record")
    env = point_at(url, url, record)
    workers = Workers(tmp_path, env, "-c", "2")
    workers.start(2)
    try:
        producers = [
            subprocess.Popen(
                [sys.executable, "-c", PRODUCE, str(i * EACH), str(EACH)],
                env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            for i in range(PRODUCERS)
        ]
        sent: set[int] = set()
        refused: set[int] = set()
        for proc in producers:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            for line in out.splitlines():
                kind, n = line.split()[:2]
                (sent if kind == "sent" else refused).add(int(n))
        assert len(sent) + len(refused) == PRODUCERS * EACH
        wait_until(lambda: sent <= set(record.ended()), 90, "every sent task to run")
        workers.stop()
        ended = record.ended()
        print(
            f"\nsqlite: {PRODUCERS} producers, 2 workers: {len(sent)} sent, {len(refused)} "
            f"refused, lost {len(sent - set(ended))}, ran twice "
            f"{sum(c > 1 for c in ended.values())}"
        )
        assert sent - set(ended) == set()
        assert all(count == 1 for count in ended.values())
    finally:
        workers.stop()
