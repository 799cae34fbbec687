"""What every fault test uses: throwaway servers, worker processes, the record of executions.

A fault test starts its own broker process (never the shared one), worker processes of
:mod:`tests.faults.app`, and a producer; it breaks something; then it checks the record:
every task published without error ran, none ran twice unless it was running on a worker
that died or froze, and every producer call either succeeded or raised the documented
:class:`~celeriac.exceptions.OperationalError`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from celeriac.exceptions import OperationalError
from tests.faults import app as fault_app
from tests.services import unavailable

__all__ = [
    "Producer",
    "RabbitVhost",
    "Record",
    "RedisServer",
    "TcpProxy",
    "Workers",
    "free_port",
    "module_redis",
    "point_at",
    "wait_until",
]

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    """A TCP port on loopback nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` every 50 ms; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


class RedisServer:
    """A redis-server of the test's own on a free loopback port, killed and restarted at will.

    ``aof=True`` writes every command to an append-only file with fsync always (a kill
    loses nothing); ``aof=False`` keeps nothing, so a restart comes back empty.
    """

    def __init__(self, workdir: Path, *, aof: bool = True) -> None:
        if REDIS_SERVER is None:
            unavailable("redis-server is not installed")
        self.port = free_port()
        self.workdir = workdir
        self.aof = aof
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += ["--dir", str(self.workdir)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._pings, 10, "redis-server to start")
        return self

    def _pings(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown save, connections cut at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Workers:
    """Worker processes of :mod:`tests.faults.app`, each logging to its own file."""

    def __init__(self, workdir: Path, env: dict[str, str], *args: str) -> None:
        self.workdir = workdir
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        self.args = args
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, count: int = 1) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(count):
            index = len(self.procs)
            log = (self.workdir / f"worker-{index}.log").open("wb")
            command = [sys.executable, "-m", "celeriac", "-A", "tests.faults.app", "worker"]
            command += ["-l", "info", "-n", f"w{index}@%h", *self.args]
            proc = subprocess.Popen(  # its own process group: freeze it with its pool
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
            log.close()
            self.procs.append(proc)
            started.append(proc)
        return started

    def log(self, index: int) -> str:
        return (self.workdir / f"worker-{index}.log").read_text(errors="replace")

    def logged_at(self, index: int, pattern: str) -> list[float]:
        """When worker ``index`` logged lines matching ``pattern`` (epoch seconds, from the
        log's local-time stamps)."""
        found = []
        for line in self.log(index).splitlines():
            stamp = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}):", line)
            if stamp and re.search(pattern, line):
                local = time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")
                found.append(time.mktime(local) + int(stamp.group(2)) / 1000)
        return found

    def logs(self) -> str:
        return "\n".join(self.log(i) for i in range(len(self.procs)))

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def signal(self, proc: subprocess.Popen[bytes], signum: int) -> None:
        """Send ``signum`` to a worker and every process under it (its pool processes, or
        the slots of the default shape, which run in process groups of their own), the
        worker first, so that a stopped supervisor replaces nothing meanwhile."""
        for pid in sorted(self.pids(proc), key=lambda pid: pid != proc.pid):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def pids(self, proc: subprocess.Popen[bytes]) -> set[int]:
        """The worker's pid and those of every process under it."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found = {proc.pid}
        grew = True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in found} - found
            found |= more
            grew = bool(more)
        return found

    def stop(self, timeout: float = 20) -> None:
        """Warm shutdown of every live worker (SIGTERM), then SIGKILL what is left."""
        for proc in self.alive():
            self.signal(proc, signal.SIGCONT)
            proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.signal(proc, signal.SIGKILL)
                proc.wait()


@dataclass
class Record:
    """The executions written by :func:`tests.faults.app.record`."""

    path: Path

    def entries(self) -> list[tuple[str, int, int, float]]:
        """(``start``/``end``, task number, pid, wall-clock time) in the order written."""
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            kind, n, pid, when = line.split()
            found.append((kind, int(n), int(pid), float(when)))
        return found

    def lines(self) -> list[tuple[str, int, int]]:
        return [(kind, n, pid) for kind, n, pid, _ in self.entries()]

    def ended(self) -> Counter[int]:
        """How many executions of each task finished."""
        return Counter(n for kind, n, _ in self.lines() if kind == "end")

    def started(self) -> Counter[int]:
        return Counter(n for kind, n, _ in self.lines() if kind == "start")

    def running_at(self, pids: set[int], at: float, settle: float, lag: float = 0.0) -> set[int]:
        """Tasks whose execution by one of ``pids`` had started by ``at`` (or within ``lag``
        after it: handed to a pool process before ``at``) and had not ended, or had ended
        less than ``settle`` seconds before (its result and ack in flight)."""
        starts: dict[tuple[int, int], float] = {}
        found = set()
        for kind, n, pid, when in self.entries():
            if pid not in pids:
                continue
            if kind == "start":
                starts[(n, pid)] = when
            elif starts.pop((n, pid), at + lag + 1) <= at + lag and at <= when + settle:
                found.add(n)
        found |= {n for (n, _), began in starts.items() if began <= at + lag}  # never ended
        return found

    def interrupted(self, pids: set[int]) -> set[int]:
        """Tasks whose execution by one of ``pids`` started and never ended."""
        open_runs: Counter[tuple[int, int]] = Counter()
        for kind, n, pid in self.lines():
            if pid in pids:
                open_runs[(n, pid)] += 1 if kind == "start" else -1
        return {n for (n, _), left in open_runs.items() if left > 0}

    def unsettled(self, pids: set[int], died: float, window: float) -> set[int]:
        """Tasks a worker of ``pids`` dying at ``died`` may not have settled: still running,
        or finished less than ``window`` seconds before (its result and ack in flight)."""
        found = self.interrupted(pids)
        for kind, n, pid, when in self.entries():
            if kind == "end" and pid in pids and died - window <= when <= died + 0.5:
                found.add(n)
        return found


@dataclass
class Producer:
    """Publishes ``record`` tasks from a thread, one call after another, until stopped.

    Every call is noted: ``sent`` (the numbers published without error) and ``refused``
    (calls that raised OperationalError, the documented error). Any other exception is
    kept in ``unexpected`` and fails the test.
    """

    send: Callable[[int], Any]
    pause: float = 0.005
    sent: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    unexpected: list[BaseException] = field(default_factory=list)
    results: dict[int, Any] = field(default_factory=dict)
    resent: set[int] = field(default_factory=set)
    """Calls that sent their message again after its reply was lost (it may be queued twice)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _next: int = 0
    _watch: _Resends = field(default_factory=lambda: _Resends())

    @property
    def calls(self) -> int:
        """Calls made so far."""
        return self._next

    def run(self, count: int | None = None) -> None:
        while not self._stop.is_set() and (count is None or self._next < count):
            n = self._next
            self._next += 1
            self._watch.seen = False
            try:
                self.results[n] = self.send(n)
            except OperationalError:
                self.refused.append(n)
            except BaseException as exc:  # the test fails on anything else
                self.unexpected.append(exc)
            else:
                self.sent.append(n)
            if self._watch.seen:
                self.resent.add(n)
            time.sleep(self.pause)

    @contextmanager
    def running(self, count: int | None = None) -> Iterator[Producer]:
        thread = threading.Thread(target=self.run, args=(count,), daemon=True)
        logger = logging.getLogger("celeriac")
        logger.addHandler(self._watch)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(120)
            logger.removeHandler(self._watch)
            assert not thread.is_alive(), "producer call hung"


class _Resends(logging.Handler):
    """Notices the warning of a publish sent again after a lost reply (not a refused connect:
    nothing was sent then). One producer thread makes one call at a time, so a warning
    logged during a call (by any thread) is about that call."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = False

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "publish" in text and "connecting to" not in text:
            self.seen = True


RABBITMQCTL = shutil.which("rabbitmqctl")


class RabbitVhost:
    """A RabbitMQ vhost of the test's own; closes its connections as the server would."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 5672) -> None:
        if RABBITMQCTL is None:
            unavailable("rabbitmqctl is not installed")
        self.name = name
        self.url = f"amqp://guest:guest@{host}:{port}/{name}"
        self._ctl("add_vhost", name, check=False)
        self._ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")

    def _ctl(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [str(RABBITMQCTL), "-q", *args], capture_output=True, text=True, timeout=60
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def purge(self, queue: str) -> None:
        self._ctl("purge_queue", "-p", self.name, queue, check=False)

    def connections(self) -> list[str]:
        """The connection processes (Erlang pids) of the open connections to this vhost."""
        pids = []
        for line in self._ctl("list_connections", "pid", "vhost").splitlines():
            pid, _, vhost = line.rpartition("\t")
            if vhost == self.name and pid:
                pids.append(pid)
        return pids

    def close_connections(self) -> int:
        """Close every connection to this vhost (only ours live there), in one command so
        that they close together; how many there were just before."""
        count = len(self.connections())
        self._ctl("close_all_connections", "--vhost", self.name, "fault test: closed by the server")
        return count


class TcpProxy:
    """A loopback TCP proxy in front of a shared server (RabbitMQ), to stop and start it
    as its clients see a restart: :meth:`stop` cuts every connection and refuses new ones
    until :meth:`start`. Only the test's own clients go through it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every proxied connection (both sides)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by stop()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _close(sock)
                with self._lock:
                    self._open.discard(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def module_redis(aof: bool) -> Any:
    """A module-scoped fixture: a :class:`RedisServer` of the module's own, started."""

    @pytest.fixture(scope="module")
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
        srv = RedisServer(tmp_path_factory.mktemp("redis"), aof=aof).start()
        yield srv
        srv.kill()

    return server


def point_at(broker: str, backend: str | None, record: Record, **extra: str) -> dict[str, str]:
    """Aim this process's fault app at ``broker``/``backend``; the environment that aims the
    worker processes there too (``extra``: more ``FAULT_*`` variables, e.g. ``FAULT_LEASE``)."""
    fault_app.app.conf.broker_url = broker
    fault_app.app.conf.result_backend = backend
    env = {"FAULT_BROKER": broker, "FAULT_RECORD": str(record.path)}
    if backend:
        env["FAULT_BACKEND"] = backend
    return {**env, **{f"FAULT_{key.upper()}": value for key, value in extra.items()}}
