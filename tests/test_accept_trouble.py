"""Accepts that fail for want of resources: retried every 0.1 s, logged once an episode.

A server out of file descriptors (nginx: ``accept4() failed (24: Too many open files)``)
used to log a full traceback every retry, ten a second for as long as it lasted. Now an
episode is one line when it begins and one when accepts work again, with a count.
"""

from __future__ import annotations

import errno
import logging
import re
import resource
import subprocess
import types

import pytest
import trio
import trio.testing

from triosock import open_tcp_stream
from triosock._transport.rawsocket import ACCEPT_RETRY, RawSocketListener

from .clitools import PYTHON


class _FlakySocket:
    """A listening socket whose accepts of a waiting connection fail with EMFILE while
    ``failing`` is above 0 (the connection stays in the backlog, as with a real one)."""

    def __init__(self, real: trio.socket.SocketType) -> None:
        self._real = real
        self.failing = 0
        self.failures = 0

    async def accept(self) -> tuple[trio.socket.SocketType, object]:
        await trio.lowlevel.wait_readable(self._real)
        if self.failing:
            self.failing -= 1
            self.failures += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return await self._real.accept()


async def test_an_episode_of_failed_accepts_is_one_line_when_it_begins_and_one_when_it_ends(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    flaky = _FlakySocket(listeners[0].socket)
    raw = RawSocketListener(listeners[0])
    raw._listener = types.SimpleNamespace(socket=flaky, aclose=listeners[0].aclose)  # type: ignore[assignment]
    port = listeners[0].socket.getsockname()[1]
    served = trio.Semaphore(0)

    async def handler(stream: trio.abc.Stream) -> None:
        await stream.send_all(b"served")
        await stream.aclose()
        served.release()

    async def one_client(failing: int) -> float:
        flaky.failing = failing
        start = trio.current_time()
        client = await open_tcp_stream("127.0.0.1", port)
        await served.acquire()
        took = trio.current_time() - start
        assert await client.receive_some() == b"served"
        await client.aclose()
        return took

    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, handler, [raw])
            first = await one_client(7)  # an episode of 7 failures
            calm = await one_client(0)  # none
            second = await one_client(3)  # another episode, of 3
            nursery.cancel_scope.cancel()
    assert flaky.failures == 10
    # Every failure waits ACCEPT_RETRY, then the accept is tried again.
    assert ACCEPT_RETRY == 0.1
    assert first == pytest.approx(0.7)
    assert calm == pytest.approx(0.0)
    assert second == pytest.approx(0.3)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "accept" in r.getMessage()]
    begin = (
        "ERROR",
        "accept() failed (24: Too many open files); retrying every 0.1 s, "
        "logged once until it succeeds",
    )
    assert lines == [
        begin,
        ("WARNING", "accepting again after 7 failed accepts over 0.7 s"),
        begin,
        ("WARNING", "accepting again after 3 failed accepts over 0.3 s"),
    ]
    assert not any(r.exc_info for r in caplog.records)


#: The server's descriptor limit: its own (epoll, pipes, the listener) leave it room for
#: a few dozen connections; the test holds more than that.
LIMIT = 64
HELD = LIMIT + 16
#: How long the test holds them (at least this many retries fail meanwhile).
HOLD = 0.5


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


class _Log:
    """The lines a process writes to a pipe, read as they come."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""
        self.lines: list[str] = []

    async def line_with(self, text: str) -> str:
        """Read until a line contains ``text``; that line."""
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if text in line:
                    return line
            seen = len(self.lines)
            chunk = await self._stream.receive_some()
            if not chunk:
                raise AssertionError(f"no line with {text!r} in {self.lines}")
            self._feed(chunk)

    async def read_to_eof(self) -> None:
        while chunk := await self._stream.receive_some():
            self._feed(chunk)
        self._feed(b"\n")

    def _feed(self, chunk: bytes | bytearray) -> None:
        self._buffer += chunk
        *whole, self._buffer = self._buffer.split(b"\n")
        self.lines += [line.decode(errors="replace") for line in whole if line]


async def test_a_server_out_of_descriptors_logs_the_episode_once_and_serves_again() -> None:
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            [PYTHON, "-m", "triosock", "echo", "serve", "--port", "0", "--status", "none"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_low_descriptor_limit,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            started = _Log(process.stdout)
            match = re.search(r"127\.0\.0\.1:(\d+)", await started.line_with("127.0.0.1:"))
            assert match is not None
            port = int(match.group(1))
            log = _Log(process.stderr)
            held = [await open_tcp_stream("127.0.0.1", port) for _ in range(HELD)]
            # Past the limit, clients wait in the backlog and accepts fail.
            await log.line_with("Too many open files")
            start = trio.current_time()
            await trio.sleep(HOLD)  # the shape: held for a while (not a synchronisation)
            for stream in held:
                await stream.aclose()
            ended = await log.line_with("accepting again")
            held_for = trio.current_time() - start
            fresh = await open_tcp_stream("127.0.0.1", port)
            await fresh.send_all(b"served again\n")
            assert await fresh.receive_some() == b"served again\n"
            await fresh.aclose()
        finally:
            with trio.CancelScope(shield=True):
                process.send_signal(2)
                with trio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        await log.read_to_eof()
    assert process.returncode == 0, log.lines
    episodes = [line for line in log.lines if "too many open files" in line.lower()]
    assert len(episodes) == 1, log.lines
    assert episodes[0].endswith(
        "ERROR triosock.tcp: accept() failed (24: Too many open files); "
        "retrying every 0.1 s, logged once until it succeeds"
    )
    assert [line for line in log.lines if "accepting again" in line] == [ended]
    assert not any("Traceback" in line for line in log.lines), log.lines
    found = re.search(
        r"WARNING triosock\.tcp: accepting again after (\d+) failed accepts over ([\d.]+) s$", ended
    )
    assert found is not None, ended
    failures, lasted = int(found.group(1)), float(found.group(2))
    # It lasted while the clients were held, and until the server had closed theirs; one
    # failure a retry (0.1 s), never more often (a loaded machine may retry less often).
    assert HOLD <= lasted <= held_for + 0.5
    assert lasted / ACCEPT_RETRY / 2 <= failures <= lasted / ACCEPT_RETRY + 1
