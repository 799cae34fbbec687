"""A 3-node RabbitMQ cluster on loopback, started by the tests.

Nodes ``r25a@localhost``, ``r25b@localhost``, ``r25c@localhost``: AMQP on 5681-5683,
Erlang distribution on 25681-25683, no plugins, data and logs in a temporary directory, and an
Erlang cookie of their own (``HOME`` points at the directory, so ``rabbitmqctl`` finds it
too). The three nodes boot in parallel; ``b`` and ``c`` then join ``a`` with
``rabbitmqctl join_cluster``. The shared ``rabbit@localhost`` node on 5672 is never touched:
every command names its node with ``-n``. A missing ``rabbitmq-server`` skips the test (fails
it with ``CI=true``, :func:`tests.services.unavailable`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.services import unavailable

__all__ = ["AMQP_PORTS", "NODES", "RabbitCluster3"]

NODES = ("r25a@localhost", "r25b@localhost", "r25c@localhost")
AMQP_PORTS = (5681, 5682, 5683)
DIST_PORTS = (25681, 25682, 25683)
_BIN = Path("/usr/lib/rabbitmq/bin")


def _tool(name: str) -> str:
    """The RabbitMQ script itself (the /usr/sbin wrappers switch to the rabbitmq user)."""
    direct = _BIN / name
    return str(direct) if direct.exists() else (shutil.which(name) or name)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class RabbitCluster3:
    """Start, inspect and fault the three nodes; :meth:`stop` stops whatever still runs."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("rabbitmq-server") is None and not (_BIN / "rabbitmq-server").exists():
            unavailable("rabbitmq-server is not installed (needed for the RabbitMQ cluster tests)")
        busy = [port for port in (*AMQP_PORTS, *DIST_PORTS) if _listening(port)]
        if busy:
            raise RuntimeError(f"ports {busy} already in use: a previous cluster still running?")
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        cookie = workdir / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)

    def url(self, index: int) -> str:
        """The AMQP URL of node ``index`` (0-2)."""
        return f"amqp://guest:guest@127.0.0.1:{AMQP_PORTS[index]}//"

    def urls(self, indexes: tuple[int, ...] = (0, 1, 2)) -> str:
        """A ``;``-separated failover list of those nodes (Celery's form)."""
        return ";".join(self.url(i) for i in indexes)

    def _env(self, index: int) -> dict[str, str]:
        base = self.workdir / NODES[index].split("@")[0]
        (base / "log").mkdir(parents=True, exist_ok=True)
        conf = base / "rabbitmq.conf"
        conf.write_text(
            f"listeners.tcp.1 = 127.0.0.1:{AMQP_PORTS[index]}\n"
            "disk_free_limit.absolute = 50MB\n"
            "loopback_users = none\n"
        )
        plugins = base / "enabled_plugins"
        plugins.write_text("[].\n")
        env_file = base / "rabbitmq-env.conf"  # not the system one, which names rabbit@
        env_file.write_text("")
        return {
            **os.environ,
            "HOME": str(self.workdir),
            "RABBITMQ_NODENAME": NODES[index],
            "RABBITMQ_NODE_PORT": str(AMQP_PORTS[index]),
            "RABBITMQ_DIST_PORT": str(DIST_PORTS[index]),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(conf),
            "RABBITMQ_CONF_ENV_FILE": str(env_file),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_PID_FILE": str(base / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def ctl(self, index: int, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl -n <node> *args``; raise CalledProcessError on failure."""
        done = subprocess.run(
            [_tool("rabbitmqctl"), "-n", NODES[index], *args],
            env=self._env(index), capture_output=True, text=True, timeout=timeout, check=True,
        )  # fmt: skip
        return done.stdout

    def start(self) -> RabbitCluster3:
        """Boot the three nodes in parallel and cluster them (b and c join a)."""
        for index in range(3):
            self.start_node(index)
        for index in range(3):
            self.await_node(index)
        for index in (1, 2):
            self.ctl(index, "stop_app")
            self.ctl(index, "join_cluster", NODES[0])
            self.ctl(index, "start_app")
        return self

    def start_node(self, index: int) -> None:
        """Start node ``index`` (its data dir is kept, so a restarted node rejoins)."""
        log = (self.workdir / f"{NODES[index].split('@')[0]}.out").open("ab")
        self.procs[NODES[index]] = subprocess.Popen(
            [_tool("rabbitmq-server")], env=self._env(index), stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def await_node(self, index: int, timeout: float = 90) -> None:
        """Wait until node ``index`` runs its app and listens for AMQP."""
        deadline = time.monotonic() + timeout
        while True:  # await_startup fails at once while the node is not registered yet
            try:
                self.ctl(index, "await_startup", "--timeout", "20", timeout=30)
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                continue
            if _listening(AMQP_PORTS[index]):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{NODES[index]} does not listen on {AMQP_PORTS[index]}")
            time.sleep(0.2)

    def running_nodes(self, index: int) -> list[str]:
        """The nodes that node ``index`` sees running in its cluster."""
        out = self.ctl(index, "cluster_status", "--formatter", "json")
        return list(json.loads(out).get("running_nodes", []))

    def beam_pid(self, index: int) -> int:
        """The pid of node ``index``'s Erlang VM."""
        return int((self.workdir / NODES[index].split("@")[0] / "pid").read_text().strip())

    def kill(self, index: int) -> None:
        """SIGKILL node ``index``'s Erlang VM (a crash: no clean shutdown)."""
        os.kill(self.beam_pid(index), signal.SIGKILL)
        proc = self.procs.get(NODES[index])
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop every node at once (``rabbitmqctl stop`` side by side: one after the other,
        each waiting for its peers, took long enough under load to exceed a test's timeout),
        killing those that do not stop within 20 s."""
        stopping = []
        for index, node in enumerate(NODES):
            proc = self.procs.get(node)
            if proc is not None and proc.poll() is None:
                stopping.append(subprocess.Popen(
                    [_tool("rabbitmqctl"), "-n", node, "stop"], env=self._env(index),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))  # fmt: skip
        deadline = time.monotonic() + 20
        for proc in stopping:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()
