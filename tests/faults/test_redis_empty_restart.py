"""Redis without persistence killed and restarted: it comes back empty.

What was queued in Redis is gone with it (that is what no persistence means; see
docs/guarantees.md). The workers must notice they were registered again without telling a
lie about requeued messages, keep consuming, and run every task published after the restart
exactly once; producers either succeed or raise OperationalError.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults import app as fault_app
from tests.faults.harness import (
    Producer,
    Record,
    RedisServer,
    Workers,
    module_redis,
    point_at,
    wait_until,
)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

LEASE = 3.0


server = module_redis(aof=False)


def test_restart_of_an_empty_redis(server: RedisServer, tmp_path: Path) -> None:
    record = Record(tmp_path / "record")
    env = point_at(server.url, server.url, record, lease=str(LEASE))
    workers = Workers(tmp_path, env, "-c", "2")
    workers.start(2)
    try:
        producer = Producer(lambda n: fault_app.record.delay(n, 0.01), pause=0.01)
        with producer.running(100):
            wait_until(lambda: producer.calls >= 100, 60, "the first producer")
        wait_until(lambda: set(producer.sent) <= set(record.ended()), 60, "the first tasks")
        server.kill()
        time.sleep(2.0)
        server.start()
        back = time.monotonic()
        # Long enough for every heartbeat to find the empty server and for sweeps to run.
        time.sleep(LEASE * 2)
        after = Producer(lambda n: fault_app.record.delay(1000 + n, 0.01), pause=0.01)
        with after.running(100):
            wait_until(lambda: after.calls >= 100, 60, "the second producer")
        sent = {1000 + n for n in after.sent}
        wait_until(lambda: sent <= set(record.ended()), 60, "the tasks sent after restart")
        ended = record.ended()
        print(
            f"\nempty restart: {len(sent)} sent after it, lost {len(sent - set(ended))}, "
            f"ran twice {sum(c > 1 for c in ended.values())}, all run "
            f"{time.monotonic() - back:.1f}s after the restart"
        )
        assert producer.unexpected == [] and after.unexpected == []
        assert sent - set(ended) == set()
        assert all(count == 1 for count in ended.values())
        logs = workers.logs()
        assert "was declared dead" not in logs
        assert "none of its messages were requeued" in logs
        last = max(after.sent)
        assert fault_app.record.AsyncResult(after.results[last].id).get(timeout=30) == 1000 + last
    finally:
        workers.stop()
