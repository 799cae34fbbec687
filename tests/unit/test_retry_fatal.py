"""RetryPolicy's ``fatal`` errors: raised at once though they are among ``retry_on``."""

from __future__ import annotations

import pytest

from celeriac.retry import RetryPolicy


class ChannelClosed(Exception):
    pass


class NotFound(ChannelClosed):
    pass


async def test_call_raises_a_fatal_subclass_at_once() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise NotFound("no queue")

    policy = RetryPolicy(first=0.001, max_retries=5)
    with pytest.raises(NotFound, match="no queue"):
        await policy.call(
            op,
            retry_on=(ChannelClosed,),
            fatal=(NotFound,),
            what="op",
            give_up=lambda exc, n: ConnectionError(n),
        )
    assert calls == 1


def test_call_blocking_raises_a_fatal_subclass_at_once_and_retries_the_rest() -> None:
    errors = [ChannelClosed("blip"), NotFound("gone")]

    def op() -> None:
        raise errors.pop(0)

    policy = RetryPolicy(first=0.001, max_retries=5)
    with pytest.raises(NotFound, match="gone"):
        policy.call_blocking(
            op,
            retry_on=(ChannelClosed,),
            fatal=(NotFound,),
            what="op",
            give_up=lambda exc, n: ConnectionError(n),
        )
    assert errors == []
