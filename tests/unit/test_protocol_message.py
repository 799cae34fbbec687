"""Protocol v2 encode/decode, checked against messages captured from real Celery."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from celeriac.exceptions import ContentDisallowed, MessageError, SerializationError
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.message import TaskMessage, decode_task, encode_task
from tests.vectors import load_vector


def _captured_lpush(name: str) -> list[dict[str, Any]]:
    data = load_vector(name)
    found = []
    for command in data["redis_commands"]:
        cmd = command["cmd"]
        if cmd[0] == "LPUSH" and '"headers"' in cmd[2] and '"task"' in cmd[2]:
            found.append(json.loads(cmd[2]))
    return found


def _envelope_from_kombu(raw: dict[str, Any]) -> Envelope:
    return Envelope(
        body=base64.b64decode(raw["body"]),
        headers=raw["headers"],
        content_type=raw["content-type"],
        content_encoding=raw["content-encoding"],
        properties=raw["properties"],
    )


def test_decodes_a_message_sent_by_celery() -> None:
    raw = _captured_lpush("redis-plain.json")[0]
    msg = decode_task(_envelope_from_kombu(raw), {"json"})
    assert msg.task.endswith(".add")
    assert msg.args == [2, 3]
    assert msg.kwargs == {}
    assert msg.root_id == msg.id
    assert msg.chain is None and msg.callbacks is None


def test_our_headers_have_celerys_key_set() -> None:
    raw = _captured_lpush("redis-plain.json")[0]
    ours = encode_task(TaskMessage(id=str(uuid.uuid4()), task="capapp.add", args=[2, 3]))
    assert set(ours.headers) == set(raw["headers"])
    assert ours.properties["correlation_id"] == ours.headers["id"]
    assert json.loads(ours.body) == [
        [2, 3],
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]


def test_round_trip_keeps_every_field() -> None:
    eta = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    msg = TaskMessage(
        id="t1", task="x.y", args=[1, "a"], kwargs={"k": [1, 2]}, eta=eta, retries=2,
        parent_id="p", root_id="r", group="g", group_index=3, time_limit=30, soft_time_limit=20,
        headers={"x-trace-id": "abc"}, priority=7, reply_to="oid",
    )  # fmt: skip
    env = encode_task(msg)
    assert env.headers["timelimit"] == [30, 20]  # Celery sends [hard, soft]
    back = decode_task(env, {"json"})
    expected = dataclasses.replace(
        msg, argsrepr="(1, 'a')", kwargsrepr="{'k': [1, 2]}", origin=back.origin
    )
    assert back == expected


def test_tagged_json_types_round_trip() -> None:
    value = [
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dt.date(2024, 1, 2),
        uuid.UUID(int=1),
        Decimal("1.5"),
    ]
    back = decode_task(encode_task(TaskMessage(id="t", task="x", args=value)), {"json"})
    assert back.args == value


def test_unserializable_argument_is_named() -> None:
    with pytest.raises(SerializationError, match="keyword argument 'handle'"):
        encode_task(TaskMessage(id="t", task="x", args=[1], kwargs={"handle": object()}))


def test_pickle_refused_unless_accepted() -> None:
    env = encode_task(TaskMessage(id="t", task="x", args=[{1, 2}]), serializer="pickle")
    with pytest.raises(ContentDisallowed, match="not in accept_content"):
        decode_task(env, {"json"})
    assert decode_task(env, {"json", "pickle"}).args == [{1, 2}]


def test_msgpack_and_compression() -> None:
    env = encode_task(
        TaskMessage(id="t", task="x", args=[1, "two"]), serializer="msgpack", compress_with="gzip"
    )
    assert env.headers["compression"] == "application/x-gzip"
    assert env.body[:1] == b"\x78"  # a zlib stream, as kombu's "gzip" is
    assert decode_task(env, {"msgpack"}).args == [1, "two"]


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (Envelope(body=b"{not json", headers={"task": "x", "id": "1"}), "undecodable body"),
        (
            Envelope(body=b"[1, 2]", headers={"task": "x", "id": "1"}),
            "must be \\[args, kwargs, embed\\]",
        ),
        (Envelope(body=b"[[], {}, {}]", headers={}), "not a task message"),
        (Envelope(body=b"[[], {}, {}]", headers={"task": "x"}), "no 'id' header"),
        (
            Envelope(body=b"[[], {}, {}]", headers={"task": "x", "id": "1", "eta": "soon"}),
            "not an ISO-8601",
        ),
        (
            Envelope(body=b"x", headers={"task": "x", "id": "1"}, content_type="text/weird"),
            "not in accept_content",
        ),
    ],
)
def test_bad_messages_explain_themselves(envelope: Envelope, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        decode_task(
            envelope, {"json", "text/weird"} if "weird" not in envelope.content_type else {"json"}
        )


def test_protocol_1_body_is_read() -> None:
    body = json.dumps(
        {"task": "x.y", "id": "abc", "args": [1], "kwargs": {"a": 2}, "retries": 1}
    ).encode()
    msg = decode_task(Envelope(body=body, headers={}), {"json"})
    assert (msg.task, msg.id, msg.args, msg.kwargs, msg.retries) == ("x.y", "abc", [1], {"a": 2}, 1)
