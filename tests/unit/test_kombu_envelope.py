"""kombu's JSON envelope: decode and encode checked against messages captured from Celery."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from celeriac.protocol import kombu
from celeriac.protocol.envelope import Envelope
from tests.vectors import load_vector

# Celery 5.7's, and the plain message of 5.3 and 5.5 (tests/data/celery-vectors/README.md).
CAPTURES = [
    "redis-plain.json",
    "redis-producer-messages.json",
    "compat-celery-5.3.6/redis-plain.json",
    "compat-celery-5.5.3/redis-plain.json",
]


def _pushes(name: str) -> list[tuple[str, str]]:
    """(list key, stored text) of every LPUSH in a capture."""
    commands = load_vector(name)["redis_commands"]
    return [(c["cmd"][1], c["cmd"][2]) for c in commands if c["cmd"][0] == "LPUSH"]


def _task_pushes(name: str) -> list[tuple[str, str]]:
    return [(key, text) for key, text in _pushes(name) if '"task"' in text]


class TestRedisKombuEnvelope:
    """Grouped so that ``-k redis`` selects them (they need no server)."""

    @pytest.mark.parametrize("name", [*CAPTURES, "redis-headers.json"])
    def test_decode_captured_messages(self, name: str) -> None:
        for _, text in _task_pushes(name):
            stored = json.loads(text)
            message = kombu.decode(text.encode())
            assert message.valid
            assert message.envelope.body == base64.b64decode(stored["body"])
            assert message.envelope.headers == stored["headers"]
            assert message.envelope.content_type == stored["content-type"]
            assert message.envelope.content_encoding == stored["content-encoding"]
            props = stored["properties"]
            assert message.delivery_tag == props["delivery_tag"]
            assert message.exchange == props["delivery_info"]["exchange"]
            assert message.routing_key == props["delivery_info"]["routing_key"]
            assert message.redelivered is False
            assert message.envelope.priority == props["priority"]
            kept = set(message.envelope.properties)
            assert not kept & kombu.KOMBU_PROPERTIES
            assert {"correlation_id", "reply_to", "delivery_mode"} <= kept

    @pytest.mark.parametrize("name", CAPTURES)
    def test_encode_reproduces_captured_messages(self, name: str) -> None:
        """Re-encoding a decoded capture gives the same object, key order included."""
        for _, text in _task_pushes(name):
            stored = json.loads(text)
            message = kombu.decode(text)
            info = stored["properties"]["delivery_info"]
            again = kombu.encode_dict(
                message.envelope,
                exchange=info["exchange"],
                routing_key=info["routing_key"],
                delivery_tag=stored["properties"]["delivery_tag"],
            )
            assert again == stored
            assert list(again) == list(stored)
            assert list(again["properties"]) == list(stored["properties"])
            stored_bytes = kombu.encode(
                message.envelope,
                exchange=info["exchange"],
                routing_key=info["routing_key"],
                delivery_tag=stored["properties"]["delivery_tag"],
            )
            assert json.loads(stored_bytes) == stored

    def test_bucket_keys_match_captured_priorities(self) -> None:
        """SPEC §3.4: 0,1,2 -> queue; 3,4,5 -> SEP3; 6,7,8 -> SEP6; 9 -> SEP9."""
        pushes = _task_pushes("redis-producer-messages.json")
        seen = set()
        for key, text in pushes:
            priority = json.loads(text)["properties"]["priority"]
            assert kombu.bucket_key("parked", priority) == key
            seen.add(priority)
        assert {0, 1, 3, 5, 7, 9} <= seen
        assert kombu.bucket_key("celery", 7) == "celery\x06\x166"  # redis-priority.json

    @pytest.mark.parametrize(
        ("priority", "step"),
        [(0, 0), (2, 0), (3, 3), (5, 3), (6, 6), (8, 6), (9, 9), (255, 9), (-1, 0), (None, 0),
         ("7", 0), (True, 0)],
    )  # fmt: skip
    def test_bucket_of(self, priority: Any, step: int) -> None:
        assert kombu.bucket_of(priority) == step

    def test_roundtrip_is_exact(self) -> None:
        env = Envelope(
            body=bytes(range(256)),
            headers={"id": "x", "nested": {"a": [1, None]}, "text": "é"},
            content_type="application/x-msgpack",
            content_encoding="binary",
            properties={"correlation_id": "x", "reply_to": "r", "delivery_mode": 2, "priority": 4},
        )
        stored = kombu.encode(env, exchange="ex", routing_key="rk", delivery_tag="tag-1")
        message = kombu.decode(stored)
        assert message.envelope == env
        assert (message.exchange, message.routing_key, message.delivery_tag) == (
            "ex",
            "rk",
            "tag-1",
        )

    def test_priority_zero_reads_as_unset(self) -> None:
        env = Envelope(b"{}", properties={"delivery_mode": 2})
        stored = json.loads(kombu.encode(env, exchange="", routing_key="q", delivery_tag="t"))
        assert stored["properties"]["priority"] == 0  # kombu always writes it
        assert kombu.decode(json.dumps(stored)).envelope == env

    def test_kombu_properties_in_envelope_are_replaced(self) -> None:
        env = Envelope(
            b"x",
            properties={
                "delivery_tag": "old",
                "delivery_info": {"exchange": "old"},
                "body_encoding": "x",
            },
        )
        stored = json.loads(kombu.encode(env, exchange="", routing_key="q", delivery_tag="new"))
        assert stored["properties"]["delivery_tag"] == "new"
        assert stored["properties"]["delivery_info"] == {"exchange": "", "routing_key": "q"}
        assert stored["properties"]["body_encoding"] == "base64"

    def test_mark_redelivered_sets_both_flags_and_decode_reports_it(self) -> None:
        _, text = _task_pushes("redis-plain.json")[0]
        marked, step = kombu.mark_redelivered(text.encode())
        doc = json.loads(marked)
        assert doc["headers"]["redelivered"] is True
        assert doc["properties"]["delivery_info"]["redelivered"] is True
        assert step == 0
        message = kombu.decode(marked)
        assert message.redelivered is True
        assert "redelivered" not in message.envelope.headers
        assert message.envelope == kombu.decode(text).envelope

    def test_mark_redelivered_keeps_garbage_and_finds_the_bucket(self) -> None:
        assert kombu.mark_redelivered(b"\xffjunk") == (b"\xffjunk", 0)
        assert kombu.mark_redelivered(b"[1]") == (b"[1]", 0)
        env = Envelope(b"x", properties={"priority": 7})
        _, step = kombu.mark_redelivered(
            kombu.encode(env, exchange="", routing_key="q", delivery_tag="t")
        )
        assert step == 6

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            (b"\xff\xfe", "not JSON"),
            (b"not json at all", "not JSON"),
            (b"[1, 2]", "JSON list"),
            (b'{"headers": {"id": "x"}}', "no string 'body'"),
            (b'{"body": null}', "no string 'body'"),
            (b'{"body": "***", "properties": {"body_encoding": "base64"}}', "not valid base64"),
            (
                b'{"body": "eA==", "properties": {"body_encoding": "rot13"}}',
                "unknown body_encoding",
            ),
        ],
    )
    def test_bad_input_becomes_an_invalid_envelope(self, raw: bytes, reason: str) -> None:
        message = kombu.decode(raw)
        assert not message.valid
        assert message.envelope.body == raw
        assert message.envelope.content_type == kombu.INVALID_CONTENT_TYPE
        assert reason in message.envelope.headers[kombu.INVALID_HEADER]

    def test_body_without_base64_encoding_is_text(self) -> None:
        message = kombu.decode(b'{"body": "[1, 2]", "content-type": "application/json"}')
        assert message.valid and message.envelope.body == b"[1, 2]"

    def test_binding_members(self) -> None:
        assert kombu.binding_member("celery", "celery") == "celery\x06\x16\x06\x16celery"
        topic = kombu.binding_member("video.*.#", "q", topic=True)
        binding = kombu.parse_binding(topic.encode())
        assert binding is not None
        assert (binding.routing_key, binding.queue) == ("video.*.#", "q")
        assert binding.pattern == r"^video\.[^\.]+\..*?$"  # kombu's own regex text
        assert kombu.parse_binding("no separators") is None
