"""Bad input: wrong apply_async options fail at the call; wrong messages fail as MessageError.

The worker-process side (a batch of good and poison messages on each broker) is in
``tests/integration/test_poison_messages.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from typing import Any

import pytest
from kombu import Queue  # Celery's Queue objects name a queue too

from celeriac import Celery
from celeriac.exceptions import MessageError
from celeriac.protocol import compression, kombu
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.message import TaskMessage, decode_task, encode_task

DEEP = 5000


@pytest.fixture
def app() -> Celery:
    app = Celery("bad-input", broker="memory://")
    app.conf.task_always_eager = False
    return app


# --- apply_async options ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "error", "words"),
    [
        ("time_limit", "30", TypeError, "time_limit must be a number of seconds"),
        ("soft_time_limit", [1], TypeError, "soft_time_limit must be a number"),
        ("time_limit", -1, ValueError, "time_limit must be a finite number of seconds >= 0"),
        ("time_limit", float("inf"), ValueError, "time_limit must be a finite number"),
        ("countdown", "x", TypeError, "countdown must be a number of seconds, not str 'x'"),
        ("countdown", True, TypeError, "countdown must be a number of seconds"),
        ("retries", "abc", TypeError, "retries must be a whole number, not str 'abc'"),
        ("retries", {}, TypeError, "retries must be a whole number, not dict"),
        ("retries", -2, ValueError, "retries must be >= 0"),
        ("priority", 256, ValueError, "priority must be from 0 to 255"),
        ("priority", "high", TypeError, "priority must be a whole number"),
        ("expires", "soon", ValueError, "expires is not an ISO-8601 time: 'soon'"),
        ("expires", [1], TypeError, "expires must be a datetime, seconds"),
        ("eta", object(), TypeError, "eta must be a datetime"),
        ("queue", 5, TypeError, "queue must be a name or a queue object, not int 5"),
        ("exchange", 1.5, TypeError, "exchange must be a name"),
        ("routing_key", 7, TypeError, "routing_key must be a string"),
        ("headers", [1], TypeError, "headers must be a dict, not list"),
        ("task_id", 42, TypeError, "task_id must be a string"),
        ("group_index", "0", TypeError, "group_index must be a whole number"),
        ("link", "tasks.cb", TypeError, "link must be a signature or a list of signatures"),
        ("link_error", [None], TypeError, "link_error must be a signature"),
    ],
)
def test_wrong_apply_async_options_fail_at_the_call(
    app: Celery, option: str, value: Any, error: type[Exception], words: str
) -> None:
    @app.task
    def noop() -> None:
        pass

    with pytest.raises(error) as raised:
        noop.apply_async(**{option: value})
    assert words in str(raised.value)
    transport = app.run_sync(app.aget_transport())
    assert app.run_sync(transport.queue_sizes(["celery"]))["celery"] == 0  # nothing sent


def test_valid_apply_async_options_are_sent(app: Celery) -> None:
    @app.task
    def noop() -> None:
        pass

    noop.apply_async(
        time_limit=30, soft_time_limit=2.5, countdown=-1, retries=2, priority=255,
        expires=dt.timedelta(minutes=1), eta="2026-01-01T00:00:00", queue=Queue("celery"),
        headers={"x": 1}, task_id="abc", group_index=0,
    )  # fmt: skip
    transport = app.run_sync(app.aget_transport())
    assert app.run_sync(transport.queue_sizes(["celery"]))["celery"] == 1


def test_a_task_with_a_wrong_time_limit_fails_at_its_first_call(app: Celery) -> None:
    @app.task(time_limit="30")
    def limited() -> None:
        pass

    with pytest.raises(TypeError, match="time_limit must be a number of seconds"):
        limited.delay()


# --- the decoder -------------------------------------------------------------------------


def _envelope(body: bytes = b"[[], {}, {}]", **headers: Any) -> Envelope:
    base = {"lang": "py", "task": "t", "id": "id-1", "retries": 0, "timelimit": [None, None]}
    return Envelope(body=body, headers={**base, **headers})


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"retries": "abc"}, "header 'retries' must be a whole number, not str 'abc'"),
        ({"retries": {}}, "header 'retries' must be a whole number, not dict {}"),
        ({"retries": True}, "header 'retries' must be a whole number"),
        ({"timelimit": ["a", "b"]}, "timelimit[0] must be a number of seconds or None, not str"),
        ({"timelimit": [1, "b"]}, "timelimit[1] must be a number of seconds"),
        ({"timelimit": {}}, "timelimit must be a pair [hard, soft], not dict"),
        ({"timelimit": 5}, "timelimit must be a pair"),
        ({"eta": 5}, "header 'eta' must be an ISO-8601 string"),
        ({"expires": "tomorrow"}, "header 'expires' is not an ISO-8601 time"),
        ({"group_index": "x"}, "header 'group_index' must be a whole number"),
        ({"stamps": [1]}, "header 'stamps' must be a dict"),
        ({"root_id": {}}, "header 'root_id' must be a string or None"),
        ({"parent_id": 1}, "header 'parent_id' must be a string"),
        ({"group": []}, "header 'group' must be a string"),
        ({"shadow": 3}, "header 'shadow' must be a string"),
        ({"task": 5}, "header 'task' must be a task name, not int 5"),
        ({"id": None}, "no 'id' header"),
        ({"replaced_task_nesting": "x"}, "header 'replaced_task_nesting' must be a whole"),
        ({"retries": [[[[[[[[[[1]]]]]]]]]]}, "header 'retries' must be a whole number"),
    ],
)
def test_wrong_header_types_are_message_errors_naming_the_header(
    headers: dict[str, Any], words: str
) -> None:
    with pytest.raises(MessageError) as raised:
        decode_task(_envelope(**headers), ["json"])
    assert words in str(raised.value)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * DEEP + b"]" * DEEP, "nested too deeply"),
        (b'[[], {}, {"callbacks": 5}]', "embed 'callbacks' must be a list of signatures"),
        (b'[[], {}, {"errbacks": [1]}]', "embed 'errbacks' must hold signature dicts"),
        (b'[[], {}, {"chord": []}]', "embed 'chord' must be a dict"),
        (b"[[], [], {}]", "kwargs an object"),
        (b"[1, 2]", "must be [args, kwargs, embed]"),
    ],
)
def test_wrong_bodies_are_message_errors(body: bytes, words: str) -> None:
    with pytest.raises(MessageError) as raised:
        decode_task(_envelope(body), ["json"])
    assert words in str(raised.value)


def test_the_log_reason_of_an_unreadable_envelope_is_its_cause() -> None:
    envelope = kombu.decode(b"\xff not json").envelope
    with pytest.raises(MessageError) as raised:
        decode_task(envelope, ["json"])
    assert "unreadable message: not JSON" in str(raised.value)
    assert "application/x-celeriac-invalid" not in str(raised.value)


def test_a_deeply_nested_kombu_envelope_is_invalid_not_an_exception() -> None:
    raw = b'{"body": "", "headers": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    message = kombu.decode(raw)
    assert not message.valid
    assert message.envelope.body == raw  # the stored bytes, kept for the dead letters
    assert "nested too deeply" in message.envelope.headers[kombu.INVALID_HEADER]
    assert kombu.mark_redelivered(raw) == (raw, 0)


def test_a_valid_message_still_decodes_with_every_field() -> None:
    msg = TaskMessage(
        id="a", task="t", args=[1], kwargs={"k": 2}, retries=3, time_limit=10,
        soft_time_limit=5.5, group="g", group_index=1, priority=7, stamps={"s": 1},
        callbacks=[{"task": "cb"}], chord={"task": "body"},
    )  # fmt: skip
    decoded = decode_task(encode_task(msg), ["json"])
    assert (decoded.retries, decoded.time_limit, decoded.soft_time_limit) == (3, 10, 5.5)
    assert (decoded.group_index, decoded.priority, decoded.stamps) == (1, 7, {"s": 1})
    assert decoded.callbacks == [{"task": "cb"}] and decoded.chord == {"task": "body"}


# --- size limits -------------------------------------------------------------------------


def test_a_body_over_the_size_limit_is_refused() -> None:
    envelope = _envelope(b"[[" + b"1," * 600 + b"1], {}, {}]")
    assert len(decode_task(envelope, ["json"], 0).args) == 601
    with pytest.raises(MessageError, match="more than task_message_max_size"):
        decode_task(envelope, ["json"], 1000)


@pytest.mark.parametrize("codec", ["gzip", "bzip2", "lzma"])
def test_decompression_stops_at_the_size_limit(codec: str) -> None:
    header, data = compression.compress(codec, b" " * 10_000_000)
    assert len(compression.decompress(header, data)) == 10_000_000
    assert len(compression.decompress(header, data, 10_000_000)) == 10_000_000
    with pytest.raises(MessageError, match="inflates to more than task_message_max_size"):
        compression.decompress(header, data, 9_999_999)


def test_a_truncated_compressed_body_is_corrupt() -> None:
    data = zlib.compress(json.dumps([[1] * 1000, {}, {}]).encode())
    with pytest.raises(MessageError, match="truncated"):
        compression.decompress("application/x-gzip", data[: len(data) // 2])
