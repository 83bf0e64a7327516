"""The chat client's two ways of talking to the server: TCP lines, and the UDP dialect
(a heartbeat that keeps the peer known, ``quit`` to leave, the server's ``BYE``).

Over UDP the client validates its address by itself: the server answers a new address
with a join notice (``send ^ok^TOKEN to join``) and counts it a member once the token
comes back. The hello, and the heartbeats until then, are padded with spaces (still a
heartbeat to the server) so that the server, which sends an address it does not know
at most three times what it received, can afford the notice. The client sends the
token and, if asked, its ``/nick``; the user's lines wait for that, and the notice is
never shown. A notice after that (a server restarted, with a new secret) is answered
the same way.

Over TCP a link may have a :class:`~._join_resume.Resumer` (a client that reconnects by
itself): it begins with tags on and, when it holds a token, a resume; the lines it
returns are the server's without their tags, once each; and when the server refused
the resume (a new session), it asks again for the user's nick."""

from __future__ import annotations

from typing import Final, Protocol

import trio

from .._liveness import send_heartbeats
from .._sansio import chat as proto
from .._sansio.addresses import format_address
from .._transport.channel import FramedChannel
from .._transport.udp import UDPChannel
from ._join_resume import Resumer, is_final

__all__ = ["Link", "TCPLink", "UDPLink"]

#: The UDP hello: a heartbeat padded to 32 bytes, so that the server may answer with
#: its 30-byte join notice.
UDP_HELLO: Final = proto.HEARTBEAT.ljust(32)


class Link(Protocol):
    """A connection to the chat server, over TCP lines or the UDP dialect."""

    #: The line that asks the server to end the session.
    quit: bytes
    #: Why the session ended when the server ended it.
    closed: str
    #: The user's nick as far as the client knows before the server says it ("": unknown).
    nick: str

    @property
    def final(self) -> bool:
        """Whether the server's last line said not to come back (see ``is_final``)."""

    @property
    def welcomed(self) -> bool:
        """Whether a session began or resumed on this connection (it got in)."""

    async def hello(self, arrival: bytes | None) -> None:
        """Announce the client (and send ``arrival``: ``/nick NAME`` or ``/login``)."""

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
    """TCP lines; with ``resumer``, tagged and resumed (see the module docstring)."""

    quit = b"/quit"
    closed = "the server closed the connection"
    nick = ""

    def __init__(self, chan: FramedChannel, resumer: Resumer | None = None) -> None:
        self._chan = chan
        self._resumer = resumer
        self._last = b""
        self._renamed = False

    @property
    def final(self) -> bool:
        return is_final(self._last)

    @property
    def welcomed(self) -> bool:
        return self._resumer is None or self._resumer.welcomed

    async def hello(self, arrival: bytes | None) -> None:
        if self._resumer is not None:
            await self._chan.send_many(self._resumer.hello())  # one write: first lines
        elif arrival:
            await self._chan.send(arrival)
        else:
            await trio.lowlevel.checkpoint()

    async def send(self, line: bytes) -> None:
        if self._resumer is not None:
            self._resumer.sent(line)
        await self._chan.send(line)

    def is_quit(self, line: bytes) -> bool:
        return proto.parse_line_untrusted(line) == proto.Quit()

    async def receive(self) -> bytes | None:
        resumer = self._resumer
        while True:
            try:
                line = self._last = await self._chan.receive()
            except trio.EndOfChannel:
                return None
            if resumer is None:
                return line
            shown = resumer.receive(line)
            if resumer.resumed is False and not self._renamed:  # a new session
                self._renamed = True
                if nick := resumer.nick_lines():
                    await self._chan.send_many(nick)
            if shown is not None:
                return shown

    async def keep_alive(self) -> None:
        await trio.lowlevel.checkpoint()  # TCP needs nothing

    async def aclose(self) -> None:
        await self._chan.aclose()


class UDPLink:
    quit = proto.UDP_QUIT
    closed = "the server closed the session"
    final = True  # it does not reconnect
    welcomed = True

    def __init__(self, chan: UDPChannel, heartbeat: float) -> None:
        self._chan = chan
        self._heartbeat = heartbeat
        self._over = False
        self._arrival: bytes | None = None
        self._validated = trio.Event()
        # The server names a UDP peer by its address (right unless a NAT is in between).
        self.nick = format_address(chan.socket.getsockname())

    async def hello(self, arrival: bytes | None) -> None:
        self._arrival = arrival  # sent once the address is validated
        await self._chan.send(UDP_HELLO)  # the server learns our address

    async def send(self, line: bytes) -> None:
        if not line.strip():
            return  # an empty datagram says nothing
        if line != self.quit:  # leaving must not wait for the validation
            await self._validated.wait()
        await self._chan.send(line)

    def is_quit(self, line: bytes) -> bool:
        if isinstance(proto.classify_datagram_untrusted(line), proto.UdpQuit):
            return True
        return proto.parse_line_untrusted(line) == proto.Quit()

    async def receive(self) -> bytes | None:
        while not self._over:
            datagram = (await self._chan.receive()).rstrip(b"\n")
            token = proto.notice_token_untrusted(datagram)
            if token is None:
                self._over = datagram == proto.BYE  # the server's last word, asked for or not
                return datagram
            await self._chan.send(token)
            if self._arrival and not self._validated.is_set():
                await self._chan.send(self._arrival)
            self._validated.set()
        return None

    async def keep_alive(self) -> None:
        async def beat() -> None:
            await self._chan.send(proto.HEARTBEAT if self._validated.is_set() else UDP_HELLO)

        await send_heartbeats(beat, self._heartbeat)

    async def aclose(self) -> None:
        await self._chan.aclose()
