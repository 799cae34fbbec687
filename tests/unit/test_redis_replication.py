"""``min_replicas``: option parsing, and what a short ``WAIT`` reply makes of a write."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac.engines.redis.broker import RedisTransport
from celeriac.engines.redis.replication import NotReplicated, Replicas, replicas_from
from celeriac.exceptions import ImproperlyConfigured


def test_off_by_default() -> None:
    assert replicas_from({}) is None
    assert replicas_from({"min_replicas": 0}) is None


def test_parsed() -> None:
    assert replicas_from({"min_replicas": "2", "min_replicas_timeout": "0.5"}) == Replicas(2, 0.5)
    assert replicas_from({"min_replicas": 1}) == Replicas(1, 1.0)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"min_replicas": "two"}, "min_replicas must be a number"),
        ({"min_replicas": 1.5}, "whole number"),
        ({"min_replicas": -1}, "whole number"),
        ({"min_replicas": True}, "min_replicas must be a number"),
        ({"min_replicas": 1, "min_replicas_timeout": 0}, "min_replicas_timeout must be > 0"),
    ],
)
def test_bad_input_named(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=named):
        replicas_from(options)


def test_refused_on_cluster() -> None:
    with pytest.raises(
        ImproperlyConfigured, match="min_replicas is not supported on Redis Cluster"
    ):
        RedisTransport("redis+cluster://127.0.0.1:7000/", options={"min_replicas": 1})


class _Pipe:
    """A pipeline recording its commands; ``WAIT`` answers ``acked``."""

    def __init__(self, acked: int) -> None:
        self.acked = acked
        self.commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> None:
        self.commands.append(args)

    async def execute(self) -> list[Any]:
        return [True, self.acked]


class _Client:
    def __init__(self, acked: int) -> None:
        self.pipe = _Pipe(acked)

    def pipeline(self, transaction: bool) -> _Pipe:
        assert transaction is False
        return self.pipe


async def test_wait_on_one_connection_after_a_fence() -> None:
    client = _Client(acked=2)
    await Replicas(2, 0.25).confirm(client, "p:fence", "redis publish")
    assert client.pipe.commands == [("SET", "p:fence", "1", "PX", 60_000), ("WAIT", 2, 250)]


async def test_too_few_replicas_raise() -> None:
    with pytest.raises(
        NotReplicated, match=r"redis ack: 1 of min_replicas=2 .* min_replicas_timeout=0.25 s"
    ):
        await Replicas(2, 0.25).confirm(_Client(acked=1), "p:fence", "redis ack")
