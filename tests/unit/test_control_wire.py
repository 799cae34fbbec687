"""The remote-control wire format against kombu's own pidbox, and the CLI's argument rules."""

from __future__ import annotations

import json
from typing import Any

import click
import pytest

from celeriac.cli.control import compile_arguments, pretty
from celeriac.control import flatten_reply, wire
from celeriac.protocol.envelope import Envelope

kombu = pytest.importorskip("kombu")
from kombu.pidbox import Mailbox  # noqa: E402


def _kombu_request(**kwargs: Any) -> Any:
    """What Celery's ``app.control`` (kombu's fanout Mailbox) sends, as received by a node."""
    conn = kombu.Connection("memory://")
    mailbox = Mailbox("celery", type="fanout", accept=["json"])(conn)
    queue = mailbox.get_queue("w1@host")(conn.default_channel)
    queue.declare()
    mailbox._publish(**kwargs)
    message = queue.get(no_ack=True)
    conn.release()
    return mailbox, message


def test_a_kombu_request_decodes() -> None:
    mailbox, message = _kombu_request(
        type="rate_limit",
        arguments={"task_name": "t.add", "rate_limit": "5/s"},
        destination=["w1@host"],
        reply_ticket="tick-1",
        timeout=1.0,
    )
    envelope = Envelope(
        body=message.body, headers=message.headers, content_type=message.content_type
    )
    request = wire.decode_request(envelope)
    assert request.method == "rate_limit"
    assert request.arguments == {"task_name": "t.add", "rate_limit": "5/s"}
    assert request.destination == ["w1@host"]
    assert request.ticket == "tick-1"
    assert request.reply_to == {"exchange": "reply.celery.pidbox", "routing_key": mailbox.oid}
    assert request.expires > 0
    assert request.clock == message.headers["clock"]
    assert message.delivery_info["exchange"] == wire.MailboxNames().exchange


def test_our_request_has_kombus_body_and_headers() -> None:
    _, message = _kombu_request(
        type="ping", arguments={}, destination=None, reply_ticket="t", timeout=1.0
    )
    theirs = message.payload
    request = wire.Request(
        method="ping", ticket="t", reply_to=theirs["reply_to"], expires=message.headers["expires"]
    )
    ours = wire.encode_request(request, clock=7)
    assert json.loads(ours.body) == theirs
    assert set(ours.headers) == set(message.headers) == {"clock", "expires"}
    assert ours.content_type == "application/json"


def test_a_cast_has_no_ticket_nor_reply_to() -> None:
    body = json.loads(wire.encode_request(wire.Request(method="shutdown"), clock=1).body)
    assert body == {
        "method": "shutdown",
        "arguments": {},
        "destination": None,
        "pattern": None,
        "matcher": None,
    }


def test_reply_is_hostname_to_answer_with_the_ticket() -> None:
    envelope = wire.encode_reply("w1@host", {"ok": "pong"}, "t-9", clock=3)
    assert json.loads(envelope.body) == {"w1@host": {"ok": "pong"}}
    assert envelope.headers == {"ticket": "t-9", "clock": 3}
    assert wire.decode_reply(envelope) == ("t-9", {"w1@host": {"ok": "pong"}})


def test_reply_carries_what_json_cannot_as_repr() -> None:
    envelope = wire.encode_reply("w", {"ok": {1, 2}}, "t", clock=1)
    assert json.loads(envelope.body) == {"w": {"ok": "{1, 2}"}}


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        (b"not json", "application/json", "not JSON"),
        (b"[1, 2]", "application/json", "not an object"),
        (b'{"arguments": {}}', "application/json", "no 'method'"),
        (b'{"method": "ping", "arguments": [1]}', "application/json", "'arguments'"),
        (b'{"method": "ping", "destination": "w1"}', "application/json", "'destination'"),
        (b'{"method": "ping", "reply_to": "q"}', "application/json", "'reply_to'"),
        (b"\x80\x04", "application/x-python-serialize", "content type"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(
    body: bytes, content_type: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        wire.decode_request(Envelope(body=body, content_type=content_type))


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (wire.Request("ping"), True),
        (wire.Request("ping", destination=["w1@host"]), True),
        (wire.Request("ping", destination=["w2@host"]), False),
        (wire.Request("ping", pattern="w*@host", matcher="glob"), True),
        (wire.Request("ping", pattern="^w2", matcher="pcre"), False),
        (wire.Request("ping", pattern="^w\\d@", matcher="pcre"), True),
    ],
)
def test_addressing(request_: wire.Request, expected: bool) -> None:
    assert wire.matches("w1@host", request_) is expected


def test_an_unknown_matcher_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown matcher"):
        wire.matches("w1", wire.Request("ping", pattern="x", matcher="regex"))


def test_names_follow_control_exchange() -> None:
    names = wire.MailboxNames("proj")
    assert names.exchange == "proj.pidbox"
    assert names.reply_exchange == "reply.proj.pidbox"
    assert names.node_queue("w1@h") == "w1@h.proj.pidbox"
    assert names.reply_queue("abc") == "abc.reply.proj.pidbox"


def test_clock_moves_past_what_it_sees() -> None:
    clock = wire.Clock()
    assert clock.forward() == 1
    clock.adjust(41)
    assert clock.forward() == 42


def test_flatten_reply_merges_nodes() -> None:
    assert flatten_reply([{"a": 1}, {"b": 2}]) == {"a": 1, "b": 2}
    with pytest.warns(UserWarning, match="multiple replies"):
        flatten_reply([{"a": 1}, {"a": 2}])


# -- the command line's arguments (Celery's Panel rules) --------------------------------


def test_positional_arguments_are_typed() -> None:
    assert compile_arguments("control", "rate_limit", ["t.add", "5/s"]) == {
        "task_name": "t.add",
        "rate_limit": "5/s",
    }
    assert compile_arguments("control", "time_limit", ["t.add", "1", "2.5"]) == {
        "task_name": "t.add",
        "soft": 1.0,
        "hard": 2.5,
    }


def test_variadic_and_keyword_arguments() -> None:
    assert compile_arguments("control", "revoke", ["a", "b", "--terminate", "--signal=KILL"]) == {
        "task_id": ["a", "b"],
        "terminate": True,
        "signal": "KILL",
    }
    assert compile_arguments("control", "terminate", ["KILL", "a"]) == {
        "signal": "KILL",
        "task_id": ["a"],
    }


def test_unknown_commands_and_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(click.UsageError, match="not recognized"):
        compile_arguments("inspect", "rate_limit", [])
    with pytest.raises(click.UsageError, match="takes arguments"):
        compile_arguments("control", "cancel_consumer", ["q1", "q2"])
    with pytest.raises(click.UsageError, match="bad n"):
        compile_arguments("control", "pool_grow", ["many"])


def test_replies_print_as_celerys() -> None:
    assert pretty({"ok": "pong"}) == ("OK", "    pong")
    assert pretty({"error": "unknown task"}) == ("ERROR", "    unknown task")
    assert pretty([]) == ("OK", "- empty -")
    assert pretty(["t.a", "t.b"]) == ("OK", "* t.a\n* t.b")
