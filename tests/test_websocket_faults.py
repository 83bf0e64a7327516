"""The chat's WebSocket listener against a client that writes exact bytes at the worst
moment: right after the server's 101, before the server has started the connection's
handler (the soak's hostile-input fuzz found both faults here, under load).

websockets' trio server writes the 101 from the handshake task, which then waits for
trio's next pass (the write's checkpoint) before it starts the handler, and starts it
only if the connection is still OPEN. The connection's reader task runs meanwhile. When
it took in the client's frames during that wait, a close or a protocol error made the
connection CLOSING, so the server closed the TCP connection without its close frame (and
without running the handler); and a data frame read with them went to a closed message
queue (websockets logged "unexpected internal error ... EOFError: stream of frames
ended"). See ``WebSocketStream`` in ``triosock/_transport/websocket.py``.

A load makes that window wide by chance; here a trio instrument makes it exactly: it
writes the client's frames the moment the 101 is in the client's socket, before trio
polls for I/O, so the poll wakes the server's reader while the handshake task waits to
resume. trio runs the two in an order it picks at random, so each case repeats until
the reader went first a few times (counted, and required).
"""

from __future__ import annotations

import logging
import socket
import struct

import pytest
import trio

from triosock.chat import ChatServer

from .chattools import LineSocket, web_chat
from .conftest import GUARD

#: How often the reader must have gone first in a case, and the most attempts for that
#: (each attempt is a coin toss of trio's scheduler: fewer than 3 in 40 is 1 in 10**9).
WANTED_RACES = 3
MAX_ATTEMPTS = 40

_MASK = b"\x37\xfa\x21\x3d"


def client_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """A frame as a client writes it (masked), or broken in the ways asked for."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    return head + _MASK + bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))


def close_payload(code: int) -> bytes:
    return struct.pack("!H", code)


HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The server's (unmasked, small) frames in ``data``; a torn one fails the test."""
    frames = []
    at = 0
    while at < len(data):
        assert len(data) - at >= 2, f"a torn frame: {data[at:]!r}"
        opcode, size, head = data[at] & 0x0F, data[at + 1] & 0x7F, 2
        assert not data[at + 1] & 0x80, "a server's frame is never masked"
        if size == 126:
            size, head = struct.unpack_from("!H", data, at + 2)[0], 4
        elif size == 127:
            size, head = struct.unpack_from("!Q", data, at + 2)[0], 10
        assert len(data) - at >= head + size, f"a torn frame: {data[at:]!r}"
        frames.append((opcode, data[at + head : at + head + size]))
        at += head + size
    return frames


class AfterThe101(trio.abc.Instrument):
    """Writes ``frames`` from the client's socket the moment the server's 101 is there.

    The task in whose step the 101 arrived is the server's handshake task; the frames go
    out before trio's next poll for I/O, so that poll wakes the server's reader (a task
    of the handshake task's nursery) while the handshake task waits to resume.
    :attr:`reader_first` then says which of the two trio ran first.
    """

    def __init__(self, sock: socket.socket, frames: bytes) -> None:
        self._sock = sock
        self._frames = frames
        self._writer: trio.lowlevel.Task | None = None
        #: The 101's head, once the frames were written.
        self.head = b""
        self.reader_first: bool | None = None

    def _head_size(self) -> int:
        """How long the answer's head is (0: not all there yet). Never blocks."""
        try:
            data = self._sock.recv(4096, socket.MSG_PEEK)
        except OSError:  # BlockingIOError: nothing yet
            return 0
        end = data.find(b"\r\n\r\n")
        return end + 4 if end >= 0 else 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._writer is None and self._head_size():
            self._writer = task

    def before_io_wait(self, timeout: float) -> None:
        if self._writer is not None and not self.head:
            self.head = self._sock.recv(self._head_size())
            assert self.head.startswith(b"HTTP/1.1 101 "), self.head
            assert self._sock.send(self._frames) == len(self._frames)  # one write

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if not self.head or self.reader_first is not None:
            return
        if task is self._writer:
            self.reader_first = False
        elif task.parent_nursery is not None and task.parent_nursery.parent_task is self._writer:
            self.reader_first = True  # websockets' reader (its keepalive starts later)


