"""A chain captured from Celery 5.3, 5.5 and 5.7 decodes alike (see also test_kombu_envelope)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from celeriac.protocol import kombu
from celeriac.protocol.message import TaskMessage, decode_task
from tests.vectors import load_vector

FOLDERS = {"5.3.6": "compat-celery-5.3.6/", "5.5.3": "compat-celery-5.5.3/", "5.7.0": ""}


def _pushes(version: str, scenario: str) -> list[dict[str, Any]]:
    """The task messages (kombu documents) LPUSHed in one capture of ``version``."""
    data = load_vector(f"{FOLDERS[version]}redis-{scenario}.json")
    assert data["versions"]["celery"] == version
    return [
        json.loads(c["cmd"][2])
        for c in data["redis_commands"]
        if c["cmd"][0] == "LPUSH" and '"task"' in c["cmd"][2]
    ]


def _decoded(stored: dict[str, Any]) -> TaskMessage:
    return decode_task(kombu.decode(json.dumps(stored)).envelope, {"json"})


@pytest.mark.parametrize("version", FOLDERS)
def test_a_chain_reads_the_same_from_every_version(version: str) -> None:
    first, second, third = (_decoded(d) for d in _pushes(version, "chain"))
    assert [m.task for m in (first, second, third)] == ["capapp.add", "capapp.add", "capapp.mul"]
    assert [first.args, second.args, third.args] == [[1, 1], [2, 10], [12, 2]]
    assert [link["task"] for link in first.chain or []] == ["capapp.mul", "capapp.add"]
    assert first.root_id == first.id == second.parent_id
    assert second.root_id == third.root_id == first.id
