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
    ) -> None:
        self.procs, self.argv, self.port_pattern = procs, list(argv), port_pattern
        self.log, self.cwd, self.pinning = log, cwd, pinning
        self.proc: subprocess.Popen[Any] | None = None
        self.port = 0

    def start(self, timeout: float = 15.0) -> int:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for match in pattern.finditer(self.log.read_text(errors="replace")):
                if int(match.group(1)) != 0:
                    self.port = int(match.group(1))
                    time.sleep(0.05)  # let it reach its accept loop
                    return self.port
            if self.proc.poll() is not None:
                tail = _tail(self.log)
                reason = f"exited with {self.proc.returncode}: {tail or 'no output'}"
                raise Unavailable(reason, lasting=True)
            time.sleep(0.02)
        raise Unavailable(f"no '{self.port_pattern}' line within {timeout:.0f} s", lasting=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_kib(self.pid)

    def settle(self, seconds: float = 0.5) -> None:
        """Give a server that is going down the time to exit (after a failed run)."""
        if self.proc is not None:
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(seconds)

    def why_dead(self) -> str:
        assert self.proc is not None
        return f"server exited with {self.proc.returncode}: {_tail(self.log)}"

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)


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
    ) -> dict[str, Any]:
        """Run one measured window; ``on_start`` runs when the window opens."""
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
