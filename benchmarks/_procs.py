"""Processes for the runner: servers, load clients, CPU pinning, CPU time and RSS from /proc.

Every process started here is registered in a :class:`Processes` set, and the runner kills
whatever is still running in a ``finally`` block, also on errors and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PORT_ANY = r"127\.0\.0\.1:(\d+)"


class Unavailable(Exception):
    """A stack could not start (missing module or name, crash at start-up, no port line).

    ``lasting`` is true when the server exited by itself (an import error, a bad option):
    trying again will not help.  A server that merely printed no port line in time may be slow.
    """

    def __init__(self, reason: str, *, lasting: bool) -> None:
        super().__init__(reason)
        self.lasting = lasting


class ClientError(Exception):
    """The load client failed or did not finish in time."""


# ---------------------------------------------------------------- /proc readings


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tcp_connections(pids: Sequence[int], port: int) -> list[int]:
    """How many established TCP connections to local ``port`` each process holds (its
    socket descriptors matched with /proc/net/tcp by inode; IPv4)."""
    inodes: set[str] = set()
    with open("/proc/net/tcp") as f:
        next(f)  # the header
        for line in f:
            fields = line.split()
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if fields[3] == "01" and int(fields[1].rpartition(":")[2], 16) == port:
                inodes.add(fields[9])
    counts = []
    for pid in pids:
        held = 0
        with suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        held += 1
        counts.append(held)
    return counts


def rss_kib(pid: int) -> int:
    """Resident set size in KiB, from VmRSS in /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


# ---------------------------------------------------------------- pinning


@dataclass(frozen=True)
class Pinning:
    """Server on one core, load client (and this runner) on another, when there are two."""

    server_cpu: int | None
    client_cpu: int | None
    note: str

    @classmethod
    def choose(cls, enabled: bool = True) -> Pinning:
        if not enabled:
            return cls(None, None, "not pinned (--no-pin)")
        if not hasattr(os, "sched_setaffinity"):
            return cls(None, None, "not pinned (no os.sched_setaffinity here)")
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(None, None, f"not pinned (only CPU {cpus} available)")
        server, client = cpus[0], cpus[1]
        try:
            os.sched_setaffinity(0, {client})
        except OSError as exc:
            return cls(None, None, f"not pinned ({exc})")
        return cls(server, client, f"pinned: server on CPU {server}, client on CPU {client}")

    def pin(self, pid: int, role: str) -> None:
        cpu = self.server_cpu if role == "server" else self.client_cpu
        if cpu is None:
            return
        with suppress(OSError):  # the process already exited; the caller finds out on its own
            os.sched_setaffinity(pid, {cpu})


# ---------------------------------------------------------------- process bookkeeping