async def exchange(port: int, frames: bytes) -> tuple[AfterThe101, list[tuple[int, bytes]]]:
    """The handshake, then ``frames`` right after the 101; what the server sent until it
    closed the connection (a reset fails the test)."""
    sock = socket.socket()
    sock.setblocking(False)
    client = trio.socket.from_stdlib_socket(sock)
    with client:
        await client.connect(("127.0.0.1", port))
        instrument = AfterThe101(sock, frames)
        trio.lowlevel.add_instrument(instrument)
        try:
            await client.send(HANDSHAKE)
            received = b""
            while data := await client.recv(65536):
                received += data
        finally:
            trio.lowlevel.remove_instrument(instrument)
    assert instrument.head, f"the server answered the handshake with {received[:80]!r}"
    return instrument, server_frames(received)


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [(r.getMessage(), r.exc_info and repr(r.exc_info[1])) for r in errors]


CLOSE = 8
FAULTS = {
    "bad-opcode": (client_frame(3, b"x"), 1002),
    "unmasked": (client_frame(1, b"hi", masked=False), 1002),
    "bad-utf8": (client_frame(1, b"caf\xc3(\xff"), 1007),
    "oversize": (client_frame(2, b"", length=1 << 40), 1009),
    "long-ping": (client_frame(9, b"p" * 200), 1002),
    "lone-continuation": (client_frame(0, b"more"), 1002),
    "fragment-then-new-text": (client_frame(1, b"par", fin=False) + client_frame(1, b"tial"), 1002),
    "bad-close-code": (client_frame(CLOSE, close_payload(1005)), 1002),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_bad_frame_right_after_the_101_gets_its_close_frame_and_code(
    fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    frames, code = FAULTS[fault]
    races = attempts = 0
    with trio.fail_after(GUARD):
        async with web_chat(ChatServer()) as (_, _, web):
            while races < WANTED_RACES and attempts < MAX_ATTEMPTS:
                attempts += 1
                instrument, answer = await exchange(web, frames)
                races += bool(instrument.reader_first)
                closes = [payload for opcode, payload in answer if opcode == CLOSE]
                assert closes, f"attempt {attempts}: closed without a close frame: {answer}"
                assert struct.unpack("!H", closes[0][:2])[0] == code, answer
                assert answer[-1][0] == CLOSE, f"sent after its close frame: {answer}"
    assert races >= WANTED_RACES, f"the reader went first {races} times in {attempts}"
    no_errors_logged(caplog)


async def test_a_line_and_a_close_right_after_the_101_reach_the_room_and_get_1000(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A valid exchange: the line is said in #lobby (a TCP user there reads it), the
    # close is answered with 1000, and nothing is logged.
    races = attempts = 0
    with trio.fail_after(GUARD):
        async with web_chat(ChatServer()) as (tcp, _, web):
            user = await LineSocket.connect(tcp)
            await user.read_until(b"welcome")
            while races < WANTED_RACES and attempts < MAX_ATTEMPTS:
                attempts += 1
                line = f"hello {attempts}".encode()
                frames = client_frame(1, line) + client_frame(CLOSE, close_payload(1000))
                instrument, answer = await exchange(web, frames)
                races += bool(instrument.reader_first)
                assert answer, "closed without a frame"
                assert answer[-1] == (CLOSE, close_payload(1000)), answer
                said = await user.read_until(b": " + line)
                assert said.startswith(b"[#lobby] guest"), said
            user.close()
    assert races >= WANTED_RACES, f"the reader went first {races} times in {attempts}"
    no_errors_logged(caplog)
