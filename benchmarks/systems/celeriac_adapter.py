"""celeriac: prefork (the default), threads and ``async def`` tasks; plain, async and bulk
enqueue; the sync and async result APIs."""

from __future__ import annotations

from benchmarks.systems.base import Case, System, Variant

__all__ = ["SYSTEM"]

# Only the headline cases time the plain delay(); the others fill the queue fast.
_BULK = "enqueue_bulk"
# The mixed app (def and async def tasks: the worker adds --async-concurrency to its window).
_WORKER = ("{bin}/celeriac", "-A", "celeriac_app", "worker", "-l", "WARNING")
# The sync-only app with no worker flag at all: what a user gets, and the headline.
_DEFAULTS = ("{bin}/celeriac", "-A", "celeriac_sync_app", "worker", "-l", "WARNING")
_MIXED = "mixed"

SYSTEM = System(
    name="celeriac",
    app_module="celeriac_app",
    venv="main",
    db_offset=0,
    variants={
        "defaults": Variant("no flags", _DEFAULTS),
        "defaults-mixed": Variant("no flags", (*_WORKER,), _MIXED),
        "slots": Variant("-P slots", (*_DEFAULTS, "-P", "slots")),
        "prefork": Variant("-P prefork -c 2", (*_WORKER, "-P", "prefork", "-c", "2"), _MIXED),
        "threads": Variant("-P threads -c 2", (*_WORKER, "-P", "threads", "-c", "2"), _MIXED),
        "async": Variant("async def tasks, -c 2", (*_WORKER, "-P", "prefork", "-c", "2"), _MIXED),
        "io-async": Variant(
            "async def, --async-concurrency 20",
            (*_WORKER, "-P", "threads", "-c", "2", "--async-concurrency", "20"),
            _MIXED,
        ),
        "io-threads": Variant("-P threads -c 20", (*_WORKER, "-P", "threads", "-c", "20"), _MIXED),
        "loops": Variant(
            "--loops 2 -P prefork -c 1",
            (*_WORKER, "--loops", "2", "-P", "prefork", "-c", "1"),
            _MIXED,
        ),
        "loops-threads": Variant(
            "--loops 2 -P threads -c 1",
            (*_WORKER, "--loops", "2", "-P", "threads", "-c", "1"),
            _MIXED,
        ),
        "prefork-events": Variant(
            "-P prefork -c 2 -E", (*_WORKER, "-P", "prefork", "-c", "2", "-E"), _MIXED
        ),
        "loops-threads-events": Variant(
            "--loops 2 -P threads -c 1 -E",
            (*_WORKER, "--loops", "2", "-P", "threads", "-c", "1", "-E"),
            _MIXED,
        ),
        "loops-async": Variant(
            "async def tasks, --loops 2 -P threads -c 1",
            (*_WORKER, "--loops", "2", "-P", "threads", "-c", "1"),
            _MIXED,
        ),
    },
    throughput=(
        # First, so they are the headline pair the report reads: what a user gets.
        Case("defaults", "noop", True),
        Case("defaults", "noop", False),
        Case("slots", "noop", True, enqueue_fn=_BULK),
        Case("defaults-mixed", "anoop", True, enqueue_fn=_BULK),
        Case("prefork", "noop", True),
        Case("prefork", "noop", False, enqueue_fn=_BULK),
        Case("async", "anoop", True, enqueue_fn=_BULK),
        Case("threads", "noop", True, enqueue_fn=_BULK, once=True),
        Case("threads", "noop", False, enqueue_fn=_BULK, once=True),
        Case("async", "anoop", False, enqueue_fn=_BULK, once=True),
        Case("loops", "noop", True, enqueue_fn=_BULK),
        Case("loops-threads", "noop", True, enqueue_fn=_BULK),
        Case("loops-async", "anoop", True, enqueue_fn=_BULK),
    ),
    io=(Case("io-async", "asleep"), Case("io-threads", "sleep")),
    cpu=Case("prefork", "fib"),
    latency_fns=("round_trip", "around_trip"),
    enqueue_fns=("enqueue", "aenqueue", "enqueue_bulk"),
    brokers=frozenset({"redis", "amqp", "sqlite"}),
    events=(
        (Case("prefork", "noop", True), Case("prefork-events", "noop", True)),
        (
            Case("loops-threads", "noop", True, enqueue_fn=_BULK),
            Case("loops-threads-events", "noop", True, enqueue_fn=_BULK),
        ),
    ),
    extra_cases={
        "amqp": (
            Case("prefork", "noop", True),
            Case("prefork", "noop", False),
            Case("loops", "noop", True),
            Case("loops-threads", "noop", True),
        ),
        "sqlite": (
            Case("prefork", "noop", True),
            Case("prefork", "noop", False),
            Case("threads", "noop", True),
        ),
    },
)
