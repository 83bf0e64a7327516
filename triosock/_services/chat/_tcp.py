"""The TCP line member: ``nc``, ``socat`` and ``telnet`` users.

Input is read with :class:`~triosock._sansio.chat.LineReader` (LF, CRLF, CR NUL; telnet
negotiation refused, erasures kept for the parser, overlong lines refused without
losing sync). Output is one line per event, ending in LF, through an outbox over the
connection: a room's batch is one write.

**Not a chat client.** A chat port must never relay an HTTP request into a room: a web
page can make its visitor's browser send one to ``127.0.0.1:7070``, its body written by
the page (a cross-protocol attack; Redis closes a connection that sends ``POST`` or
``Host:`` for the same reason), and a status probe pointed at the wrong port sends one
too. A connection whose first line is an HTTP request line (see
:class:`~triosock._sansio.chat.LineReader`) gets a short plain ``400 Bad Request`` that
says this is a chat port, and is closed; nothing of the request reaches a room. One
whose first byte begins a TLS handshake (the page sent the browser to ``https://``, with
a server name of its choice) gets a fatal TLS alert and is closed the same way.

An HTTP client sends its request the moment it has connected, so a session waits for
the first line at most :data:`FIRST_LINE_WAIT` seconds before it begins
(:meth:`TCPLineMember.screen`): a request that comes within it is refused before the
session begins, and the room sees nothing at all, neither a join nor a leave nor a
line. (Its guest nick and its subscriptions were taken on arrival, so that nicks and
joins keep the order in which clients arrive; the nick is freed again unannounced, and
only a ``/who`` in that tenth of a second would list it. A room that talks meanwhile
may have its lines sent to the client before the 400.) A client that speaks at once (a
script, telnet's negotiation) begins at once; an ``nc`` user who has not typed yet
gets its welcome a tenth of a second later, which nobody notices, and the wait costs a
connection one timer while it lasts and nothing after. A request that comes later (a
browser that opened the connection ahead of time) is refused all the same, after the
session has begun: the room sees that guest join and leave, and nothing it sent.

**Tags.** ``/tags on`` makes the connection's lines said carry their ids
(:class:`TaggedTCPRenderer`, see :mod:`triosock._sansio.chat._tags`); ``/tags off``
ends them. The member takes the command before the session's rules do, and switches
its renderer (the fan-out renders a batch once per renderer, so both kinds stay shared).
It is answered at once, in order with what is queued, with the history's epoch
(:func:`~triosock._sansio.chat.epoch_line`), which also comes first in every session
begun or resumed on the connection while its tags are on. ``/tags on`` may come before
``/resume`` among a new connection's first lines (both in the first-line wait): the
catch-up is then tagged too, so that a client resumes after what it saw, exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Final

import trio

from ..._errors import TriosockError
from ..._sansio import chat as proto
from ..._transport.outbox import Outbox, StreamSink
from ..._transport.tcp import TCPConnection
from ._ending import EndReason
from ._member import Member, Renderer

__all__ = ["TCPLineMember", "TCPRenderer", "TaggedTCPRenderer"]

#: How many bytes one read asks for.
RECEIVE_SIZE = 64 * 1024
#: The most bytes of one read the line reader takes at a time: the rest waits until the
#: session has carried out (and paced) what these gave. A 64 KiB read of telnet commands
#: is 32,768 items and 60-170 ms of parsing at once; in slices the parsing comes a little
#: at a time, between the other tasks, and the items waiting are a few thousand at most.
FEED_SLICE = 4096
#: Seconds a closing connection keeps reading (and discarding) what the peer still sends.
LINGER = 2.0
#: Seconds a new connection's session waits for its first line before it begins.
FIRST_LINE_WAIT = 0.1
_HTTP_BODY = b"400 Bad Request: this is a chat port (nc, telnet); it does not speak HTTP\n"
#: What a client whose first line is an HTTP request line gets before the close.
BAD_REQUEST: Final = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n%s" % (len(_HTTP_BODY), _HTTP_BODY)
)
_REFUSED = "an HTTP request on the chat port"
_REFUSED_TLS = "a TLS handshake on the chat port"
#: What a client whose first byte began a TLS handshake gets: a fatal TLS alert
#: (handshake_failure), so that the browser says the handshake failed.
TLS_ALERT: Final = b"\x15\x03\x01\x00\x02\x02\x28"


class TCPRenderer(Renderer):
    """Lines as :func:`~triosock._sansio.chat.render_line` makes them, each ending in LF."""

    __slots__ = ()

    def frame(self, event: proto.Shown, viewer: str) -> bytes:
        return proto.render_line(event, viewer=viewer or None) + b"\n"


class TaggedTCPRenderer(Renderer):
    """Lines as :func:`~triosock._sansio.chat.render_tagged_line` makes them (a line
    said starts with its id and key), each ending in LF: after ``/tags on``."""

    __slots__ = ()

    def frame(self, event: proto.Shown, viewer: str) -> bytes:
        return proto.render_tagged_line(event, viewer=viewer or None) + b"\n"


_RENDERER = TCPRenderer()
_TAGGED = TaggedTCPRenderer()
_TAGS_OFF = proto.render_line(proto.Notice(proto.TAGS_OFF)) + b"\n"


def _tags_on(item: object) -> bool:
    """Whether ``item`` is the line ``/tags on``."""
    return isinstance(item, bytes) and proto.parse_line_untrusted(item) == proto.Tags(True)


class TCPLineMember(Member):
    """A chat user on a TCP connection, speaking lines.

    Args:
      conn: the connection (from ``serve_tcp``).
      max_line_length: the longest line accepted, in bytes.
    """

    kind = "tcp"
    renderer: Renderer = _RENDERER

    def __init__(self, conn: TCPConnection, max_line_length: int) -> None:
        self.conn = conn
        self.label = conn.peer
        self.outbox = Outbox(StreamSink(conn))
        self._reader = proto.LineReader(max_line_length, refuse_http=True)
        self._ended = False
        self._early: list[object] | None = None  # what screen() read, for receive()
        self._unfed = b""  # what was read and not fed to the reader yet (FEED_SLICE)
        self._epoch = ""  # the history's, as the last greeting was told it

    async def screen(self) -> str | None:
        """Wait at most :data:`FIRST_LINE_WAIT` seconds for the first line; refuse the
        client if it is an HTTP request (see the module docstring). Its farewell is
        then :data:`BAD_REQUEST`.

        Raises:
          trio.BrokenResourceError: the connection failed (or its TLS handshake did).
        """
        stream = self.conn.stream
        if isinstance(stream, trio.SSLStream):
            # A read cancelled during the handshake breaks a TLS stream: finish the
            # handshake first, bounded by the idle timeout, then wait for the line.
            await stream.do_handshake()
        reader = self._reader
        early: list[object] = []
        with trio.move_on_after(FIRST_LINE_WAIT):
            # a /tags on first: the /resume that may follow it is a first line too
            while reader.screening or (early and all(map(_tags_on, early))):
                data = await self._next_slice()
                if not data:
                    break  # the end of input: receive() reads it again
                early += reader.feed(data)
        if reader.refused:  # its farewell is the answer: see farewell()
            return _REFUSED_TLS if any(isinstance(i, proto.TlsHello) for i in early) else _REFUSED
        self._early = early + reader.take_answers()  # answered, each paced as a line
        return None

    def take_resume(self) -> proto.ResumeRequest | None:
        """The first lines' ``/resume``, if any; a ``/tags on`` before it is carried
        out first (its answer is the greeting)."""
        early = self._early
        while early and _tags_on(early[0]):
            self.renderer = _TAGGED
            early = self._early = early[1:]
        if early and isinstance(early[0], bytes):
            command = proto.parse_line_untrusted(early[0])
            if isinstance(command, proto.Resume):
                self._early = early[1:]
                return proto.ResumeRequest(command.token, command.after, command.epoch)
        return None

    def greeting(self, nick: str, room: str, token: str, epoch: str) -> bytes | None:
        """With tags on, the history's epoch (see the module docstring); else none."""
        self._epoch = epoch
        return self._epoch_line() if self.renderer is _TAGGED else None

    def history_reset(self, epoch: str) -> bytes | None:
        """With tags on, the new epoch (the ids the client holds mean nothing now)."""
        self._epoch = epoch
        return self._epoch_line() if self.renderer is _TAGGED else None

    def _epoch_line(self) -> bytes:
        return proto.epoch_line(self._epoch) + b"\n"

    async def receive(self) -> Sequence[object] | None:
        early = self._early
        if early is not None:  # the first burst: what screen() read
            self._early = None
            if early:
                return early
        reader = self._reader
        while not self._ended:
            data = await self._next_slice()
            if data:
                lines = reader.feed(data)
            else:
                self._ended = True
                lines = reader.feed_eof()
            answers = reader.take_answers()  # items too: each paced as a line is
            items: Sequence[object] = [*lines, *answers] if answers else lines
            if items:
                return items
        return None

    async def _next_slice(self) -> bytes:
        """At most :data:`FEED_SLICE` bytes for the reader: what the last read left, or a
        new read (b"" at the end of input). A cancel point when it reads."""
        data = self._unfed
        if not data:
            data = bytes(await self.conn.receive_some(RECEIVE_SIZE))
        self._unfed = data[FEED_SLICE:]
        return data[:FEED_SLICE]

    def handle(self, session: proto.ChatSession, item: object, now: float) -> list[proto.Effect]:
        if isinstance(item, bytes):
            tags = proto.parse_line_untrusted(item) if item[:1] == b"/" else None
            if isinstance(tags, proto.Tags):  # the member's, not the session's
                self.renderer = _TAGGED if tags.on else _RENDERER
                answer = self._epoch_line() if tags.on else _TAGS_OFF
                return session.receive_other(proto.Reply(answer), now)
            return session.receive_line(item, now)
        if isinstance(item, proto.Overlong):
            return session.receive_overlong(item.size, now)
        if isinstance(item, proto.AreYouThere):
            return session.receive_other(proto.Tell("yes, the server is here"), now)
        if isinstance(item, proto.Negotiation):
            return session.receive_other(proto.Reply(item.answer), now)
        if isinstance(item, proto.HttpRequest):  # after the first-line wait
            return [proto.Close("refused", _REFUSED)]
        if isinstance(item, proto.TlsHello):
            return [proto.Close("refused", _REFUSED_TLS)]
        raise TypeError(f"not a TCP input item: {item!r}")

    def farewell(self, reason: EndReason, detail: str) -> bytes | None:
        if reason == "refused":  # answered in its own protocol
            return TLS_ALERT if detail == _REFUSED_TLS else BAD_REQUEST
        return super().farewell(reason, detail)

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

    def idled(self) -> str | None:
        if self.conn.idle_expired:
            return f"{self.conn.server.idle_timeout:g} s"
        return None

    def cancelled_by(self) -> str | None:
        idle = self.idled()
        return f"idle for {idle}" if idle is not None else super().cancelled_by()

    def stop_scope(self) -> trio.CancelScope:
        return self.conn.stop_scope()

    @property
    def stopping(self) -> bool:
        return self.conn.stopping
