"""How events look to an IRC client (:class:`IrcRenderer`), one shared renderer per set
of capabilities (:func:`renderer_for`): see :mod:`._irc` for the member."""

from __future__ import annotations

import functools
import time as _time
from collections.abc import Sequence
from typing import ClassVar, Final

from ..._sansio import chat as proto
from ..._sansio import irc
from ._member import Renderer

__all__ = ["IrcRenderer", "fit", "renderer_for"]


def _iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(seconds)) + f".{millis:03d}Z"


class IrcRenderer(Renderer):
    """How events look to an IRC client with the capabilities it negotiated.

    Shared by every client with the same ones (:func:`renderer_for`). A client's own
    lines (without ``echo-message``), joins and parts are left out of what it is sent,
    so its frames depend on the viewer (:attr:`per_viewer`): the fan-out shares a
    batch's frames with the members that get them all (:meth:`shares_with`), and each
    event is rendered once all the same (cached).
    """

    __slots__ = ("batch", "echo", "server", "server_time")

    per_viewer: ClassVar[bool] = True

    def __init__(self, server: str, *, server_time: bool, echo: bool, batch: bool = False) -> None:
        self.server = server
        self.server_time = server_time
        self.echo = echo
        self.batch = batch

    def frames(self, batch: Sequence[bytes], viewer: str) -> tuple[list[bytes], bool]:
        key = proto.nick_key(viewer) if viewer else ""
        frames: list[bytes] = []
        everyone = True
        for data in batch:
            try:
                frame, own, hidden = _cached(self, data)
            except proto.ChatError:
                continue
            if frame is _PER_VIEWER:
                everyone = False
                frame = self.frame(proto.decode_event_untrusted(data), viewer)
            elif hidden and own == key:
                everyone = False
                continue
            if frame:
                frames.append(frame)
        return frames, everyone

    def shares_with(self, batch: Sequence[bytes], viewer: str) -> bool:
        """Whether ``viewer`` gets what everyone gets: the batch holds none of its own
        lines, joins or parts (which it is not sent), nor a direct message."""
        key = proto.nick_key(viewer)
        for data in batch:
            try:
                frame, own, hidden = _cached(self, data)
            except proto.ChatError:
                continue
            if frame is _PER_VIEWER or (hidden and own == key):
                return False
        return True

    def _tags(self, ms: int) -> tuple[tuple[str, str], ...]:
        return (("time", _iso(ms)),) if self.server_time and ms else ()

    def _said(
        self,
        source: str,
        target: str,
        text: str,
        ms: int,
        action: bool = False,
        batch: str = "",
    ) -> bytes:
        tags = self._tags(ms)
        if batch:
            tags = (("batch", batch), *tags)
        src = irc.user_source(source)
        text = irc.from_marks(text)  # IRC's formatting codes again
        room = irc.privmsg_room(src, target, tags_len=0)
        if action:  # each piece an action of its own: "\x01ACTION " and "\x01"
            room -= 9
        pieces = [text] if len(text.encode()) <= room else irc.split_text(text, room)
        if action:
            pieces = [irc.ctcp("ACTION", piece) for piece in pieces]
        return b"".join(irc.render("PRIVMSG", target, p, source=src, tags=tags) for p in pieces)

    def frame(self, event: proto.Shown, viewer: str) -> bytes:
        match event:
            case proto.Message(room, sender, text, _, ms):
                return self._said(sender, room, text, ms)
            case proto.Action(room, sender, text, _, ms):
                return self._said(sender, room, text, ms, action=True)
            case proto.Direct(sender, recipient, text, _, ms):
                own = proto.nick_key(sender) == proto.nick_key(viewer)
                if own and not self.echo and proto.nick_key(recipient) != proto.nick_key(viewer):
                    return b""
                return self._said(sender, irc.to_irc_nick(recipient), text, ms)
            case proto.Joined(room, nick):
                return irc.render("JOIN", room, source=irc.user_source(nick))
            case proto.Left(room, nick):
                return irc.render("PART", room, source=irc.user_source(nick))
            case proto.NickChanged(old, new):
                return irc.render("NICK", irc.to_irc_nick(new), source=irc.user_source(old))
            case proto.Moderation(room, by, action, target, text):
                return self._moderation(event, room, by, action, target, text)
            case proto.Recalled(said):
                return self._recalled(said, viewer)
            case proto.RecallStart(room) if self.batch:
                ref = _batch_ref(room)
                return irc.render("BATCH", f"+{ref}", "chathistory", room, source=self.server)
            case proto.RecallEnd(room) if self.batch:
                return irc.render("BATCH", f"-{_batch_ref(room)}", source=self.server)
            case proto.RecallStart() | proto.RecallEnd() | proto.DayChanged() if self.server_time:
                return b""  # each line carries its time: the client shows the days
        return self._notice_line(proto.render_line(event).decode("utf-8", "replace"))

    def _recalled(self, said: proto.Message | proto.Action | proto.Direct, viewer: str) -> bytes:
        """A line said earlier, at its time (with ``server-time``), in the history's
        batch (with ``batch``)."""
        if not self.batch or isinstance(said, proto.Direct):
            return self.frame(said, viewer)
        ref = _batch_ref(said.room)
        action = isinstance(said, proto.Action)
        return self._said(said.sender, said.room, said.text, said.time, action, batch=ref)

    def _moderation(
        self, event: proto.Moderation, room: str, by: str, action: str, target: str, text: str
    ) -> bytes:
        source = irc.user_source(by)
        if action == "kick" and target:
            nick = irc.to_irc_nick(target)
            reason = fit(text, f":{source} KICK {room} {nick} :")
            return irc.render("KICK", room, nick, reason, source=source)
        if action == "topic":
            topic = fit(text, f":{source} TOPIC {room} :")
            return irc.render("TOPIC", room, topic, source=source)
        if action in ("op", "deop") and target:
            sign = "+" if action == "op" else "-"
            return irc.render("MODE", room, f"{sign}o", irc.to_irc_nick(target), source=source)
        if action == "mode" and target in ("+m", "-m"):
            return irc.render("MODE", room, target, source=source)
        shown = proto.render_line(event).decode("utf-8", "replace")
        return self._notice_line(shown, room)

    def _notice_line(self, text: str, target: str = "*") -> bytes:
        """A server notice, in as many lines as IRC's 512 bytes need."""
        room = irc.privmsg_room(self.server, target, command="NOTICE")
        pieces = irc.split_text(text, room) or [" "]
        return b"".join(irc.render("NOTICE", target, p, source=self.server) for p in pieces)

    def notice(self, text: str) -> bytes:
        return self._notice_line(text)


