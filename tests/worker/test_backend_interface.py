"""Every result backend declares what the worker and the client ask of it (no duck typing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from celeriac.backends import ResultBackend, backend_from_url
from celeriac.engines import implementation, roles_for
from celeriac.protocol.serializers import get_serializer

# One URL per engine that keeps results; nothing is connected.
URLS = [
    "memory://interface",
    "sqlite:///{tmp}/results.sqlite",
    "redis://127.0.0.1:6379/0",
    "postgresql://127.0.0.1/test",
    "rpc://",
]


def _backend(url: str, tmp_path: Path) -> ResultBackend:
    return backend_from_url(
        url.format(tmp=tmp_path), serializer=get_serializer("json"), expires=None
    )


def test_the_urls_cover_every_engine_that_keeps_results(tmp_path: Path) -> None:
    table = {
        implementation(f"{scheme}://x", "results", "result backend")[0]
        for scheme in roles_for("results")
    }
    assert {type(_backend(url, tmp_path)) for url in URLS} == table


@pytest.mark.parametrize("url", URLS)
def test_backend_declares_chords_and_replies(url: str, tmp_path: Path) -> None:
    backend = _backend(url, tmp_path)
    assert isinstance(backend, ResultBackend)
    assert isinstance(backend.supports_chords, bool)
    if url.startswith("rpc:"):
        # Results travel to the sender: the worker sends them, the client names its queue.
        assert backend.supports_chords is False
        assert backend.replies is not None and callable(backend.replies.store_for)
        assert isinstance(backend.reply_queue, str) and backend.reply_queue
    else:
        assert backend.supports_chords is True
        assert backend.replies is None
        assert backend.reply_queue is None
