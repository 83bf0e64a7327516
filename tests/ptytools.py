"""Driving an interactive terminal program (such as ``telnet``) through a pseudo-terminal.

Pipes are not enough for such clients: they switch the terminal between cooked and raw
modes, and the kernel's line discipline does the line editing and turns ^C into SIGINT,
which only reaches a process whose controlling terminal is the pty.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import struct
import sys
import termios
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

import trio

# What the child runs first, then execs the real program in place (same pid): setsid and make
# the pty the controlling terminal and fd 0/1/2 (os.login_tty), and undo the SIGPIPE/SIGXFSZ
# ignoring that Python's startup would otherwise pass on through exec. It stands in for a
# ``preexec_fn``, which trio would run in a fork made from a worker thread: unsafe by the docs.
_LOGIN_TTY = (
    "import os, signal, sys\n"
    "os.login_tty(0)\n"
    "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)

_MAX_READS = 100_000  # bounds every read loop even if a program floods the screen


class Terminal:
    """The master side of a pty with a program running on its slave side."""

    def __init__(
        self,
        argv: Sequence[str],
        process: trio.Process,
        master: trio.lowlevel.FdStream,
        patience: float,
    ) -> None:
        self.argv = list(argv)
        self.process = process
        self._master = master
        self._patience = patience
        self._output = bytearray()
        self._mark = 0  # where the last expect() match ended
        self._eof = False

    @property
    def output(self) -> bytes:
        """Everything the program has written to the screen that has been read so far."""
        return bytes(self._output)

    async def type(self, keys: bytes) -> None:
        """Write ``keys`` as one burst, as if pasted.

        A program in raw mode reads whatever has arrived, so ``b"abc"`` may reach it in one
        read; to get one key per read, type one key and await its effect before the next.
        Enter is ``b"\\r"`` on a real terminal; erase is ``b"\\x7f"``.
        """
        await self._master.send_all(keys)

    async def expect(self, wanted: bytes) -> bytes:
        """Read until ``wanted`` appears after the previous match; return the output since it.

        The returned bytes run from the end of the previous match through this one, so
        waiting twice for the same prompt waits for it to be printed twice.

        Fails with the screen contents, not only a timeout, if it does not come within the
        terminal's patience or the program closes the terminal first.
        """
        start = self._mark
        await self._read_until(lambda: self._output.find(wanted, start) >= 0, f"{wanted!r}")
        self._mark = self._output.index(wanted, start) + len(wanted)
        return bytes(self._output[start : self._mark])

    async def wait(self) -> int:
        """Read the screen to the end, then wait for the program to exit; its return code."""
        await self._read_until(lambda: self._eof, "the end of output")
        with trio.move_on_after(self._patience):
            return await self.process.wait()
        raise AssertionError(f"{self.argv} still running; screen: {self._tail()}")

    async def _read_until(self, done: Callable[[], bool], what: str) -> None:
        with trio.move_on_after(self._patience):
            for _ in range(_MAX_READS):
                if done():
                    return
                if self._eof:
                    raise AssertionError(f"screen closed before {what}: {self._tail()}")
                try:
                    chunk = await self._master.receive_some()
                except trio.BrokenResourceError:  # EIO: every slave fd is closed
                    chunk = b""
                self._eof = not chunk
                self._output += chunk
        raise AssertionError(f"no {what} within {self._patience}s: {self._tail()}")

    def _tail(self) -> str:
        return repr(bytes(self._output[-600:]))


@asynccontextmanager
async def open_terminal(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    size: tuple[int, int] = (24, 80),
    patience: float = 10.0,
) -> AsyncIterator[Terminal]:
    """Run ``argv`` on a new pty of ``size`` (rows, columns) as its controlling terminal.

    ``patience`` bounds each ``expect``/``wait`` so a failure shows the screen. On exit the
    program is killed if still running and the pty is closed.
    """
    if shutil.which(argv[0]) is None:  # the wrapper would only print this on the pty
        raise FileNotFoundError(argv[0])
    master, slave = os.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
        process = await trio.lowlevel.open_process(
            [sys.executable, "-I", "-S", "-c", _LOGIN_TTY, *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)  # then the child holds the only copies: its exit shows as EIO here
    stream = trio.lowlevel.FdStream(master)
    try:
        yield Terminal(argv, process, stream, patience)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            with trio.move_on_after(5):
                await process.wait()
            await stream.aclose()


_CSI = re.compile(rb"\x1b\[([0-9;?]*)[ -/]*([@-~])")


def visible_lines(output: bytes) -> list[bytes]:
    """The lines of ``output`` as a terminal would leave them, roughly.

    It follows what CR, LF, BS, cursor left and right (``CSI n D``, ``CSI n C``) and erase
    to the end (``CSI J``, ``CSI K``) do within a line, and drops every other control
    sequence: enough to see what a program that redraws its line (a prompt that erases
    itself, then text printed in its place) leaves on the screen. Cursor up, colours and
    modes are not followed; columns count bytes.
    """
    lines = [bytearray()]
    col = 0
    at = 0
    while at < len(output):
        line = lines[-1]
        match = _CSI.match(output, at)
        if match:
            params, final = match[1], match[2]
            count = int(params) if params.isdigit() else 1
            if final == b"D":
                col = max(0, col - count)
            elif final == b"C":
                col += count
            elif final in (b"J", b"K") and params in (b"", b"0"):
                del line[col:]
            at = match.end()
            continue
        byte = output[at]
        at += 1
        if byte == 0x0D:
            col = 0
        elif byte == 0x0A:
            lines.append(bytearray())
            col = 0
        elif byte == 0x08:
            col = max(0, col - 1)
        elif byte >= 0x20 and byte != 0x7F:
            if col > len(line):
                line.extend(b" " * (col - len(line)))
            line[col : col + 1] = bytes([byte])
            col += 1
    return [bytes(line) for line in lines]