class Processes:
    """Every child started by the runner, so that all of them can be killed at the end."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen[Any]] = set()

    def start(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(list(argv), **kwargs)
        self._procs.add(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], grace: float = 2.0) -> None:
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        finally:
            self._procs.discard(proc)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def stop_all(self) -> None:
        for proc in list(self._procs):
            with suppress(Exception):  # keep killing the others
                self.stop(proc, grace=1.0)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


# ---------------------------------------------------------------- servers


def server_env() -> dict[str, str]:
    """The environment every server runs in (unbuffered, no bytecode written)."""
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")


class Server:
    """One server process: started, its port read from its output, pinned, measured, stopped."""

    def __init__(
        self,
        procs: Processes,
        argv: Sequence[str],
        *,
        port_pattern: str,
        log: Path,
        cwd: Path,
        pinning: Pinning,
        pids_pattern: str = "",
    ) -> None:
        self.procs, self.argv, self.port_pattern = procs, list(argv), port_pattern
        self.log, self.cwd, self.pinning = log, cwd, pinning
        self.pids_pattern = pids_pattern
        self.proc: subprocess.Popen[Any] | None = None
        self.port = 0
        #: The processes that do the serving, whose CPU time is measured: the one started,
        #: or (with ``pids_pattern``) the workers its output names.
        self.workers: list[int] = []

    def start(self, timeout: float = 15.0) -> int:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = server_env()
        with self.log.open("wb") as out:
            self.proc = self.procs.start(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
            )
        self.pinning.pin(self.proc.pid, "server")
        pattern = re.compile(self.port_pattern)
        pids = re.compile(self.pids_pattern) if self.pids_pattern else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if not self.port:
                for match in pattern.finditer(text):
                    if int(match.group(1)) != 0:
                        self.port = int(match.group(1))
                        break
            if self.port and pids is None:
                self.workers = [self.proc.pid]
            elif self.port and pids is not None and (found := pids.search(text)):
                # a supervisor: its workers serve (they inherit its pinning; pinned again
                # here in case one started before it was pinned)
                self.workers = [int(pid) for pid in re.findall(r"\d+", found.group(1))]
                for pid in self.workers:
                    self.pinning.pin(pid, "server")
            if self.workers:
                time.sleep(0.05)  # let it reach its accept loop
                return self.port
            if self.proc.poll() is not None:
                tail = _tail(self.log)
                reason = f"exited with {self.proc.returncode}: {tail or 'no output'}"
                raise Unavailable(reason, lasting=True)
            time.sleep(0.02)
        missing = self.pids_pattern if self.port else self.port_pattern
        raise Unavailable(f"no '{missing}' line within {timeout:.0f} s", lasting=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        return all(os.path.exists(f"/proc/{pid}") for pid in self.workers)

    def cpu(self) -> float:
        """CPU seconds of the serving processes (all workers of a supervisor)."""
        return sum(self.cpu_each())

    def cpu_each(self) -> list[float]:
        """CPU seconds of each serving process, in the order of :attr:`workers`."""
        return [cpu_seconds(pid) for pid in self.workers or [self.pid]]

    def rss(self) -> int:
        return rss_kib(self.pid)

    def settle(self, seconds: float = 0.5) -> None:
        """Give a server that is going down the time to exit (after a failed run)."""
        if self.proc is not None:
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(seconds)

    def why_dead(self) -> str:
        assert self.proc is not None
        if self.proc.poll() is None:  # the supervisor runs, a worker is gone
            gone = [pid for pid in self.workers if not os.path.exists(f"/proc/{pid}")]
            return f"worker pid {', '.join(map(str, gone))} exited: {_tail(self.log)}"
        return f"server exited with {self.proc.returncode}: {_tail(self.log)}"

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.procs.stop(self.proc)
        finally:
            # A supervisor killed before its workers ended leaves them running (they have
            # a session of their own): end them by pid, if they are still the workers.
            workers = [pid for pid in self.workers if pid != self.proc.pid]
            for sig in (signal.SIGTERM, signal.SIGKILL):
                left = [pid for pid in workers if _is_worker(pid)]
                for pid in left:
                    with suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, sig)
                deadline = time.monotonic() + 3.0
                while left and time.monotonic() < deadline:
                    time.sleep(0.05)
                    left = [pid for pid in left if _is_worker(pid)]
                if not left:
                    break


def _is_worker(pid: int) -> bool:
    """Whether ``pid`` is a running triosock ``--workers`` worker (not a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return b"triosock._worker" in cmdline and state != "Z"


# ---------------------------------------------------------------- redis-server

REDIS_READY = "Ready to accept connections"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (taken by whoever binds it next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer(Server):
    """A ``redis-server`` on a free loopback port, nothing written to disk, in the
    foreground; started when its ready line is out, stopped (killed at worst) like every
    server.  Its ``INFO commandstats`` is read over a plain socket."""

    def __init__(
        self, procs: Processes, binary: str, *, log: Path, cwd: Path, pinning: Pinning
    ) -> None:
        super().__init__(procs, [binary], port_pattern="", log=log, cwd=cwd, pinning=pinning)
        self.binary = binary

    def start(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        for _ in range(5):  # another process may take the free port before redis binds it
            port = free_port()
            self.argv = [self.binary, "--port", str(port), "--bind", "127.0.0.1"]
            self.argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with self.log.open("wb") as out:
                self.proc = self.procs.start(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                )
            self.pinning.pin(self.proc.pid, "server")
            while time.monotonic() < deadline:
                if REDIS_READY in self.log.read_text(errors="replace"):
                    self.port = port
                    self.workers = [self.proc.pid]
                    return port
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
            else:
                raise Unavailable(f"no '{REDIS_READY}' within {timeout:.0f} s", lasting=False)
            tail = _tail(self.log)
            self.procs.stop(self.proc)
            if "already in use" not in tail:
                raise Unavailable(f"redis-server exited: {tail or 'no output'}", lasting=True)
        raise Unavailable("redis-server found no free port in 5 tries", lasting=False)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def info(self, *sections: str, timeout: float = 5.0) -> dict[str, str]:
        """The ``key:value`` lines of ``INFO section`` for each section (one ``INFO``
        command per section, pipelined: Redis before 7 takes one section per ``INFO``)."""
        request = b"".join(
            b"*2\r\n$4\r\nINFO\r\n$%d\r\n%s\r\n" % (len(name), name.encode()) for name in sections
        )
        fields: dict[str, str] = {}
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(request)
            data = b""
            for _ in sections:
                while b"\r\n" not in data:
                    data += _receive(sock)
                head, _, data = data.partition(b"\r\n")
                if not head.startswith(b"$"):
                    raise OSError(f"redis answered INFO with {head[:80]!r}")
                size = int(head[1:])
                while len(data) < size + 2:
                    data += _receive(sock)
                text, data = data[:size].decode("utf-8", "replace"), data[size + 2 :]
                for line in text.splitlines():
                    key, sep, value = line.partition(":")
                    if sep and not key.startswith("#"):
                        fields[key] = value
        return fields

    def stats(self) -> tuple[dict[str, int], float]:
        """Calls per command since start (``{"publish": N, ...}``, from ``INFO
        commandstats``; the two ``INFO`` of this call are in the next one's count) and
        Redis's CPU seconds (``INFO cpu``: getrusage, finer than /proc's clock ticks)."""
        fields = self.info("commandstats", "cpu")
        calls: dict[str, int] = {}
        for key, value in fields.items():
            # cmdstat_publish:calls=12,usec=34,usec_per_call=2.83,rejected_calls=0,...
            if key.startswith("cmdstat_"):
                for field in value.split(","):
                    name, _, number = field.partition("=")
                    if name == "calls":
                        calls[key.removeprefix("cmdstat_")] = int(number)
        cpu = float(fields.get("used_cpu_sys", 0)) + float(fields.get("used_cpu_user", 0))
        return calls, cpu


def _receive(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise OSError("redis closed the connection")
    return chunk


# ---------------------------------------------------------------- load clients


def _reader(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass
    lines.put(None)


class _Client:
    """A running load client whose JSON lines arrive through a reader thread."""

    def __init__(self, procs: Processes, argv: Sequence[str], pinning: Pinning) -> None:
        self.procs = procs
        self.proc = procs.start(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        pinning.pin(self.proc.pid, "client")
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=_reader, args=(self.proc.stdout, self.lines), daemon=True).start()

    def event(self, deadline: float) -> dict[str, Any]:
        """The next JSON event; ClientError on error, exit or deadline."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientError("load client timed out")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                raise ClientError("load client timed out") from None
            if line is None:
                self.proc.wait(5)
                err = self.proc.stderr.read().strip() if self.proc.stderr else ""
                raise ClientError(f"load client exited with {self.proc.returncode}: {err}")
            line = line.strip()
            if not line.startswith("{"):
                continue
            event: dict[str, Any] = json.loads(line)
            if event.get("event") == "error":
                raise ClientError(str(event.get("error")))
            return event

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with suppress(OSError):
                self.proc.stdin.close()

    def stop(self) -> None:
        self.close_stdin()
        self.procs.stop(self.proc)


class LoadClient:
    """The C client compiled at run time, or the Python fallback when there is no compiler."""

    def __init__(self, procs: Processes, pinning: Pinning, argv: list[str], kind: str) -> None:
        self.procs, self.pinning, self.argv, self.kind = procs, pinning, argv, kind

    @classmethod
    def build(
        cls, procs: Processes, pinning: Pinning, build_dir: Path, choice: str = "auto"
    ) -> LoadClient:
        here = Path(__file__).resolve().parent
        fallback = [sys.executable, str(here / "pyloadgen.py")]
        if choice == "python":
            return cls(procs, pinning, fallback, "python (forced with --client python)")
        cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if cc is None:
            if choice == "c":
                raise SystemExit("--client c: no C compiler (cc) found")
            return cls(procs, pinning, fallback, "python fallback (no cc found)")
        build_dir.mkdir(parents=True, exist_ok=True)
        exe = build_dir / "loadgen"
        cmd = [cc, "-O2", "-o", str(exe), str(here / "loadgen.c")]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            if choice == "c":
                raise SystemExit(f"compiling loadgen.c failed:\n{done.stderr}")
            reason = done.stderr.strip().splitlines()[-1:] or ["?"]
            return cls(procs, pinning, fallback, f"python fallback (cc failed: {reason[0]})")
        return cls(procs, pinning, [str(exe)], f"C epoll client ({Path(cc).name} -O2)")

    def _argv(self, mode: str, port: int, options: dict[str, float | int]) -> list[str]:
        argv = [*self.argv, mode, "--host", "127.0.0.1", "--port", str(port)]
        for key, value in options.items():
            argv += [f"--{key}", str(value)]
        return argv

    def run(
        self,
        mode: str,
        port: int,
        options: dict[str, float | int],
        *,
        on_start: Callable[[], None],
        timeout: float,
        on_result: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Run one measured window; ``on_start`` runs when the window opens, ``on_result``
        when it has closed (the result is in, the client's connections still open)."""
        client = _Client(self.procs, self._argv(mode, port, options), self.pinning)
        try:
            deadline = time.monotonic() + timeout
            first = client.event(deadline)
            if first.get("event") != "start":
                raise ClientError(f"unexpected event {first}")
            on_start()
            result = client.event(deadline)
            if result.get("event") != "result":
                raise ClientError(f"unexpected event {result}")
            if on_result is not None:
                on_result()
            return result
        finally:
            client.stop()

    @contextmanager
    def holding(self, mode: str, port: int, conns: int, timeout: float) -> Iterator[None]:
        """Open ``conns`` idle connections or peers; they stay open inside the block."""
        hold = {"conns": conns, "hold": timeout + 30}
        client = _Client(self.procs, self._argv(mode, port, hold), self.pinning)
        try:
            event = client.event(time.monotonic() + timeout)
            if event.get("event") != "ready":
                raise ClientError(f"unexpected event {event}")
            yield
        finally:
            client.stop()
