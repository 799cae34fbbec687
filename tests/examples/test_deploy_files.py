"""The deploy files, checked statically (no Docker engine here): compose, Dockerfile, scripts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import unavailable

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        unavailable(f"{name} is not installed (.ci/run installs it)")
    return found


def test_compose_file_is_valid_and_lays_out_seed_004() -> None:
    compose = tool("docker-compose")
    done = subprocess.run(
        [
            compose,
            "-f",
            str(DEPLOY / "docker-compose.yml"),
            "--profile",
            "flower",
            "config",
            "--services",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    services = set(done.stdout.split())
    assert services == {
        "rabbitmq",
        "postgres",
        "web",
        "worker1",
        "worker2",
        "beat",
        "nginx",
        "dashboard",
        "flower",
    }


def test_compose_waits_for_healthy_services() -> None:
    compose = tool("docker-compose")
    done = subprocess.run(
        [compose, "-f", str(DEPLOY / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rendered = done.stdout
    assert rendered.count("condition: service_healthy") >= 5  # web, workers, beat, nginx
    assert "rabbit_user" in rendered  # the seed's own RabbitMQ user


def test_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint")
    done = subprocess.run(
        [hadolint, "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("script", ["run-local.sh", "stress.sh"])
def test_scripts_parse_and_refuse_unknown_arguments(script: str) -> None:
    path = DEPLOY / script
    assert subprocess.run(["bash", "-n", str(path)], timeout=10).returncode == 0
    arg = "nonsense" if script == "run-local.sh" else "-x"
    done = subprocess.run([str(path), arg], capture_output=True, text=True, timeout=10)
    assert done.returncode == 2 and "usage" in done.stderr
