"""Message ids: the fast formatter must give exactly what ``str(uuid.uuid4())`` gives."""

from __future__ import annotations

import re
import uuid

from celeriac.protocol.ids import uuid4

_SHAPE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_uuid4_is_a_canonical_rfc4122_version_4_string() -> None:
    for _ in range(2000):
        text = uuid4()
        parsed = uuid.UUID(text)
        assert _SHAPE.match(text), text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_uuid4_is_random() -> None:
    ids = [uuid4() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    # every free digit varies, including the two random bits of the variant nibble
    assert {text[19] for text in ids} == set("89ab")
    for position in (0, 9, 15, 20, 35):
        assert len({text[position] for text in ids}) == 16
