"""The WebSocket member: the chat page in a browser, ``websocat``, ``python -m websockets``.

Input is one WebSocket message at a time, read as
:func:`~triosock._sansio.chat.parse_web_message_untrusted` says (JSON events, or plain
text lines as on TCP); each JSON line is parsed when its turn comes, so a big message
of them costs the server no more at once than its pacing lets through. Output is JSON
lines (see :mod:`triosock._sansio.chat._web`): what a fan-out pass puts into the
member's outbox leaves as one text message, so a busy room costs one WebSocket write
per member per pass, not one per line.

The member gets the same bounded outbox and the same rules as a TCP member (more than
``max_backlog`` bytes waiting, or a socket that takes nothing for ``stall_timeout``
seconds, disconnects it). websockets itself refuses what is too big (1009) and text that
is not UTF-8 (1007). The session's end closes the connection with a code that says why:
1000 after ``/quit``, 1001 when the server stops, 1008 when the member was too slow.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.frames import CloseCode

from ..._sansio import chat as proto
from ..._sansio.chat._web import encode_json
from ..._transport.websocket import WebSocketPeer, text_frame
from ._member import EndReason, Member, Renderer

__all__ = ["WebSocketMember", "WebSocketRenderer"]

#: Seconds the closing handshake may take at the end of a session.
CLOSE_TIMEOUT = 2.0
#: Seconds a new connection's session waits for its first message before it begins; and
#: when its URL says it comes to resume (``/ws?resume=1``, as the page's does), so that
#: a slow link's resume still comes before anything is said of the connection's own.
FIRST_MESSAGE_WAIT = 0.1
RESUMING_WAIT = 2.0
#: The most bytes of events joined into one message (a bigger event is one message).
MESSAGE_LIMIT = 64 * 1024


class WebSocketRenderer(Renderer):
    """One JSON line per event; the lines of a batch share messages of at most
    :data:`MESSAGE_LIMIT` bytes. The same for every viewer (a client tells its own
    direct messages apart by its nick), so a room's batch is framed once for everyone.

    :meth:`frame` gives a JSON line; :meth:`join` and :meth:`notice` give whole
    WebSocket frames, ready for the outbox.
    """

    __slots__ = ()

    def frame(self, event: proto.Shown, viewer: str) -> bytes:
        return proto.render_json(event)

    def join(self, frames: list[bytes]) -> bytes:
        if len(frames) == 1:
            return text_frame(frames[0])
        messages: list[bytes] = []
        part: list[bytes] = []
        size = 0
        for frame in frames:
            if part and size + len(frame) > MESSAGE_LIMIT:
                messages.append(text_frame(b"".join(part)))
                part, size = [], 0
            part.append(frame)
            size += len(frame)
        messages.append(text_frame(b"".join(part)))
        return b"".join(messages)

    def notice(self, text: str) -> bytes:
        return text_frame(self.frame(proto.Notice(text), ""))

    def everyone(self, event: proto.Event) -> bool:
        return True


_RENDERER = WebSocketRenderer()
#: The close code (and reason) that says why a session ended; any other end closes
#: normally, without a reason.
_CLOSES: dict[EndReason, tuple[int, str]] = {
    "quit": (CloseCode.NORMAL_CLOSURE, "bye"),
    "stopping": (CloseCode.GOING_AWAY, "server stopping"),
    "slow": (CloseCode.POLICY_VIOLATION, "too slow: stopped reading"),
}
_NORMAL: tuple[int, str] = (CloseCode.NORMAL_CLOSURE, "")
_BINARY_REFUSED = "binary messages are not accepted: send text (a line, or a JSON event)"


class WebSocketMember(Member):
    """A chat user on a WebSocket connection.

    Args:
      peer: the connection (from ``serve_websocket``).
    """

    kind = "ws"
    renderer = _RENDERER
    tells_token = False  # its hello has it

    def __init__(self, peer: WebSocketPeer) -> None:
        self.peer = peer
        self.connection = peer.connection
        self.label = peer.peer
        self.outbox = peer.outbox  # websockets' own frames go through it too
        self._close = _NORMAL
        self._early: Sequence[object] | None = None  # what screen() read, for receive()
        self._early_error: trio.BrokenResourceError | None = None

    def greeting(self, nick: str, room: str, token: str, epoch: str) -> bytes | None:
        return text_frame(proto.hello_json(nick, room, token, epoch))

    def history_reset(self, epoch: str) -> bytes | None:
        return text_frame(encode_json({"epoch": epoch, "type": "epoch"}))

    async def screen(self) -> str | None:
        """Wait at most :data:`FIRST_MESSAGE_WAIT` seconds (:data:`RESUMING_WAIT` when the
        URL has ``resume=1``) for the first message, so that a client resuming a session
        (its first message a ``resume``) gets it back before anything is said of this
        connection's own session. Serves every client."""
        query = self.peer.path.partition("?")[2].split("&")
        with trio.move_on_after(RESUMING_WAIT if "resume=1" in query else FIRST_MESSAGE_WAIT):
            try:
                self._early = await self.receive()
            except trio.BrokenResourceError as exc:
                self._early_error = exc
        return None

    def take_resume(self) -> proto.ResumeRequest | None:
        early = self._early
        if not early:
            return None
        first = early[0]
        if isinstance(first, str):
            first = proto.parse_json_line_untrusted(first)
        elif isinstance(first, bytes):
            command = proto.parse_line_untrusted(first)
            first = (
                proto.ResumeRequest(command.token) if isinstance(command, proto.Resume) else None
            )
        if isinstance(first, proto.ResumeRequest):
            self._early = list(early[1:])
            return first
        return None

    async def receive(self) -> Sequence[object] | None:
        early, error = self._early, self._early_error
        if error is not None:
            self._early_error = None
            raise error
        if early is not None:  # the first burst: what screen() read
            self._early = None
            return early
        try:
            message = await self.connection.recv()
        except ConnectionClosedOK:
            return None
        except ConnectionClosed as exc:  # a protocol error (1007, 1009) or a lost peer
            raise trio.BrokenResourceError(f"the WebSocket closed: {exc}") from exc
        if isinstance(message, str):  # a JSON line is parsed when its turn comes
            return proto.split_web_message_untrusted(message)
        return [proto.BadEvent(_BINARY_REFUSED)]

    def handle(self, session: proto.ChatSession, item: object, now: float) -> list[proto.Effect]:
        if isinstance(item, str):
            item = proto.parse_json_line_untrusted(item)
        if isinstance(item, bytes):
            return session.receive_line(item, now)
        if isinstance(item, proto.ResumeRequest):
            return session.receive_resume(item, now)
        if isinstance(item, proto.BadEvent):  # refused: a token all the same
            return session.receive_other(proto.Tell(f"refused: {item.reason}"), now)
        raise TypeError(f"not a WebSocket input item: {item!r}")

    def farewell(self, reason: EndReason, detail: str) -> bytes | None:
        """The chat's farewell as a text message; the close that follows says why."""
        self._close = _CLOSES.get(reason, _NORMAL)
        line = super().farewell(reason, detail)
        return None if line is None else text_frame(line)

    async def linger(self) -> None:
        """The closing handshake, with the code that says why (at most
        :data:`CLOSE_TIMEOUT` seconds; websockets aborts the connection after that)."""
        code, reason = self._close
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self.connection.aclose(code, reason)

    def stop_scope(self) -> trio.CancelScope:
        return self.peer.stop_scope()

    @property
    def stopping(self) -> bool:
        return self.peer.stopping
