"""The TCP line member: ``nc``, ``socat`` and ``telnet`` users.

Input is read with :class:`~triosock._sansio.chat.LineReader` (LF, CRLF, CR NUL; telnet
negotiation refused, erasures kept for the parser, overlong lines refused without
losing sync). Output is one line per event, ending in LF, through an outbox over the
connection: a room's batch is one write.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import trio

from ..._errors import TriosockError
from ..._sansio import chat as proto
from ..._transport.outbox import Outbox, StreamSink
from ..._transport.tcp import TCPConnection
from ._member import Member, Renderer

__all__ = ["TCPLineMember", "TCPRenderer"]

#: How many bytes one read asks for.
RECEIVE_SIZE = 64 * 1024
#: Seconds a closing connection keeps reading (and discarding) what the peer still sends.
LINGER = 2.0


class TCPRenderer(Renderer):
    """Lines as :func:`~triosock._sansio.chat.render_line` makes them, each ending in LF."""

    __slots__ = ()

    def frame(self, event: proto.Event, viewer: str) -> bytes:
        return proto.render_line(event, viewer=viewer or None) + b"\n"


_RENDERER = TCPRenderer()


class TCPLineMember(Member):
    """A chat user on a TCP connection, speaking lines.

    Args:
      conn: the connection (from ``serve_tcp``).
      max_line_length: the longest line accepted, in bytes.
    """

    kind = "tcp"
    renderer = _RENDERER

    def __init__(self, conn: TCPConnection, max_line_length: int) -> None:
        self.conn = conn
        self.label = conn.peer
        self.outbox = Outbox(StreamSink(conn))
        self._reader = proto.LineReader(max_line_length)
        self._ended = False

    async def receive(self) -> Sequence[object] | None:
        reader = self._reader
        while not self._ended:
            data = await self.conn.receive_some(RECEIVE_SIZE)
            if data:
                items = reader.feed(bytes(data))
            else:
                self._ended = True
                items = reader.feed_eof()
            replies = reader.take_replies()
            if replies:
                self.outbox.put(replies, 0)  # never dropped: the server bounds these
                return items  # even if empty: the server looks at the outbox after each
            if items:
                return items
        return None

    def handle(self, session: proto.ChatSession, item: object, now: float) -> list[proto.Effect]:
        if isinstance(item, bytes):
            return session.receive_line(item, now)
        if isinstance(item, proto.Overlong):
            return session.receive_overlong(item.size, now)
        if isinstance(item, proto.AreYouThere):
            return [proto.Tell("yes, the server is here")]
        raise TypeError(f"not a TCP input item: {item!r}")

    async def linger(self) -> None:
        """Half-close after the last line, then discard input until the peer closes (at
        most :data:`LINGER` seconds). Closing a socket that has unread input sends a
        reset, and a reset destroys what the peer has not read yet: the last lines and
        the farewell. A user pasting when the server stops still gets them whole."""
        with trio.move_on_after(LINGER):
            try:
                await self.conn.send_eof()
                while await self.conn.receive_some(RECEIVE_SIZE):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, TriosockError):
                pass  # gone already, or TLS (which cannot half-close)

    def hold_idle(self) -> contextlib.AbstractContextManager[None]:
        return self.conn.hold_idle()

    def cancelled_by(self) -> str | None:
        if self.conn.idle_expired:
            return f"idle for {self.conn.server.idle_timeout:g} s"
        return super().cancelled_by()

    def stop_scope(self) -> trio.CancelScope:
        return self.conn.stop_scope()

    @property
    def stopping(self) -> bool:
        return self.conn.stopping
