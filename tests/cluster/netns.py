"""Worker hosts in network namespaces, joined to this host by veth pairs, with a Redis of
their own on the host side.

Host ``N`` (1-based) is the namespace ``r25h<N><suffix>``; its link is the veth pair
``r25v<N><suffix>`` (host end, ``10.251.N.1/30``) and ``eth0`` inside (``10.251.N.2/30``).
The Redis server (port 16390) listens on every host end and on 127.0.0.1, so the test
process publishes through loopback and each namespace reaches it over its own link.
Everything stays inside this machine. :meth:`NetnsTopology.cut` takes the host end of a
link down: packets are dropped silently, no RST, so both sides see a real partition.

Leftovers of a crashed run (namespaces ``r25h*``, veth ends ``r25v*``, the Redis of the pid
file when that pid is still a redis-server on this port) are removed before a topology
starts. So one topology runs at a time on a machine (the tests' module or the scaling
benchmark): they share the port and the names' prefix.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PORT", "STATE_DIR", "NetnsTopology", "available"]

PORT = 16390
STATE_DIR = Path("/tmp/r25-netns")
"""Holds the pid file of the Redis server, so a later run can clean up after a crash."""
PREFIX = "r25h"
VETH = "r25v"


def available() -> str | None:
    """Why namespaces cannot be built here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for binary in ("ip", "redis-server"):
        if shutil.which(binary) is None:
            return f"{binary} is not installed"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=10)


def clean_leftovers() -> None:
    """Delete namespaces and veth ends of an earlier run and stop its Redis."""
    listing = _ip("netns", "list", check=False).stdout.split("\n")
    for line in listing:
        name = line.split(" ")[0]
        if name.startswith(PREFIX):
            _ip("netns", "delete", name, check=False)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(VETH):
            _ip("link", "delete", name, check=False)
    pidfile = STATE_DIR / "redis.pid"
    if pidfile.exists():
        pid = pidfile.read_text().strip()
        if pid.isdigit() and _is_our_redis(int(pid)):
            os.kill(int(pid), signal.SIGKILL)
        pidfile.unlink()


def _is_our_redis(pid: int) -> bool:
    """Whether ``pid`` is still the redis-server on :data:`PORT` (not a reused pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # redis-server retitles itself "redis-server <bind>:<port>"
    return argv[0].startswith(b"redis-server") and argv[0].endswith(f":{PORT}".encode())


class NetnsTopology:
    """``hosts`` namespaces, their links and the Redis server; :meth:`stop` undoes all."""

    def __init__(self, hosts: int, workdir: Path) -> None:
        self.hosts = hosts
        self.workdir = workdir
        self.suffix = uuid.uuid4().hex[:4]
        self.redis: subprocess.Popen[bytes] | None = None
        self.made: list[int] = []

    def namespace(self, n: int) -> str:
        return f"{PREFIX}{n}{self.suffix}"

    def veth(self, n: int) -> str:
        return f"{VETH}{n}{self.suffix}"

    @staticmethod
    def host_address(n: int) -> str:
        return f"10.251.{n}.1"

    def url(self, n: int, db: int = 0) -> str:
        """The Redis URL as namespace ``n`` reaches it (``n = 0``: from this host, loopback)."""
        host = "127.0.0.1" if n == 0 else self.host_address(n)
        return f"redis://{host}:{PORT}/{db}"

    def start(self) -> NetnsTopology:
        clean_leftovers()
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        try:
            for n in range(1, self.hosts + 1):
                self._link(n)
            self._start_redis()
        except BaseException:
            self.stop()
            raise
        return self

    def _link(self, n: int) -> None:
        ns, veth = self.namespace(n), self.veth(n)
        _ip("netns", "add", ns)
        self.made.append(n)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("addr", "add", f"{self.host_address(n)}/30", "dev", veth)
        _ip("link", "set", veth, "up")
        _ip("-n", ns, "addr", "add", f"10.251.{n}.2/30", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def _start_redis(self) -> None:
        binds = " ".join(["127.0.0.1", *(self.host_address(n) for n in self.made)])
        log = (self.workdir / "redis.log").open("wb")
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(PORT), "--bind", binds, "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        (STATE_DIR / "redis.pid").write_text(str(self.redis.pid))
        deadline = time.monotonic() + 20
        while b"Ready to accept connections" not in (self.workdir / "redis.log").read_bytes():
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start: " + self._redis_log())
            time.sleep(0.05)

    def _redis_log(self) -> str:
        return (self.workdir / "redis.log").read_text(errors="replace")[-2000:]

    def command(self, n: int, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside namespace ``n``."""
        return ["ip", "netns", "exec", self.namespace(n), *argv]

    def celeriac(self, n: int, args: Sequence[str]) -> list[str]:
        """``python -m celeriac *args`` inside namespace ``n``."""
        return self.command(n, [sys.executable, "-m", "celeriac", *args])

    def cut(self, n: int) -> None:
        """Partition host ``n``: its link goes down, in-flight packets are dropped."""
        _ip("link", "set", self.veth(n), "down")

    def heal(self, n: int) -> None:
        """Bring host ``n``'s link back (its address and route come back with it)."""
        _ip("link", "set", self.veth(n), "up")

    def stop(self) -> None:
        """Kill Redis, delete the namespaces (their veth pairs go with them)."""
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait(timeout=10)
            (STATE_DIR / "redis.pid").unlink(missing_ok=True)
            self.redis = None
        for n in self.made:
            _ip("netns", "delete", self.namespace(n), check=False)
            _ip("link", "delete", self.veth(n), check=False)
        self.made = []
