"""The hand-written publish frames are byte for byte what pamqp writes."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest
from pamqp import commands as cmd
from pamqp import frame as amqp_frame

from celeriac import Celery
from celeriac.engines.amqp.connection import properties_for
from celeriac.engines.amqp.wire import pamqp_publish_frames, publish_frames
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.message import encode_task

HEADERS: list[dict[str, Any]] = [
    {},
    {"id": "abc", "retries": 0, "eta": None, "ignore_result": False, "group": True},
    {"n": 300, "big": 70000, "huge": 2**40, "neg": -5, "neg2": -40000, "u": 65000},
    {"list": [1, "a", None, [2, {"x": "é"}]], "table": {"k": {"nested": [True]}}},
    {"f": 1.5, "d": decimal.Decimal("1.25"), "t": dt.datetime(2026, 1, 2, 3, 4, 5)},
    {"k" * 130: "long key"},
]


@pytest.mark.parametrize("headers", HEADERS)
@pytest.mark.parametrize(
    "properties",
    [
        {},
        {"priority": 9, "correlation_id": "id-1", "reply_to": "r", "delivery_mode": 1},
    ],
)
def test_frames_match_pamqp(headers: dict[str, Any], properties: dict[str, Any]) -> None:
    env = Envelope(
        body=b"x" * 300, headers=headers, content_type="application/json",
        content_encoding="utf-8", properties=properties,
    )  # fmt: skip
    props = properties_for(env)
    for frame_max in (4096, 131072):
        ours = publish_frames(1, "ex", "rk", props, env.body, frame_max, True)
        assert ours == pamqp_publish_frames(1, "ex", "rk", props, env.body, frame_max, True)


def test_other_properties_and_empty_fields_match_pamqp() -> None:
    props = cmd.Basic.Properties(content_type="", headers=None, message_id="m", app_id="a")
    assert publish_frames(2, "", "q", props, b"", 131072, False) == pamqp_publish_frames(
        2, "", "q", props, b"", 131072, False
    )


def test_a_task_message_matches_pamqp_and_reads_back() -> None:
    app = Celery("wire", broker="memory://", set_as_current=False)
    req = app.build_request("wire.add", (1, 2.5), {"k": [1, 2]}, {"countdown": 5})
    env = encode_task(req.message, req.serializer, req.compression)
    props = properties_for(env)
    ours = publish_frames(1, "", "celery", props, env.body, 131072, True)
    assert ours == pamqp_publish_frames(1, "", "celery", props, env.body, 131072, True)
    used, _, method = amqp_frame.unmarshal(ours)
    assert isinstance(method, cmd.Basic.Publish) and method.routing_key == "celery"
    _, _, header = amqp_frame.unmarshal(ours[used:])
    assert header.properties.headers["id"] == req.message.id
