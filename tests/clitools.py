"""Running ``python -m triosock`` as a subprocess from tests."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
import trio

PYTHON = sys.executable


def _no_irc(args: Sequence[str]) -> list[str]:
    """``args``, with ``--irc none`` added to a ``chat [serve]`` that does not name
    ``--irc``: its default port (6667) is one for the whole machine, and the tests run
    servers side by side. The IRC tests name ``--irc``."""
    args = list(args)
    serves = args[:1] == ["chat"] and (len(args) == 1 or args[1] == "serve" or args[1][:1] == "-")
    if serves and "--irc" not in args:
        args += ["--irc", "none"]
    return args


def need(tool: str) -> str:
    """The path of an external client, or skip (CI installs them all)."""
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    return path


class ServerProcess:
    """A running ``python -m triosock ... serve`` and what it printed on startup."""

    def __init__(self, process: trio.Process, lines: list[str]) -> None:
        self.process = process
        self.lines = lines

    def port(self, label: str = "") -> int:
        """The port from the first startup line that contains ``label``."""
        for line in self.lines:
            if label in line:
                match = re.search(r"127\.0\.0\.1:(\d+)", line)
                if match:
                    return int(match.group(1))
        raise AssertionError(f"no port for {label!r} in {self.lines}")


@asynccontextmanager
async def cli_server(args: Sequence[str], ready_lines: int = 1) -> AsyncIterator[ServerProcess]:
    """Start the CLI server, read its ``ready_lines`` startup lines, stop it with SIGINT."""
    process = await trio.lowlevel.open_process(
        [PYTHON, "-m", "triosock", *_no_irc(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    lines: list[str] = []
    buffer = b""
    try:
        while len(lines) < ready_lines:
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise AssertionError(f"server exited early: {lines} {buffer!r}")
            buffer += chunk
            while b"\n" in buffer and len(lines) < ready_lines:
                line, buffer = buffer.split(b"\n", 1)
                lines.append(line.decode())
        yield ServerProcess(process, lines)
    finally:
        # Shielded: a test that failed on its guard still stops (and reaps) the server.
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(2)  # SIGINT: the graceful path
                with trio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()


async def run(args: Sequence[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion and capture its output (``--irc none`` added to a
    ``chat serve`` of the CLI that does not name it, see :func:`_no_irc`)."""
    args = list(args)
    if args[1:3] == ["-m", "triosock"]:
        args[3:] = _no_irc(args[3:])
    return await trio.run_process(
        args, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
    )


class LineProcess:
    """An interactive process driven line by line through its stdin and stdout."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._buffer = b""
        self.seen: list[bytes] = []

    async def send(self, line: bytes) -> None:
        await self._stdin.send_all(line + b"\n")

    async def close_stdin(self) -> None:
        await self._stdin.aclose()

    async def readline(self) -> bytes | None:
        """The next line without its LF, or None at EOF."""
        while b"\n" not in self._buffer:
            chunk = await self._stdout.receive_some()
            if not chunk:
                if not self._buffer:
                    return None
                rest, self._buffer = self._buffer, b""
                self.seen.append(rest)
                return rest
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        self.seen.append(line)
        return line

    async def expect(self, wanted: bytes) -> bytes:
        """Read lines until one contains ``wanted``; return it. Fails at EOF."""
        while True:
            line = await self.readline()
            if line is None:
                raise AssertionError(f"EOF before {wanted!r}; saw {self.seen}")
            if wanted in line:
                return line

    async def read_to_eof(self) -> list[bytes]:
        lines = []
        while (line := await self.readline()) is not None:
            lines.append(line)
        return lines


@asynccontextmanager
async def line_process(argv: Sequence[str]) -> AsyncIterator[LineProcess]:
    process = await trio.lowlevel.open_process(
        list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        yield LineProcess(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


class Supervisor:
    """``python -m triosock ... --workers N``, its start-up lines, and all it printed."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.out = b""
        self.err = b""
        self._changed = trio.Event()

    def _got(self, into: str, data: bytes) -> None:
        setattr(self, into, getattr(self, into) + data)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once what it printed makes ``predicate()`` true."""
        while not predicate():
            assert self.process.poll() is None, (self.out, self.err)
            await self._changed.wait()

    def port(self, label: str) -> int:
        match = re.search(re.escape(label).encode() + rb".*?127\.0\.0\.1:(\d+)", self.out)
        assert match, self.out
        return int(match.group(1))

    def pids(self) -> list[int]:
        match = re.search(rb"\d+ workers: pid ([\d, ]+)", self.out)
        assert match, self.out
        return [int(pid) for pid in match.group(1).split(b", ")]


@asynccontextmanager
async def supervisor(args: list[str]) -> AsyncIterator[Supervisor]:
    process = await trio.lowlevel.open_process(
        [PYTHON, "-m", "triosock", *_no_irc(args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stderr is not None
    sup = Supervisor(process)

    async def collect(stream: trio.abc.ReceiveStream, into: str) -> None:
        while data := await stream.receive_some():
            sup._got(into, bytes(data))

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, process.stdout, "out")
            nursery.start_soon(collect, process.stderr, "err")
            await sup.wait_until(lambda: b"workers: pid" in sup.out)
            yield sup
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def children(pid: int) -> list[str]:
    """Every child of ``pid``, whichever of its threads started it."""
    found: list[str] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as children:
            found += children.read().split()
    return found


async def gone(pid: int) -> None:
    """Return once ``pid`` has exited (polling /proc: not our child, nothing reports it)."""
    while alive(pid):  # noqa: ASYNC110 (not our child: no event to wait for)
        await trio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
