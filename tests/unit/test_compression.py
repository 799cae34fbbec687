"""Body compression by kombu's names, checked against a gzip body Celery 5.7 sent."""

from __future__ import annotations

import base64
import json

import pytest

from celeriac.exceptions import MessageError
from celeriac.protocol.compression import compress, content_name, decompress
from tests.vectors import load_vector


def test_the_gzip_body_celery_sent_decompresses_to_its_task_body() -> None:
    commands = load_vector("redis-producer-messages.json")["redis_commands"]
    stored = [json.loads(c["cmd"][2]) for c in commands if c["cmd"][0] == "LPUSH"]
    [gzipped] = [s for s in stored if s["headers"].get("compression")]
    assert gzipped["headers"]["compression"] == "application/x-gzip"
    body = json.loads(decompress("application/x-gzip", base64.b64decode(gzipped["body"])))
    args, kwargs, embed = body
    assert isinstance(args, list) and isinstance(kwargs, dict) and "chain" in embed
    # and ours is what kombu would send: a zlib stream under the same header
    header, ours = compress("gzip", json.dumps(body).encode())
    assert header == "application/x-gzip" and ours[:1] == b"\x78"
    assert json.loads(decompress(header, ours)) == body


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("gzip", "application/x-gzip"),
        ("zlib", "application/x-gzip"),
        ("bzip2", "application/x-bz2"),
        ("bz2", "application/x-bz2"),
        ("lzma", "application/x-lzma"),
        ("xz", "application/x-lzma"),
        ("application/x-bz2", "application/x-bz2"),
    ],
)
def test_every_name_round_trips(name: str, header: str) -> None:
    data = b"celeriac " * 100
    got, packed = compress(name, data)
    assert got == header == content_name(name)
    assert len(packed) < len(data)
    assert decompress(got, packed) == data
    assert decompress(name, packed) == data  # the short name is read too


def test_unknown_names_and_corrupt_bodies_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown compression 'snappy' \(known: bz2, bzip2"):
        compress("snappy", b"x")
    with pytest.raises(MessageError, match="unknown compression 'application/x-snappy'"):
        decompress("application/x-snappy", b"x")
    for header in ("application/x-gzip", "application/x-bz2", "application/x-lzma"):
        with pytest.raises(MessageError, match=f"corrupt {header} body"):
            decompress(header, b"not compressed at all")
