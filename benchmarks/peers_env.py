"""The peers' venv (benchmarks/venvs/peers, git-ignored): created and filled by the harness.

The peers never share the project's venv: their pins (kombu, redis-py) must not leak into
celeriac's environment. Versions are pinned so runs compare like with like; changing the
list below reinstalls on the next run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["PEER_REQUIREMENTS", "ensure_peers_venv", "installed_versions"]

PEER_REQUIREMENTS = (
    "celery[redis]==5.7.0",
    "dramatiq[redis,rabbitmq]==2.2.1",
    "huey==3.5.4",
    "taskiq==0.13.0",
    "taskiq-redis==1.2.4",
    "hiredis",
)
_MARKER = ".bench-requirements"


def ensure_peers_venv(path: Path, *, install: bool = True) -> Path:
    """The peers' venv at ``path``, created and pip-installed from PyPI when needed.

    Returns its bin directory. With ``install=False`` a missing venv is an error.
    """
    marker = path / _MARKER
    wanted = "\n".join(PEER_REQUIREMENTS)
    python = path / "bin" / "python"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return path / "bin"
    if not install:
        raise RuntimeError(f"peers' venv missing or outdated at {path}; run without --no-install")
    print(f"installing peers into {path} (pip, from PyPI) ...", file=sys.stderr, flush=True)
    if not python.exists():
        venv.EnvBuilder(with_pip=True, clear=False).create(path)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *PEER_REQUIREMENTS], check=True)
    marker.write_text(wanted)
    return path / "bin"


def installed_versions(python: Path, packages: list[str]) -> dict[str, str]:
    """``{package: version}`` as installed for the interpreter ``python``."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [str(python), "-c", code, *packages], check=True, capture_output=True, text=True
    )
    versions: dict[str, str] = json.loads(done.stdout)
    return versions
