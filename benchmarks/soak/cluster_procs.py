"""The processes of the cluster-faults soak, as a user runs them: one ``redis-server``
(paused, killed and restarted on its port), ``chat serve --workers 2`` supervisors (their
workers' pids and RSS), load processes, and a witness member in each room that asks
``/who``. Everything started here is stopped by its owner's ``aclose``, also on errors:
workers run in their own sessions, so a worker whose supervisor is gone is killed by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import trio

from benchmarks._procs import rss_kib

from ._harness import ROOT


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def now_ns() -> int:
    """CLOCK_MONOTONIC, which every process of the run shares (trio's clock has its own
    offset)."""
    return time.monotonic_ns()


async def _drain(
    stream: trio.abc.ReceiveStream,
    log: IO[bytes],
    into: bytearray | None,
    changed: Callable[[], None] | None = None,
) -> None:
    try:
        while data := await stream.receive_some():
            log.write(data)
            log.flush()
            if into is not None:
                into += data
            if changed is not None:
                changed()
    finally:
        log.close()
        if changed is not None:
            changed()


def _kill_quietly(process: trio.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


class Redis:
    """``redis-server`` on a free loopback port, nothing on disk; restartable there."""

    def __init__(self, log: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("no redis-server on the PATH (Debian's package redis-server)")
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.log = log
        self.process: trio.Process | None = None
        self.paused = False

    async def start(self, nursery: trio.Nursery) -> None:
        """Start it and return once it accepts connections."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        process = await trio.lowlevel.open_process(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.process = process
        assert process.stdout is not None
        seen = b""
        with trio.fail_after(20):
            while b"Ready to accept connections" not in seen:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    raise RuntimeError(f"redis-server exited: {seen[-500:]!r}")
                seen += chunk
        log = self.log.open("ab")
        log.write(seen)
        nursery.start_soon(_drain, process.stdout, log, None)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    async def kill(self) -> None:
        """kill -9, as a crash."""
        if self.process is not None:
            if self.paused:
                self.resume()
            _kill_quietly(self.process)
            await self.process.wait()
            self.process = None

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.kill()


class Supervisor:
    """``python -m triosock chat serve ... --workers N``: what it printed, its workers."""

    def __init__(self, args: Sequence[str], log: Path) -> None:
        self.args = [sys.executable, "-m", "triosock", *args]
        self.out = bytearray()
        self.err = bytearray()
        self.log = log
        self.process: trio.Process | None = None
        self.worker_pids: set[int] = set()  # every worker seen, to kill any left behind
        self._changed = trio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def start(self, nursery: trio.Nursery) -> None:
        """Start it and return once its status line is out (after its workers' pids)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        process = await trio.lowlevel.open_process(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env
        )
        self.process = process
        assert process.stdout is not None
        assert process.stderr is not None
        out = self.log.with_name(self.log.name + ".out").open("wb")
        err = self.log.with_name(self.log.name + ".err").open("wb")
        nursery.start_soon(_drain, process.stdout, out, self.out, self._wake)
        nursery.start_soon(_drain, process.stderr, err, self.err)
        with trio.fail_after(60):
            while b"status (http) listening" not in self.out:
                if process.poll() is not None:
                    raise RuntimeError(f"{self.args} exited: {bytes(self.err)[-800:]!r}")
                await self._changed.wait()
        self.worker_pids.update(self.pids())

    def port(self, label: str) -> int:
        match = re.search(re.escape(label).encode() + rb" listening on [\d.]+:(\d+)", self.out)
        if match is None:
            raise RuntimeError(f"no {label} port in {bytes(self.out)!r}")
        return int(match.group(1))

    def pids(self) -> list[int]:
        """The workers' pids, from its ``N workers: pid A, B`` line."""
        match = re.search(rb"\d+ workers: pid ([\d, ]+)", self.out)
        if match is None:
            raise RuntimeError(f"no workers line in {bytes(self.out)!r}")
        return [int(pid) for pid in match.group(1).split(b", ")]

    def children(self) -> list[int]:
        """Its child processes now (its workers: no private redis with ``--redis``)."""
        assert self.process is not None
        found: list[int] = []
        try:
            for task in os.listdir(f"/proc/{self.process.pid}/task"):
                with open(f"/proc/{self.process.pid}/task/{task}/children") as children:
                    found += [int(pid) for pid in children.read().split()]
        except OSError:
            return []
        self.worker_pids.update(found)
        return found

    def workers_rss_kib(self) -> int:
        total = 0
        for pid in self.children():
            with contextlib.suppress(OSError, RuntimeError):
                total += rss_kib(pid)
        return total

    def guests_of_worker(self) -> dict[str, int]:
        """Which worker (1, 2, ...) each guest joined, from the workers' log lines."""
        found = re.findall(rb"\[worker (\d+)\] triosock\.chat: (\S+) joined \(", self.err)
        return {guest.decode(): int(worker) for worker, guest in found}

    async def aclose(self) -> None:
        """SIGINT (a graceful stop of every worker), then kill whatever is left."""
        with trio.CancelScope(shield=True):
            if self.process is not None:
                self.children()
                if self.process.returncode is None:
                    self.process.send_signal(signal.SIGINT)
                    with trio.move_on_after(15):
                        await self.process.wait()
                    _kill_quietly(self.process)
                    await self.process.wait()
            for pid in self.worker_pids:
                if _is_triosock(pid):
                    os.kill(pid, signal.SIGKILL)


