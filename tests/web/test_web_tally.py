"""The overview's counts kept event by event equal a recount of the state, evictions included."""

from __future__ import annotations

import random
import time
from collections import Counter

from celeriac.events.state import State
from celeriac.web.tally import Tally

STEPS = ["task-sent", "task-received", "task-started", "task-retried", "task-succeeded",
         "task-failed", "task-revoked"]  # fmt: skip


def recount(state: State) -> tuple[dict[str, int], dict[str, tuple[int, int, int]]]:
    by_state = Counter(task.state for task in state.tasks.values())
    by_name: dict[str, tuple[int, int, int]] = {}
    for task in state.tasks.values():
        total, ok, bad = by_name.get(task.name or "?", (0, 0, 0))
        by_name[task.name or "?"] = (total + 1, ok + (task.state == "SUCCESS"),
                                     bad + (task.state == "FAILURE"))  # fmt: skip
    return dict(by_state), by_name


def test_counts_match_a_recount_under_random_events_and_evictions() -> None:
    chooser = random.Random(1234)
    state = State(max_tasks_in_memory=50)
    tally = Tally()
    ids = [f"task-{n}" for n in range(200)]
    for step in range(5000):
        uuid = chooser.choice(ids)
        type = chooser.choice(STEPS)
        event = {"type": type, "uuid": uuid, "hostname": "w@x", "timestamp": time.time(),
                 "local_received": time.time(), "clock": step}  # fmt: skip
        if type in ("task-sent", "task-received"):
            event["name"] = f"n{int(uuid.split('-')[1]) % 7}"
        if type == "task-succeeded":
            event["runtime"] = 0.5
        tally.take(state, event)
        if step % 7 == 0:
            tally.take(state, {"type": "worker-heartbeat", "hostname": "w@x", "clock": step})
    by_state, by_name = recount(state)
    assert tally.by_state() == by_state
    rows = {row.name: (row.total, row.succeeded, row.failed) for row in tally.by_name()}
    assert rows == by_name
    timed = {row.name: row.timed for row in tally.by_name()}
    assert timed == {
        name: sum(1 for t in state.tasks.values() if (t.name or "?") == name
                  and t.ready and t.runtime is not None)
        for name in by_name
    }  # fmt: skip
    assert len(state.tasks) == 50  # evictions happened
