"""Shared helpers of the chat tests: servers on free loopback ports, line readers."""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

import trio

from triosock import (
    FramedChannel,
    Outbox,
    TCPServer,
    UDPChannel,
    UDPServer,
    WebSocketServer,
    open_tcp_channel,
    open_udp_channel,
    serve_tcp,
    serve_udp,
    serve_websocket,
)
from triosock._sansio.chat import ChatSession, Effect, notice_token_untrusted
from triosock.chat import ChatPage, ChatServer, EndReason, Member, TCPLineMember


@asynccontextmanager
async def chat_servers(
    chat: ChatServer, tcp_options: dict[str, Any] | None = None, **udp_options: Any
) -> AsyncIterator[tuple[TCPServer, UDPServer, trio.Nursery]]:
    """The chat over TCP and UDP on free loopback ports, for the body of the block."""
    async with chat, trio.open_nursery() as nursery:
        tcp: TCPServer = await nursery.start(
            lambda task_status: serve_tcp(
                chat.serve_tcp_client,
                0,
                grace_period=1,
                task_status=task_status,
                **(tcp_options or {}),
            )
        )
        udp: UDPServer = await nursery.start(
            lambda task_status: serve_udp(
                chat.serve_udp_peer, 0, grace_period=1, task_status=task_status, **udp_options
            )
        )
        yield tcp, udp, nursery
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def web_chat(chat: ChatServer, **options: Any) -> AsyncIterator[tuple[int, int, int]]:
    """The chat over TCP, UDP and WebSocket (with its page): their ports."""
    async with chat_servers(chat) as (tcp, udp, nursery):
        web: WebSocketServer = await nursery.start(
            lambda task_status: serve_websocket(
                chat.serve_websocket_peer,
                0,
                process_request=ChatPage(chat),
                grace_period=1,
                task_status=task_status,
                **options,
            )
        )
        yield tcp.port, udp.port, web.port


async def lobby_user(port: int) -> FramedChannel:
    """A TCP user of the chat on ``port``, once it is in the lobby."""
    user = await open_tcp_channel("127.0.0.1", port)
    await expect(user, b"joined #lobby")
    return user


#: A UDP peer's first datagram in the tests: a heartbeat padded so that its three times
#: cover the server's join notice (as ``chat join --udp`` does).
UDP_HELLO = b"^hb^".ljust(32)


async def validate_udp(chan: trio.abc.Channel[bytes], hello: bytes = UDP_HELLO) -> bytes:
    """Validate a UDP peer's address as the project's clients do: the padded hello, the
    server's join notice, its token sent back. Returns the token."""
    await chan.send(hello)
    token = notice_token_untrusted(await chan.receive())
    assert token is not None
    await chan.send(token)
    return token


async def validate_udp_socket(sock: trio.socket.SocketType) -> None:
    """:func:`validate_udp` for a connected trio UDP socket."""
    await sock.send(UDP_HELLO)
    token = notice_token_untrusted(await sock.recv(2048))
    assert token is not None
    await sock.send(token)


async def join_over_udp(port: int) -> UDPChannel:
    """A UDP peer of the chat on ``port``, its address validated."""
    chan = await open_udp_channel("127.0.0.1", port)
    await validate_udp(chan)
    return chan


async def socat_join(peer: Any) -> None:
    """A ``socat`` user (a line process) does what the join notice says, by hand: a line
    long enough to earn the notice, then the token it names."""
    await peer.send(b"hello, may I join?")
    token = notice_token_untrusted(await peer.expect(b" to join"))
    assert token is not None
    await peer.send(token)


#: The notice that tells a TCP user its resume token (right after the welcome).
TOKEN_NOTICE = re.compile(rb"-!- your resume token: [A-Za-z0-9_-]{32} \(secret; .*\)")


async def detached(chat: ChatServer, nick: str) -> None:
    """Return once ``chat`` holds ``nick``'s session detached (it noticed the connection
    end): polled, as the server says nothing to anyone when it happens."""
    while True:
        if nick in {d.core.nick for d in chat._sessions.resumes.detached.values()}:
            return
        await trio.sleep(0.01)


def without_token(lines: list[bytes]) -> list[bytes]:
    """``lines`` without the resume token's notice (for tests about something else)."""
    return [line for line in lines if not TOKEN_NOTICE.fullmatch(line)]


async def expect(chan: trio.abc.ReceiveChannel[bytes], wanted: bytes) -> bytes:
    while True:
        line = await chan.receive()
        if wanted in line:
            return line


#: Every line the chat sends a TCP user, as a pattern: what a whole rendered event
#: looks like (a torn line, such as ``xxx* guest1 joined #a``, matches none).
RENDERED = re.compile(
    rb"\[#[a-z0-9_.\-]+\] [A-Za-z0-9_.\-:\[\]]+: .*"  # a room message
    rb"|\[#[a-z0-9_.\-]+\] \* [A-Za-z0-9_.\-:\[\]]+ .*"  # an action
    rb"|\* [A-Za-z0-9_.\-:\[\]]+ (joined|left) #[a-z0-9_.\-]+"
    rb"|\* [0-9]+ joined, [0-9]+ left #[a-z0-9_.\-]+"  # a crowded room's count
    rb"|\* [A-Za-z0-9_.\-:\[\]]+ is now known as [A-Za-z0-9_.\-]+"
    rb"|\[dm (from|to) [A-Za-z0-9_.\-:\[\]]+\] .*"
    rb"|-!- .*"
    rb"|\[\d\d:\d\d:\d\d\] .*"  # an earlier line, stamped with its time
)