def _is_triosock(pid: int) -> bool:
    """Whether ``pid`` still runs (not a zombie) and is one of triosock's: a pid may be
    taken again by another process once ours is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rpartition(")")[2].split()[0] == "Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"triosock" in cmdline.read()
    except OSError:
        return False


def alive(pid: int) -> bool:
    return _is_triosock(pid)


class LoadProcess:
    """``python -m benchmarks.soak.cluster_load ...``: ``ready`` and its members, then
    ``go``, ``stop``, and its JSON result."""

    def __init__(self, args: Sequence[str], log: Path) -> None:
        self.args = [sys.executable, "-m", "benchmarks.soak.cluster_load", *args]
        self.log = log
        self.process: trio.Process | None = None
        self.out = bytearray()
        self.done = trio.Event()
        self._changed = trio.Event()

    async def start(self, nursery: trio.Nursery) -> None:
        self.process = await trio.lowlevel.open_process(
            self.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("wb"),
            cwd=ROOT,
        )
        nursery.start_soon(self._collect)

    async def _collect(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        try:
            while data := await self.process.stdout.receive_some(1 << 20):
                self.out += data
                self._changed.set()
                self._changed = trio.Event()
        finally:
            self.done.set()
            self._changed.set()

    async def ready(self) -> dict[str, list[Any]]:
        """Wait for its ``ready`` line: each nick's guest name and server index."""
        while b"\n" not in self.out:
            if self.done.is_set():
                raise RuntimeError(f"load exited before ready: {self._tail()}")
            await self._changed.wait()
        line = bytes(self.out).split(b"\n", 1)[0]
        if not line.startswith(b"ready "):
            raise RuntimeError(f"load did not get ready: {line[:200]!r} {self._tail()}")
        who: dict[str, list[Any]] = json.loads(line[6:])
        return who

    async def say(self, word: str) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        await self.process.stdin.send_all(word.encode() + b"\n")

    async def result(self) -> dict[str, Any]:
        assert self.process is not None
        await self.done.wait()
        await self.process.wait()
        lines = bytes(self.out).strip().splitlines()
        if self.process.returncode != 0 or len(lines) < 2:
            raise RuntimeError(f"load failed ({self.process.returncode}): {self._tail()}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-800:]

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            if self.process is not None:
                _kill_quietly(self.process)
                await self.process.wait()


class Witness:
    """A member of one room on a server that is not faulted: it reads the room (the leave
    lines, the notices, when) and asks ``/who``."""

    def __init__(self, nick: str, room: str) -> None:
        self.nick, self.room = nick, room
        self.stream: trio.SocketStream | None = None
        self.left: dict[str, int] = {}
        self.notices: list[tuple[str, int]] = []
        self._who_send, self._who_receive = trio.open_memory_channel[str](16)
        self._joined = trio.Event()
        self.closed_at = 0

    async def start(self, nursery: trio.Nursery, host: str, port: int) -> None:
        self.stream = await trio.open_tcp_stream(host, port)
        nursery.start_soon(self._read)
        await self.stream.send_all(f"/nick {self.nick}\n/join {self.room}\n".encode())
        with trio.fail_after(30):
            await self._joined.wait()

    async def _read(self) -> None:
        assert self.stream is not None
        rest = b""
        joined = f"* {self.nick} joined {self.room}".encode()
        prefix = f"-!- in {self.room}: ".encode()
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.closed_at = now_ns()
                return
            *lines, rest = (rest + data).split(b"\n")
            for line in lines:
                line = line.rstrip(b"\r")
                if line.startswith(b"* ") and line.endswith(b" left " + self.room.encode()):
                    self.left.setdefault(line.split()[1].decode(), now_ns())
                elif line.startswith(b"-!- "):
                    if line.startswith(prefix):
                        with contextlib.suppress(trio.WouldBlock):
                            self._who_send.send_nowait(line[len(prefix) :].decode())
                    elif b"directory is unreachable" in line:
                        with contextlib.suppress(trio.WouldBlock):
                            self._who_send.send_nowait("")  # no answer now
                    elif b"rooms are degraded" in line:
                        self.notices.append(("degraded", now_ns()))
                    elif b"rooms are back" in line:
                        self.notices.append(("back", now_ns()))
                elif line == joined:
                    self._joined.set()

    async def who(self) -> set[str] | None:
        """Who ``/who`` lists in the room now (None: no answer within 5 s)."""
        assert self.stream is not None
        while True:  # an answer left over from an earlier, timed-out question
            try:
                self._who_receive.receive_nowait()
            except trio.WouldBlock:
                break
        await self.stream.send_all(b"/who\n")
        with trio.move_on_after(5):
            names = await self._who_receive.receive()
            return {name.strip() for name in names.split(",")} if names else None
        return None

    async def wait_who(self, predicate: Callable[[set[str]], bool], limit: float) -> int | None:
        """Ask ``/who`` every 0.25 s until ``predicate`` holds for its answer: when the
        answer came (ns), or None past ``limit`` seconds."""
        with trio.move_on_after(limit):
            while True:
                names = await self.who()
                if names is not None and predicate(names):
                    return now_ns()
                await trio.sleep(0.25)
        return None

    async def aclose(self) -> None:
        if self.stream is not None:
            with trio.CancelScope(shield=True):
                await self.stream.aclose()
