"""Running ``python -m triosock`` as a subprocess from tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio

PYTHON = sys.executable


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
        [PYTHON, "-m", "triosock", *args],
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
    """Run a command to completion and capture its output."""
    return await trio.run_process(
        list(args), stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
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
