"""The RESP3 result-wait connection settings: endpoint, handshake, and which URLs get one."""

from __future__ import annotations

import hiredis
import pytest

from celeriac.backends import blocking_waiter_from_url
from celeriac.engines.redis.connection import (
    HandshakeError,
    Resp3Unsupported,
    check_handshake,
    endpoint_for,
    pack,
    parse_redis_url,
)
from celeriac.engines.redis.waiting import MORE, is_push, new_parser
from celeriac.protocol.serializers import JSON


def commands(data: bytes) -> list[list[bytes]]:
    """Parse packed commands back (a command is an array of bulk strings)."""
    reader = hiredis.Reader()
    reader.feed(data)
    out = []
    while (command := reader.gets()) is not False:
        out.append(command)
    return out


def test_pack_is_the_redis_protocol() -> None:
    assert pack("GET", b"k\r\ney", 3) == b"*3\r\n$3\r\nGET\r\n$5\r\nk\r\ney\r\n$1\r\n3\r\n"


def test_handshake_says_hello_3_with_auth_and_name_then_selects() -> None:
    settings = parse_redis_url(
        "redis://alice:s3cret@h:6380/4", {"client_name": "web", "socket_connect_timeout": 2}
    )
    endpoint = endpoint_for(settings)
    assert endpoint is not None
    assert (endpoint.host, endpoint.port, endpoint.path, endpoint.tls) == ("h", 6380, "", None)
    assert endpoint.connect_timeout == 2
    assert commands(endpoint.handshake) == [
        [b"HELLO", b"3", b"AUTH", b"alice", b"s3cret", b"SETNAME", b"web"],
        [b"SELECT", b"4"],
    ]
    password_only = endpoint_for(parse_redis_url("redis://:pw@h/0"))
    assert password_only is not None
    assert commands(password_only.handshake)[0] == [b"HELLO", b"3", b"AUTH", b"default", b"pw"]


def test_unix_tls_and_sentinel_endpoints() -> None:
    unix = endpoint_for(parse_redis_url("unix:///tmp/r.sock?db=2"))
    assert unix is not None and unix.path == "/tmp/r.sock"
    tls = endpoint_for(parse_redis_url("rediss://h/0?ssl_cert_reqs=CERT_NONE"))
    assert tls is not None and tls.tls is not None and not tls.tls.check_hostname
    sentinel = parse_redis_url("sentinel://s1:26379", {"master_name": "m"})
    assert endpoint_for(sentinel) is None


def test_only_plain_connections_get_a_calling_thread_waiter() -> None:
    options = {"master_name": "m"}
    assert blocking_waiter_from_url("redis://h/0", serializer=JSON) is not None
    assert blocking_waiter_from_url("unix:///tmp/r.sock", serializer=JSON) is not None
    assert blocking_waiter_from_url("rediss://h/0", serializer=JSON) is None
    sentinel = "sentinel://s1:26379"
    assert blocking_waiter_from_url(sentinel, serializer=JSON, options=options) is None
    assert blocking_waiter_from_url("sqlite:///x.db", serializer=JSON) is None


def test_handshake_replies() -> None:
    check_handshake({b"server": b"redis", b"proto": 3}, b"OK")
    with pytest.raises(Resp3Unsupported):
        check_handshake(hiredis.ReplyError("ERR unknown command 'HELLO'"), b"OK")
    with pytest.raises(HandshakeError):
        check_handshake({b"proto": 3}, hiredis.ReplyError("ERR DB index is out of range"))


def test_pushes_and_replies_are_told_apart() -> None:
    parser = new_parser()
    parser.feed(b">3\r\n$7\r\nmessage\r\n$1\r\nk\r\n$2\r\n{}\r\n_\r\n$2\r\n{}\r\n+PONG\r\n")
    replies = []
    while (reply := parser.gets()) is not MORE:
        replies.append(reply)
    assert [is_push(r) for r in replies] == [True, False, False, False]
    assert replies[1:] == [None, b"{}", b"PONG"]
