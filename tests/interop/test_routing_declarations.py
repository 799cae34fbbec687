"""Celery and celeriac declare the same queues, exchanges and bindings, and route alike.

Each scenario of ``routing_scenarios.py`` runs once with the real Celery and once with
celeriac, each on a fresh RabbitMQ vhost; the vhosts' bindings, queues (depth, durability,
auto-delete) and exchanges, as ``rabbitmqctl`` lists them, must be equal. Seed 002's
configuration is the case where a task sent by exchange and routing key used to land in
two queues and run twice.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import amqp_vhost, amqp_vhost_url, rabbitmqctl

pytestmark = [pytest.mark.timeout(240)]

SCRIPT = Path(__file__).with_name("routing_scenarios.py")
SCENARIOS = ["seed002", "defaults_only", "bare_queues", "broadcast", "worker_direct"]


def _state(vhost: str) -> list[str]:
    """Bindings, queues and exchanges of ``vhost``; per-consumer queue names normalised."""
    lines = [
        *rabbitmqctl(
            "list_bindings", "-p", vhost, "-q", "source_name", "destination_name", "routing_key"
        ).splitlines(),
        *rabbitmqctl(
            "list_queues", "-p", vhost, "-q", "name", "messages", "durable", "auto_delete"
        ).splitlines(),
        *rabbitmqctl(
            "list_exchanges", "-p", vhost, "-q", "name", "type", "durable", "auto_delete"
        ).splitlines(),
    ]
    return sorted(re.sub(r"bcast\.[0-9a-f-]+", "bcast.X", line) for line in lines)


def _run(lib: str, scenario: str) -> list[str]:
    with amqp_vhost() as vhost:
        subprocess.run(
            [sys.executable, str(SCRIPT), lib, amqp_vhost_url(vhost), scenario],
            check=True,
            timeout=90,
        )
        return _state(vhost)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_declarations_and_deliveries_as_celery(scenario: str) -> None:
    pytest.importorskip("celery")
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is needed to list bindings")
    expected = _run("celery", scenario)
    assert any("\t" in line for line in expected)  # something was declared
    assert _run("celeriac", scenario) == expected


def test_seed002_exchange_call_lands_in_one_queue() -> None:
    """The exchange-routed call of seed 002 reaches `default` only: celery 1, default 2."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is needed to list queues")
    state = _run("celeriac", "seed002")
    assert "celery\t1\ttrue\tfalse" in state
    assert "default\t2\ttrue\tfalse" in state
    assert "high_priority\t1\ttrue\tfalse" in state
