"""The orjson fast path parses exactly what json.loads parses, or hands over to it."""

from __future__ import annotations

import json

import pytest

from celeriac.protocol import _fastjson
from celeriac.protocol.serializers import JSON

CASES = [
    b'{"a":[1,2.5,null,true,false],"b":{"c":"\xc3\xbc"}}',
    b"9223372036854775807",  # 2**63 - 1: the largest orjson keeps as an int
    b"-9223372036854775808",
    b"1180591620717411303424",  # 2**70: orjson would make it a float
    b"[1.5e300, 0.1, -0.0, 1e-320]",
    b'{"k":"12345678901234567890123"}',  # long digit runs inside strings
    b'{"dup":1,"dup":2}',
    b"NaN",  # orjson refuses it; json.loads accepts
    b"[Infinity, -Infinity]",
    b'"\\ud83d\\ude00 and \\u00e9"',
    b'{"__type__":"bytes","__value__":"eA=="}',
]


@pytest.mark.parametrize("data", CASES)
def test_loads_matches_the_standard_library(data: bytes) -> None:
    expected = json.loads(data)
    got = _fastjson.loads(data)
    assert repr(got) == repr(expected)  # repr: NaN != NaN, and int vs float must match
    assert type(got) is type(expected)


@pytest.mark.parametrize("data", [b"{", b"[1,]", b"\xff\xfe", b""])
def test_invalid_json_raises_as_the_standard_library_does(data: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(data)
    with pytest.raises(ValueError):
        _fastjson.loads(data)


def test_serializer_still_untags_kombu_types_even_when_escaped() -> None:
    plain = JSON.loads(b'{"v":{"__type__":"bytes","__value__":"x"}}')
    escaped = JSON.loads(b'{"v":{"\\u005f_type__":"bytes","__value__":"x"}}')
    assert plain == escaped == {"v": b"x"}
    assert JSON.loads(b"1180591620717411303424") == 2**70
