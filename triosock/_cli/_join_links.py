"""The chat client's two ways of talking to the server: TCP lines, and the UDP dialect
(a heartbeat that keeps the peer known, ``quit`` to leave, the server's ``BYE``)."""

from __future__ import annotations

import os
from typing import Protocol

import trio

from .._liveness import send_heartbeats
from .._sansio import chat as proto
from .._sansio.addresses import format_address
from .._transport.channel import FramedChannel
from .._transport.udp import UDPChannel

__all__ = ["Link", "TCPLink", "UDPLink"]


class Link(Protocol):
    """A connection to the chat server, over TCP lines or the UDP dialect."""

    #: The line that asks the server to end the session.
    quit: bytes
    #: Why the session ended when the server ended it.
    closed: str
    #: The user's nick as far as the client knows before the server says it ("": unknown).
    nick: str

    async def hello(self, nick: str | None) -> None:
        """Announce the client (and take ``nick``)."""

    async def send(self, line: bytes) -> None:
        """Say ``line`` (a message or a command)."""

    def is_quit(self, line: bytes) -> bool:
        """Whether the user's ``line`` asks to leave."""

    async def receive(self) -> bytes | None:
        """The server's next line, or None once the server has ended the session."""

    async def keep_alive(self) -> None:
        """Run for the session: whatever keeps it alive."""

    async def aclose(self) -> None: ...


class TCPLink:
    quit = b"/quit"
    closed = "the server closed the connection"
    nick = ""

    def __init__(self, chan: FramedChannel) -> None:
        self._chan = chan

    async def hello(self, nick: str | None) -> None:
        if nick:
            await self._chan.send(b"/nick " + os.fsencode(nick))
        else:
            await trio.lowlevel.checkpoint()

    async def send(self, line: bytes) -> None:
        await self._chan.send(line)

    def is_quit(self, line: bytes) -> bool:
        return proto.parse_line_untrusted(line) == proto.Quit()

    async def receive(self) -> bytes | None:
        try:
            return await self._chan.receive()
        except trio.EndOfChannel:
            return None

    async def keep_alive(self) -> None:
        await trio.lowlevel.checkpoint()  # TCP needs nothing

    async def aclose(self) -> None:
        await self._chan.aclose()


class UDPLink:
    quit = proto.UDP_QUIT
    closed = "the server closed the session"

    def __init__(self, chan: UDPChannel, heartbeat: float) -> None:
        self._chan = chan
        self._heartbeat = heartbeat
        self._over = False
        # The server names a UDP peer by its address (right unless a NAT is in between).
        self.nick = format_address(chan.socket.getsockname())

    async def hello(self, nick: str | None) -> None:
        await self._chan.send(proto.HEARTBEAT)  # the server learns our address
        if nick:
            await self._chan.send(b"/nick " + os.fsencode(nick))

    async def send(self, line: bytes) -> None:
        if line.strip():  # an empty datagram says nothing
            await self._chan.send(line)

    def is_quit(self, line: bytes) -> bool:
        if isinstance(proto.classify_datagram_untrusted(line), proto.UdpQuit):
            return True
        return proto.parse_line_untrusted(line) == proto.Quit()

    async def receive(self) -> bytes | None:
        if self._over:
            return None
        datagram = (await self._chan.receive()).rstrip(b"\n")
        self._over = datagram == proto.BYE  # the server's last word, asked for or not
        return datagram

    async def keep_alive(self) -> None:
        await send_heartbeats(lambda: self._chan.send(proto.HEARTBEAT), self._heartbeat)

    async def aclose(self) -> None:
        await self._chan.aclose()
