"""Unit tests for the pure exchange/binding resolution shared by memory and SQLite."""

from __future__ import annotations

import pytest

from celeriac.exceptions import ImproperlyConfigured
from celeriac.transport.base import QueueSpec
from celeriac.transport.exchanges import (
    Binding,
    RoutingTable,
    binding_arguments,
    binding_for,
    headers_match,
    route,
    topic_matches,
)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("a.b.c", "a.b.c", True),
        ("a.b.c", "a.b", False),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.c", False),
        ("a.*", "a.b.c", False),
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("a.#", "b.a", False),
        ("#", "", True),
        ("#", "anything.at.all", True),
        ("*", "", False),
        ("*", "one", True),
        ("*", "one.two", False),
        ("#.c", "c", True),
        ("#.c", "a.b.c", True),
        ("#.c", "a.b.c.d", False),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.x.y.c", True),
        ("a.#.#.c", "a.c", True),
        ("#.*", "", False),
        ("#.*", "x", True),
        ("*.#", "x.y.z", True),
        ("a..b", "a..b", True),
        ("a.*.b", "a..b", True),  # an empty word is still a word
        ("usa.#", "usa.news", True),
        ("#.weather", "europe.weather", True),
        ("", "", True),
        ("", "a", False),
    ],
)
def test_topic_matches(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_topic_matching_many_hashes_stays_linear() -> None:
    # Backtracking matchers blow up here; the set-of-states walk does not.
    pattern = ".".join(["#"] * 30 + ["z"])
    assert topic_matches(pattern, ".".join(["a"] * 200)) is False
    assert topic_matches(pattern, ".".join(["a"] * 200 + ["z"])) is True


@pytest.mark.parametrize(
    ("arguments", "headers", "expected"),
    [
        ({"x-match": "all", "a": 1, "b": 2}, {"a": 1, "b": 2, "c": 3}, True),
        ({"x-match": "all", "a": 1, "b": 2}, {"a": 1}, False),
        ({"a": 1, "b": 2}, {"a": 1, "b": 3}, False),  # "all" is the default
        ({"x-match": "any", "a": 1, "b": 2}, {"b": 2}, True),
        ({"x-match": "any", "a": 1, "b": 2}, {"c": 1}, False),
        ({"x-match": "all", "a": None}, {"a": "whatever"}, True),  # presence only
        ({"x-match": "all", "a": None}, {}, False),
        ({"x-match": "all"}, {"anything": 1}, True),
        ({"x-match": "any"}, {"anything": 1}, False),
        ({"x-match": "all", "x-kind": "k"}, {}, True),  # x- keys are not compared...
        ({"x-match": "all-with-x", "x-kind": "k"}, {}, False),  # ...unless asked
        ({"x-match": "any-with-x", "x-kind": "k"}, {"x-kind": "k"}, True),
    ],
)
def test_headers_match(
    arguments: dict[str, object], headers: dict[str, object], expected: bool
) -> None:
    assert headers_match(arguments, headers) is expected


def test_headers_match_rejects_unknown_mode() -> None:
    with pytest.raises(ImproperlyConfigured, match="x-match"):
        headers_match({"x-match": "some"}, {})


def test_default_exchange_routes_to_the_named_queue() -> None:
    assert route("", None, "celery", {}, []) == ["celery"]
    assert route("", None, "", {}, []) == []


def test_undeclared_exchange_routes_nowhere() -> None:
    assert route("ex", None, "k", {}, [Binding("ex", "q", "k")]) == []


def test_route_by_exchange_type() -> None:
    bindings = [
        Binding("ex", "q1", "a.b"),
        Binding("ex", "q2", "a.*"),
        Binding("ex", "q3", "#"),
        Binding("other", "q4", "a.b"),
    ]
    assert route("ex", "direct", "a.b", {}, bindings) == ["q1"]
    assert route("ex", "topic", "a.b", {}, bindings) == ["q1", "q2", "q3"]
    assert route("ex", "topic", "z", {}, bindings) == ["q3"]
    assert route("ex", "fanout", "ignored", {}, bindings) == ["q1", "q2", "q3"]


def test_route_lists_each_queue_once() -> None:
    bindings = [Binding("ex", "q", "a.*"), Binding("ex", "q", "#")]
    assert route("ex", "topic", "a.b", {}, bindings) == ["q"]


def test_headers_route_uses_binding_arguments() -> None:
    bindings = [Binding("h", "pdf", "", {"format": "pdf"}), Binding("h", "any", "", {})]
    assert route("h", "headers", "", {"format": "pdf"}, bindings) == ["pdf", "any"]
    assert route("h", "headers", "", {"format": "zip"}, bindings) == ["any"]


def test_binding_for_specs() -> None:
    assert binding_for(QueueSpec("celery")) is None  # default exchange: nothing to bind
    assert binding_for(QueueSpec("q", "ex", "topic", "a.#")) == Binding("ex", "q", "a.#", {})
    with pytest.raises(ImproperlyConfigured, match="exchange type"):
        binding_for(QueueSpec("q", "ex", "x-delayed-message", "k"))


def test_headers_binding_arguments_come_from_queue_arguments() -> None:
    spec = QueueSpec(
        "q",
        "h",
        "headers",
        queue_arguments={"x-match": "any", "x-max-priority": 10, "format": "pdf"},
    )
    assert binding_arguments(spec) == {"x-match": "any", "format": "pdf"}
    assert binding_arguments(QueueSpec("q", "ex", "direct", "k", queue_arguments={"a": 1})) == {}


def test_routing_table_declares_idempotently_and_routes() -> None:
    table = RoutingTable()
    spec = QueueSpec("images", "media", "topic", "image.*")
    table.declare(spec)
    table.declare(spec)
    table.declare(QueueSpec("all-media", "media", "topic", "#"))
    table.declare(QueueSpec("plain"))  # default exchange: no binding
    assert table.route("media", "image.png", {}) == ["images", "all-media"]
    assert table.route("media", "video.mp4", {}) == ["all-media"]
    assert table.route("", "plain", {}) == ["plain"]
    assert table.route("nowhere", "image.png", {}) == []


def test_routing_table_redeclared_type_wins() -> None:
    table = RoutingTable()
    table.declare(QueueSpec("q", "ex", "direct", "a.*"))
    assert table.route("ex", "a.b", {}) == []
    table.declare(QueueSpec("q", "ex", "topic", "a.*"))
    assert table.route("ex", "a.b", {}) == ["q"]
