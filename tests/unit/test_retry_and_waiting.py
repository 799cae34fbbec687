"""The shared retry policy, the waiting toolkit and queue rotation."""

from __future__ import annotations

import asyncio
import time

import pytest

from celeriac.backends.waiting import PollLoop, Waiters
from celeriac.retry import Backoff, RetryPolicy
from celeriac.transport.base import Rotation


class Flaky(Exception):
    pass


def test_delays_grow_to_the_cap_and_stop_after_max_retries() -> None:
    policy = RetryPolicy(first=0.1, factor=2.0, max_delay=0.5, max_retries=5)
    assert list(policy.delays()) == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_from_options_reads_the_engine_option_names() -> None:
    base = RetryPolicy(first=0.1, max_delay=5.0, max_retries=3)
    policy = RetryPolicy.from_options(
        {"max_retries": 1, "retry_backoff_max": 0.3, "retry_interval_start": 0.2}, default=base
    )
    assert (policy.first, policy.max_delay, policy.max_retries) == (0.2, 0.3, 1)
    assert RetryPolicy.from_options({}, default=base) is base
    assert RetryPolicy.from_options({"max_retries": None}).max_retries is None


async def test_call_retries_then_gives_up_with_the_callers_error() -> None:
    attempts = 0

    async def op() -> int:
        nonlocal attempts
        attempts += 1
        raise Flaky(f"down {attempts}")

    policy = RetryPolicy(first=0.001, max_delay=0.001, max_retries=2)
    with pytest.raises(ConnectionError, match="after 3 attempts: down 3") as info:
        await policy.call(
            op,
            retry_on=(Flaky,),
            what="op",
            give_up=lambda exc, n: ConnectionError(f"after {n} attempts: {exc}"),
        )
    assert attempts == 3 and isinstance(info.value.__cause__, Flaky)


async def test_call_returns_once_the_operation_succeeds() -> None:
    results = iter([Flaky("once"), 42])

    async def op() -> int:
        value = next(results)
        if isinstance(value, Exception):
            raise value
        return value

    policy = RetryPolicy(first=0.001, max_retries=3)
    assert await policy.call(op, retry_on=(Flaky,), what="op", give_up=lambda e, n: e) == 42


async def test_call_does_not_retry_other_errors_nor_after_stop() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise Flaky("x")

    policy = RetryPolicy(first=0.001, max_retries=None)
    with pytest.raises(RuntimeError):
        await policy.call(
            op,
            retry_on=(Flaky,),
            what="op",
            give_up=lambda e, n: RuntimeError(n),
            stop=lambda: True,
        )
    assert calls == 1
    with pytest.raises(ValueError):
        await policy.call(_raise_value_error, retry_on=(Flaky,), what="op", give_up=lambda e, n: e)


async def _raise_value_error() -> None:
    raise ValueError("not transient")


def test_deadline_bounds_the_total_time_of_blocking_calls() -> None:
    policy = RetryPolicy(first=0.05, max_delay=0.05, max_retries=None, deadline=0.2)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        policy.call_blocking(
            _always_flaky, retry_on=(Flaky,), what="op", give_up=lambda e, n: TimeoutError(n)
        )
    assert 0.15 <= time.monotonic() - started < 2.0


def _always_flaky() -> None:
    raise Flaky("down")


def test_backoff_grows_and_resets() -> None:
    backoff = Backoff(first=0.1, factor=3.0, max_delay=0.5)
    assert [backoff.next() for _ in range(4)] == [0.1, pytest.approx(0.3), 0.5, 0.5]
    backoff.reset()
    assert backoff.next() == 0.1


async def test_waiters_resolve_every_future_of_an_id() -> None:
    waiters: Waiters[str] = Waiters()
    one, two = waiters.add("t1"), waiters.add("t1")
    assert "t1" in waiters and len(waiters) == 1
    assert waiters.resolve("t1", "done") and not waiters.resolve("t1", "again")
    assert (await one, await two) == ("done", "done") and not waiters


async def test_waiters_wait_times_out_and_forgets_the_future() -> None:
    waiters: Waiters[str] = Waiters()
    seen: list[bool] = []
    assert await waiters.wait("t", 0.01, registered=lambda: seen.append("t" in waiters)) is None
    assert seen == [True] and "t" not in waiters


async def test_waiters_fail_all_on_close() -> None:
    waiters: Waiters[str] = Waiters()
    future = waiters.add("t")
    waiters.fail_all(ConnectionError("closed"))
    with pytest.raises(ConnectionError):
        await future
    assert not waiters


async def test_poll_loop_polls_while_active_and_at_once_when_kicked() -> None:
    polls: list[float] = []
    active = True

    async def poll() -> bool:
        polls.append(time.monotonic())
        return False

    loop = PollLoop(poll, lambda: active, first=0.01, cap=10.0, what="test")
    loop.kick()
    await asyncio.sleep(0.1)
    count = len(polls)
    assert count >= 2  # backing off: 0.01, 0.02, 0.04 ...
    loop.kick()
    await asyncio.sleep(0.005)
    assert len(polls) == count + 1  # kicked: polled at once, not after the grown interval
    active = False
    loop.kick()
    await asyncio.sleep(0.05)
    settled = len(polls)
    await asyncio.sleep(0.05)
    assert len(polls) == settled
    await loop.stop()


def test_rotation_starts_each_call_one_queue_later() -> None:
    rotation = Rotation()
    assert [rotation.order(["a", "b", "c"]) for _ in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    assert rotation.order([]) == []
