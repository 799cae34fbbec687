"""Fuzzing (hypothesis): the parsers of untrusted or user input raise only what they document.

* the task message decoder (:func:`decode_task`): structured headers of every JSON type at
  any of Celery's header names, structured and random bodies, any content type and
  compression header: a TaskMessage or a MessageError, nothing else;
* kombu's envelope parser (:func:`kombu.decode`): never raises, and gives back what
  :func:`kombu.encode` wrote;
* the crontab and solar parsers: a schedule, or ValueError (TypeError for a field of a type
  a crontab does not take); a parsed schedule always has a next run after now;
* the settings loader: any names and values load; only ImproperlyConfigured at start.

Example counts are bounded (about 10 s in all) so that CI stays fast; every test is also
bounded in time, so a hang fails it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from celeriac.beat.crontab import crontab
from celeriac.beat.solar import EVENTS, solar
from celeriac.conf import Settings, check_settings
from celeriac.exceptions import ImproperlyConfigured, MessageError
from celeriac.protocol import kombu
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.message import RESERVED_HEADERS, TaskMessage, decode_task

pytestmark = pytest.mark.timeout(60)

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
# Celery's header names (and a few others) with values of any JSON type.
headers = st.dictionaries(
    st.sampled_from(sorted(RESERVED_HEADERS | {"x-custom", "x-celeriac-invalid"})),
    json_values,
    max_size=12,
)
# Bodies shaped like protocol 2 ([args, kwargs, embed]) with parts of any type, like
# protocol 1 (an object), or anything at all.
embeds = st.fixed_dictionaries(
    {},
    optional={key: json_values for key in ("callbacks", "errbacks", "chain", "chord")},
)
structured_bodies = (
    st.tuples(
        json_values | st.lists(json_values),
        json_values | st.dictionaries(st.text(), json_values),
        embeds | json_values,
    ).map(list)
    | st.dictionaries(
        st.sampled_from(["task", "id", "args", "kwargs", "eta", "retries", "timelimit"]),
        json_values,
    )
    | json_values
)


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


raw_bodies = (
    structured_bodies.map(lambda body: json.dumps(body).encode())
    | st.binary(max_size=200)
    | st.integers(1, 20_000).map(_deep)
)
content_types = st.sampled_from(
    ["application/json", "application/x-msgpack", "application/x-python-serialize",
     "application/data", kombu.INVALID_CONTENT_TYPE, "text/plain", ""]
)  # fmt: skip
compressions = st.sampled_from([None, "application/x-gzip", "application/x-bz2", "zlib", "nope"])


@FUZZ
@given(headers, raw_bodies, content_types, compressions, st.booleans(), st.booleans())
def test_the_decoder_gives_a_message_or_a_message_error(
    found: dict[str, Any],
    body: bytes,
    content_type: str,
    compression: str | None,
    compress: bool,
    limited: bool,
) -> None:
    if compression is not None:
        found["compression"] = compression
        if compress:
            body = zlib.compress(body)
    envelope = Envelope(body=body, headers=found, content_type=content_type)
    try:
        message = decode_task(envelope, ["json", "msgpack"], 100 if limited else 0)
    except MessageError:
        return
    assert isinstance(message, TaskMessage) and isinstance(message.id, str)
    assert isinstance(message.retries, int) and isinstance(message.args, list)


@FUZZ
@given(st.builds(dict, headers), structured_bodies)
def test_a_message_with_celerys_required_headers_decodes_or_is_refused(
    found: dict[str, Any], body: Any
) -> None:
    found.update(task="t", id="some-id")
    envelope = Envelope(body=json.dumps(body).encode(), headers=found)
    try:
        decode_task(envelope, ["json"])
    except MessageError as exc:
        assert str(exc)  # a reason for the log line


base64_text = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())
envelope_objects = st.fixed_dictionaries(
    {},
    optional={
        "body": st.text(max_size=40) | base64_text | json_values,
        "content-type": json_values,
        "content-encoding": json_values,
        "headers": json_values | headers,
        "properties": json_values | st.fixed_dictionaries(
            {}, optional={"body_encoding": st.sampled_from(["base64", "utf-8", "x"]) | json_values,
                          "delivery_info": json_values, "delivery_tag": json_values,
                          "priority": json_values}
        ),
    },
)  # fmt: skip


@FUZZ
@given(envelope_objects.map(lambda obj: json.dumps(obj).encode()) | st.binary(max_size=300))
def test_the_envelope_parser_never_raises(raw: bytes) -> None:
    message = kombu.decode(raw)
    assert isinstance(message.envelope, Envelope)
    if not message.valid:
        assert message.envelope.body == raw  # kept whole for the dead letters
        assert message.envelope.headers[kombu.INVALID_HEADER]
    kombu.mark_redelivered(raw)


@SOME
@given(st.binary(max_size=100), headers.filter(lambda h: "redelivered" not in h))
def test_the_envelope_round_trips(body: bytes, found: dict[str, Any]) -> None:
    envelope = Envelope(body=body, headers=found)
    raw = kombu.encode(envelope, exchange="e", routing_key="k", delivery_tag="t")
    decoded = kombu.decode(raw)
    assert decoded.valid and decoded.envelope.body == body
    assert (decoded.exchange, decoded.routing_key, decoded.delivery_tag) == ("e", "k", "t")


cron_text = st.text(alphabet="0123456789*/-,LW#? abcdefjmnorstuy", max_size=12)
cron_fields = (
    cron_text | st.integers(-5, 70) | st.lists(st.integers(-2, 62) | cron_text, max_size=4)
)
NOW = dt.datetime(2026, 3, 8, 1, 59, tzinfo=dt.UTC)


@FUZZ
@given(cron_fields, cron_fields, cron_fields, cron_fields, cron_fields)
def test_the_crontab_parser_raises_only_value_or_type_errors(
    minute: Any, hour: Any, day_of_week: Any, day_of_month: Any, month_of_year: Any
) -> None:
    try:
        schedule = crontab(
            minute, hour, day_of_week, day_of_month, month_of_year, tz="America/New_York"
        )
    except (ValueError, TypeError):
        return
    assert schedule.next_run(None, NOW) >= NOW  # parsed: it runs again, and soon found


@SOME
@given(st.text(alphabet="0123456789*/-, abcdefjmnorstuy", max_size=30))
def test_cron_lines_parse_or_raise_value_error(line: str) -> None:
    try:
        crontab.from_string(line)
    except ValueError:
        pass


@SOME
@given(
    st.sampled_from(sorted(EVENTS)) | st.text(max_size=10),
    st.floats() | st.integers(-200, 200) | st.text(max_size=5),
    st.floats() | st.integers(-200, 200),
)
def test_the_solar_parser_raises_only_value_errors(event: Any, lat: Any, lon: Any) -> None:
    try:
        schedule = solar(event, lat, lon)
    except ValueError:
        return
    assert schedule.next_run(None, NOW) > NOW


setting_names = st.sampled_from(
    ["broker_url", "task_serializer", "accept_content", "task_protocol", "CELERY_TASK_SERIALIZER",
     "task_time_limit", "worker_prefetch_multiplier", "task_routes", "result_expires",
     "task_message_max_size", "timezone", "beat_schedule"]
) | st.text(max_size=20)  # fmt: skip


@SOME
@given(st.dictionaries(setting_names, json_values, max_size=6))
def test_the_settings_loader_takes_anything_and_refuses_only_at_start(
    values: dict[str, Any],
) -> None:
    conf = Settings()
    conf.from_object(values)
    for name in values:
        conf.get(name)
    try:
        check_settings(conf)
    except ImproperlyConfigured as exc:
        assert str(exc)