_PER_VIEWER: Final = b"\0per-viewer"


def fit(text: str, prefix: str) -> str:
    """``text``, cut (at a character, ending in "…") so that ``prefix`` + it + CR LF
    fits IRC's 512 bytes: a topic or a reason, which one line must carry."""
    room = irc.MAX_LINE - 2 - len(prefix.encode())
    if len(text.encode()) <= room:
        return text
    return irc.split_text(text, room - 3)[0].rstrip() + "…"


def _batch_ref(room: str) -> str:
    """The reference of a room's history batch (one at a time on a connection): letters,
    digits and dashes."""
    return "history-" + "".join(c if c.isascii() and c.isalnum() else "-" for c in room[1:])


@functools.lru_cache(maxsize=512)
def _cached(renderer: IrcRenderer, data: bytes) -> tuple[bytes, str | None, bool]:
    """An encoded event's frame for ``renderer`` (or :data:`_PER_VIEWER` when it depends
    on who views it), the nick key of whose own event it is (None: nobody's), and
    whether that one is not sent it."""
    event = proto.decode_event_untrusted(data)
    match event:
        case proto.Message(_, sender) | proto.Action(_, sender):
            return renderer.frame(event, ""), proto.nick_key(sender), not renderer.echo
        case proto.Joined(_, nick) | proto.Left(_, nick):
            return renderer.frame(event, ""), proto.nick_key(nick), True
        case proto.Direct():
            return _PER_VIEWER, None, False
    return renderer.frame(event, ""), None, False


@functools.cache
def renderer_for(server: str, caps: frozenset[str]) -> IrcRenderer:
    """The renderer shared by the clients of ``server`` with capabilities ``caps``."""
    return IrcRenderer(
        server,
        server_time="server-time" in caps,
        echo="echo-message" in caps,
        batch="batch" in caps,
    )
