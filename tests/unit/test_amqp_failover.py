"""The AMQP failover list (``broker_url`` with ``;``, ``broker_failover_strategy``) and the keys
of Celery's native delayed delivery, without a broker."""

from __future__ import annotations

import logging

import pytest
from kombu.transport.native_delayed_delivery import calculate_routing_key

from celeriac.engines.amqp.connection import AMQPOptions, Failover, broker_urls
from celeriac.engines.amqp.native_delay import NativeDelay, _words, uses_native_delay
from celeriac.exceptions import ImproperlyConfigured
from celeriac.transport.base import QueueSpec

A, B, C = (f"amqp://guest:guest@h{i}:5672//" for i in range(3))


def test_broker_urls_split_celerys_list_and_refuse_an_empty_one() -> None:
    assert broker_urls(f" {A};{B} ;;{C}") == [A, B, C]
    with pytest.raises(ImproperlyConfigured, match="no broker URL"):
        broker_urls(" ; ")


def test_round_robin_moves_a_failed_url_last_and_logs_it_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    failover = Failover(f"{A};{B};{C}", "round-robin")
    assert failover.candidates() == [A, B, C]
    failover.failed(A, OSError("refused"))
    assert failover.candidates() == [B, C, A]
    failover.failed(B, OSError("refused"))
    failover.failed(C, OSError("refused"))
    failover.failed(A, OSError("refused"))  # A again: not logged a second time
    assert [r.getMessage().count("h0:5672") for r in caplog.records] == [1, 0, 0]
    failover.connected(A)
    failover.failed(A, OSError("refused"))  # reached in between: logged again
    assert sum("h0:5672" in r.getMessage() for r in caplog.records) == 2


def test_shuffle_tries_every_url_each_turn() -> None:
    failover = Failover(f"{A};{B};{C}", "shuffle")
    for _ in range(10):
        turn = []
        for _ in range(3):
            url = failover.candidates()[0]
            turn.append(url)
            failover.failed(url, OSError("refused"))
        assert sorted(turn) == sorted([A, B, C])


def test_an_unknown_strategy_is_refused_naming_the_setting() -> None:
    with pytest.raises(ImproperlyConfigured, match="broker_failover_strategy"):
        AMQPOptions.from_options({"failover_strategy": "nearest"})
    with pytest.raises(ImproperlyConfigured, match="broker_native_delayed_delivery_queue_type"):
        NativeDelay("stream")


def test_level_bindings_select_the_bit_of_celerys_routing_keys() -> None:
    key = calculate_routing_key(5, "r.k")  # bits 2 and 0 set
    words = key.split(".")
    for level in range(28):
        pattern = _words(level, "1").split(".")
        bit_word = pattern.index("1")
        assert (words[bit_word] == "1") == (level in (0, 2)), level


def test_only_quorum_queues_on_topic_or_fanout_exchanges_use_the_native_levels() -> None:
    quorum = {"x-queue-type": "quorum"}
    assert uses_native_delay(QueueSpec("q", "ex", "topic", "q", queue_arguments=quorum))
    assert uses_native_delay(QueueSpec("q", "ex", "fanout", "q", queue_arguments=quorum))
    assert not uses_native_delay(QueueSpec("q", "ex", "direct", "q", queue_arguments=quorum))
    assert not uses_native_delay(QueueSpec("q", "ex", "topic", "q"))
