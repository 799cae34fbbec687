"""The orjson fast path parses exactly what json.loads parses, or hands over to it."""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import enum
import json
import uuid

import pytest

from celeriac.exceptions import SerializationError
from celeriac.protocol import _fastjson, serializers
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


# --- dumps: orjson only where its bytes are the standard encoder's -----------------------------
def _stdlib(value: object) -> bytes:
    """What JSONSerializer wrote before the orjson path existed."""
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
    return encoder.encode(value).encode("utf-8", errors="surrogatepass")


_ALL_TEXT = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)

PLAIN = [
    [[], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}],
    [[1, "two", True, False, None], {"k": [1, {"n": [[], ()]}]}, {}],
    (1, (2, (3,))),
    {"x": _ALL_TEXT, "y": '\x00\x1f\x7f"\\/\b\f\n\r\t\u2028\u2029'},
    [2**63 - 1, -(2**63), 2**64 - 1, 0, -1],
    {"": "", "key with spaces": "é", "😀": ["😀"]},
]


@pytest.mark.skipif(not _fastjson.HAVE_ORJSON, reason="orjson not installed")
@pytest.mark.parametrize("value", PLAIN)
def test_dumps_of_plain_values_is_the_standard_encoders_bytes(value: object) -> None:
    assert _fastjson.is_plain(value)
    assert _fastjson.dumps(value) == _stdlib(value)
    assert JSON.dumps(value) == _stdlib(value)


class _Str(str):
    pass


class _Color(enum.Enum):
    RED = "red"


NOT_PLAIN = [
    [1.5],  # orjson writes floats its own way (1e16 vs 1e+16, NaN as null)
    {"x": float("nan")},
    [uuid.UUID(int=1)],  # kombu's tagged object, not orjson's string
    [dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)],
    [dt.date(2026, 1, 2)],
    [decimal.Decimal("1.5")],
    [b"bytes"],
    [_Str("subclass")],
    [collections.OrderedDict(a=1)],
    [{1, 2}],
    [_Color.RED],  # orjson would write its value; the standard encoder refuses it
]


@pytest.mark.parametrize("value", NOT_PLAIN)
def test_dumps_leaves_other_values_to_the_standard_encoder(value: object) -> None:
    assert not _fastjson.is_plain(value)
    assert _fastjson.dumps(value) is None
    encoder = json.JSONEncoder(
        default=serializers._tag_value, ensure_ascii=False, separators=(",", ":")
    )
    try:
        expected = encoder.encode(value)
    except TypeError:
        with pytest.raises(SerializationError):
            JSON.dumps(value)
        return
    assert JSON.dumps(value) == expected.encode("utf-8")


@pytest.mark.parametrize(
    "value",
    [
        [2**64],
        [-(2**63) - 1],
        ["\ud800 lone surrogate"],
        {1: "int key"},
        {None: "x"},
        {_Str("k"): 1},
    ],
)
def test_values_orjson_refuses_fall_back_to_the_standard_encoder(value: object) -> None:
    assert _fastjson.dumps(value) is None
    assert JSON.dumps(value) == _stdlib(value)


def test_deep_or_circular_data_is_reported_by_the_standard_encoder() -> None:
    deep: list[object] = []
    for _ in range(100):
        deep = [deep]
    assert _fastjson.dumps(deep) is None
    assert JSON.dumps(deep) == _stdlib(deep)
    circular: list[object] = []
    circular.append(circular)
    with pytest.raises(SerializationError):
        JSON.dumps(circular)


def test_serializer_writes_the_same_bytes_without_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [*PLAIN, [1.5, uuid.UUID(int=1), {"d": dt.date(2026, 1, 2)}]]
    with_orjson = [JSON.dumps(value) for value in values]
    monkeypatch.setattr(_fastjson, "orjson", None)
    assert [JSON.dumps(value) for value in values] == with_orjson