class Events:
    """A WebSocket client's events, one at a time (a message may hold several)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.waiting: list[dict[str, object]] = []

    async def next(self, **wanted: object) -> dict[str, object]:
        """The next event with the fields ``wanted``."""
        while True:
            while not self.waiting:
                message = await self.ws.recv()
                assert isinstance(message, str)
                self.waiting = [json.loads(line) for line in message.splitlines()]
            event = self.waiting.pop(0)
            if all(event.get(k) == v for k, v in wanted.items()):
                return event


class LineReader:
    """Lines from a byte source, read the way ``nc`` reads: everything, as lines.

    Keeps every complete line received in :attr:`lines`; :meth:`read_until` finds the
    next line (after the one it found last) that contains a text, reading as needed.
    A subclass says where the bytes come from (:meth:`receive`).
    """

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self._rest = b""
        self._cursor = 0  # the first line read_until has not looked at yet
        self.eof = False

    async def receive(self) -> bytes:
        raise NotImplementedError

    async def read_some(self) -> list[bytes]:
        """Read once; return the lines it completed (none at EOF)."""
        data = await self.receive()
        if not data:
            self.eof = True
            if self._rest:
                self.lines.append(self._rest)
                self._rest = b""
                return [self.lines[-1]]
            return []
        *lines, self._rest = (self._rest + data).split(b"\n")
        self.lines += lines
        return lines

    async def read_until(self, wanted: bytes) -> bytes:
        """The next line containing ``wanted``, reading until it arrives."""
        while True:
            while self._cursor < len(self.lines):
                line = self.lines[self._cursor]
                self._cursor += 1
                if wanted in line:
                    return line
            if self.eof:
                raise AssertionError(f"EOF before {wanted!r}; last lines {self.lines[-5:]}")
            await self.read_some()

    async def next_line(self) -> bytes:
        """The next line after the last one :meth:`read_until` or this method returned."""
        while self._cursor >= len(self.lines):
            if self.eof:
                raise AssertionError(f"EOF; last lines {self.lines[-5:]}")
            await self.read_some()
        self._cursor += 1
        return self.lines[self._cursor - 1]

    async def read_to_eof(self) -> list[bytes]:
        while not self.eof:
            await self.read_some()
        return self.lines


class LineSocket(LineReader):
    """A plain TCP client socket, read as lines (see :class:`LineReader`)."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        super().__init__()
        self.sock = sock

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        rcvbuf: int | None = None,
        source: str | None = None,
        host: str = "127.0.0.1",
    ) -> Self:
        """Connect to ``port`` on ``host``, from ``source`` (another loopback address,
        as another host would) if given."""
        sock = trio.socket.socket()
        if rcvbuf is not None:  # before connecting, so that the window starts small
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            await sock.bind((source, 0))
        await sock.connect((host, port))
        return cls(sock)

    async def receive(self) -> bytes:
        return await self.sock.recv(65536)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = await self.sock.send(view)
            view = view[sent:]

    def close(self) -> None:
        self.sock.close()


class MemorySink:
    """An :class:`~triosock.Outbox` sink in memory: what it takes, with the trio time it
    took it; or, while ``taking`` is false, a socket that takes nothing."""

    joinable = True
    can_try_send = True

    def __init__(self, *, taking: bool = True) -> None:
        self.taking = taking
        self.writes: list[tuple[float, bytes]] = []
        self._lot = trio.lowlevel.ParkingLot()

    def try_send(self, data: bytes | memoryview) -> int:
        if not self.taking:
            return 0
        self.writes.append((trio.current_time(), bytes(data)))
        self._lot.unpark_all()
        return len(data)

    async def wait_writable(self) -> None:
        while not self.taking:
            await self._lot.park()
        await trio.lowlevel.checkpoint()

    async def send(self, data: bytes) -> None:
        await self.wait_writable()
        self.try_send(data)

    def lines(self) -> list[tuple[float, bytes]]:
        """Every line taken, with the time of the write that completed it."""
        lines: list[tuple[float, bytes]] = []
        rest = b""
        for when, data in self.writes:
            *whole, rest = (rest + data).split(b"\n")
            lines += [(when, line) for line in whole]
        return lines

    async def wait_for(self, wanted: bytes) -> float:
        """The time of the first line taken that contains ``wanted``, waiting for it."""
        while True:
            for when, line in self.lines():
                if wanted in line:
                    return when
            await self._lot.park()


class MemoryMember(Member):
    """A chat user in memory: it says what the test gives :meth:`say`, and its outbox
    writes to a :class:`MemorySink`. Lines look as they do on TCP."""

    kind = "mem"
    renderer = TCPLineMember.renderer

    def __init__(self, label: str, sink: MemorySink | None = None) -> None:
        self.label = label
        self.sink = sink if sink is not None else MemorySink()
        self.outbox = Outbox(self.sink)
        self._said, self._input = trio.open_memory_channel[list[bytes]](math.inf)
        self._stop = trio.CancelScope()

    def say(self, *lines: bytes) -> None:
        """The user sends ``lines`` at once (one read of the server)."""
        self._said.send_nowait(list(lines))

    def close(self) -> None:
        """The user's end of input."""
        self._said.close()

    async def receive(self) -> list[bytes] | None:
        try:
            return await self._input.receive()
        except trio.EndOfChannel:
            return None

    def handle(self, session: ChatSession, item: object, now: float) -> list[Effect]:
        assert isinstance(item, bytes)
        return session.receive_line(item, now)

    def farewell(self, reason: EndReason, detail: str) -> bytes | None:
        return None

    def stop_scope(self) -> trio.CancelScope:
        return self._stop

    @property
    def stopping(self) -> bool:
        return False
