"""The IRC member: irssi, WeeChat, HexChat and every IRC library in the chat's rooms.

An IRC client registers first (:meth:`IrcMember.register`, before its session exists:
a client that never registers costs no nick and no room): ``CAP LS``/``REQ``/``END``,
``NICK``, ``USER``, and ``AUTHENTICATE`` (SASL ``PLAIN``, checked against the chat's
accounts as ``/login`` is, with its pacing of failures). ``PASS`` is ignored. It gets
at most :data:`REGISTRATION_TIMEOUT` seconds and :data:`REGISTRATION_LINES` lines to
do it; then its session begins as any other's, with the nick it asked for (``433``
while another session has it, or while it is a registered nick and the client did
not log in to it), and the welcome numerics ``001``-``005`` and ``422``.

Its input is IRC messages (:mod:`triosock._sansio.irc`); the session's rules are
:class:`~triosock._sansio.irc.IrcChatSession`'s, the chat's own. A message longer
than IRC's 512 bytes is refused with ``417``, never cut. ``PING`` is answered at
once; an idle client is sent a ``PING`` after :data:`PING_INTERVAL` seconds, and
dropped (``ERROR :Ping timeout``) when :data:`PING_TIMEOUT` more pass without a word.

Its output is one IRC line per event (:class:`IrcRenderer`): ``PRIVMSG`` for lines
said (several, split at characters, for a line longer than one IRC message can
carry), ``JOIN``, ``PART``, ``NICK``, ``KICK``, ``TOPIC`` and ``MODE`` for what
happens in the room, ``NOTICE`` for the server's notices. With ``server-time`` every
line said carries its time (``@time=``), so history shown on joining has its own (and
the notices that frame earlier lines for other clients are left out); with ``batch``
the earlier lines come as a ``chathistory`` batch.
Without ``echo-message`` the client is not sent its own lines (an IRC client shows
them itself); its own joins and parts it is told of directly, in order with the
room's earlier lines (:class:`~triosock._sansio.irc.IrcChatSession`).

An IRC client's session ends with its connection: its nick is free when it comes
back (it is not kept for a resume).
"""

from __future__ import annotations

import contextlib
import time as _time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import ClassVar, Final

import trio

from ..._sansio import chat as proto
from ..._sansio import irc
from ..._sansio.rooms import MAX_TOPIC
from ..._transport.outbox import Outbox, StreamSink
from ..._transport.tcp import TCPConnection
from ._ending import EndReason, farewell_event
from ._irc_render import IrcRenderer, fit, renderer_for
from ._member import Member

__all__ = [
    "PING_INTERVAL",
    "PING_TIMEOUT",
    "REGISTRATION_LINES",
    "REGISTRATION_TIMEOUT",
    "IrcMember",
    "IrcRenderer",
]

#: How many bytes one read asks for.
RECEIVE_SIZE: Final = 16 * 1024
#: Seconds a client has to register, and the most lines it may send before it has.
REGISTRATION_TIMEOUT: Final = 60.0
REGISTRATION_LINES: Final = 50
#: Seconds of silence before the server sends a PING, and then before it gives up.
PING_INTERVAL: Final = 120.0
PING_TIMEOUT: Final = 60.0
#: The capabilities the listener offers.
CAPS: Final[dict[str, str | None]] = {
    "server-time": None,
    "message-tags": None,
    "echo-message": None,
    "batch": None,
    "sasl": "PLAIN",
}

#: What checks a SASL login: (member, account key, password) -> the account's nick, or
#: why not.
LoginCheck = Callable[["IrcMember", str, str], Awaitable["str | tuple[str, str]"]]
#: What checks a nick asked for at registration: (chat nick, account key or None) -> why
#: it may not be taken, or None.
NickCheck = Callable[[str, "str | None"], Awaitable["str | None"]]


#: When this process began serving, for ``003``.
_STARTED: Final = _time.strftime("%Y-%m-%d %H:%M:%S UTC", _time.gmtime())


class IrcMember(Member):
    """A chat user on an IRC connection.

    Args:
      conn: the connection (from ``serve_tcp``).
      server: the server's name in IRC lines.
      max_line_length: the chat's longest line, in bytes (IRC's own limit is lower).
      check_login: checks a SASL login against the accounts.
      check_nick: says why a nick may not be taken at registration, if so.
    """

    kind = "irc"
    welcome = False
    tells_token = False
    resumable: ClassVar[bool] = False

    def __init__(
        self,
        conn: TCPConnection,
        server: str,
        max_line_length: int,
        check_login: LoginCheck,
        check_nick: NickCheck,
    ) -> None:
        self.conn = conn
        self.label = conn.peer
        self.server = server
        self.outbox = Outbox(StreamSink(conn))
        self.renderer = renderer_for(server, frozenset())
        self._reader = irc.IrcReader()
        self._registration = irc.Registration(server, CAPS)
        self._check_login = check_login
        self._check_nick = check_nick
        self._early: list[object] = []
        self._ended = False
        self._pinged = False
        self._ping_timed_out = False
        self._stop: trio.CancelScope | None = None
        #: The account a SASL login gave the client, if any (its key), and its nick.
        self.account: str | None = None
        self.account_nick: str | None = None
        self.irc_nick = "*"
        self.max_line_length = max_line_length

    # -- registration ----------------------------------------------------------------

    async def register(self) -> bool:
        """Read the client's registration and answer it; whether it registered (else
        it quit, broke, or took too long or too many lines, and was told why).

        A cancel point.
        """
        lines = 0
        with trio.move_on_after(REGISTRATION_TIMEOUT):
            while True:
                try:
                    data = await self.conn.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return False
                items = self._reader.feed(bytes(data)) if data else self._reader.feed_eof()
                for index, item in enumerate(items):
                    lines += 1
                    if lines > REGISTRATION_LINES:
                        await self._refuse(f"{REGISTRATION_LINES} lines without registering")
                        return False
                    done = await self._register_item(item)
                    if done is not None:
                        if done:
                            self._early = list(items[index + 1 :])
                        else:
                            await self._flush()
                        return done
                await self._flush()
                if not data:
                    return False
        await self._refuse(f"not registered within {REGISTRATION_TIMEOUT:g} seconds")
        return False

    async def _register_item(self, item: object) -> bool | None:
        """One item of the registration: True once registered, False when it quit."""
        if isinstance(item, irc.Overlong):
            self.outbox.put(self._numeric("417", "Input line was too long"), 0)
            return None
        if isinstance(item, irc.Malformed):
            self.outbox.put(self._notice(f"malformed line: {item.reason}"), 0)
            return None
        assert isinstance(item, irc.IrcMessage)
        for answer in self._registration.receive(item):
            match answer:
                case irc.Reply(data):
                    self.outbox.put(data, 0)
                case irc.SaslPlain(_, authcid, password):
                    key = proto.nick_key(authcid)
                    checked = await self._check_login(self, key, password)
                    if not isinstance(checked, str):
                        # logged in to an account whose nick another session holds: it
                        # could not have it, so the login fails (a client would believe
                        # it is identified)
                        held = await self._check_nick(checked[1], checked[0])
                        if held is not None:
                            checked = f"{checked[1]} is in use by another session"
                    ok = not isinstance(checked, str)
                    nick = "" if isinstance(checked, str) else checked[1]
                    if not isinstance(checked, str):
                        self.account, self.account_nick = checked
                    for reply in self._registration.sasl_result(ok, nick or None, self.irc_nick):
                        self.outbox.put(reply.data, 0)
                    if isinstance(checked, str):
                        self.outbox.put(self._notice(f"login failed: {checked}"), 0)
                case irc.Registered(nick, _, _, caps):
                    if self.account_nick is not None:  # a login takes its account's nick
                        nick = irc.to_irc_nick(self.account_nick)
                    chat_nick = irc.from_irc_nick(nick)
                    try:
                        proto.validate_nick(chat_nick)
                    except proto.ChatError as exc:  # a UDP peer's name too: no user takes it
                        for reply in self._registration.nick_erroneous(nick, str(exc)):
                            self.outbox.put(reply.data, 0)
                        continue
                    why = await self._check_nick(chat_nick, self.account)
                    if why is not None:
                        for reply in self._registration.nick_taken(nick, why):
                            self.outbox.put(reply.data, 0)
                        continue
                    self.irc_nick = nick
                    self.preferred_nick = chat_nick
                    self.renderer = renderer_for(self.server, caps)
                    return True
                case irc.Quit():
                    self.outbox.put(irc.render("ERROR", "Closing link: quit before registering"), 0)
                    return False
        return None

    async def _refuse(self, why: str) -> None:
        self.outbox.put(irc.render("ERROR", f"Closing link: {why}"), 0)
        await self._flush()

    async def _flush(self) -> None:
        with trio.move_on_after(5), contextlib.suppress(Exception):  # gone: the caller ends it
            await self.outbox.flush(stall_timeout=5)

    def _numeric(self, code: str, *params: str) -> bytes:
        return irc.numeric(code, self.irc_nick, *params, server=self.server)

    def _notice(self, text: str) -> bytes:
        return irc.render("NOTICE", self.irc_nick, text, source=self.server)

    # -- the session -------------------------------------------------------------------

    def new_session(
        self,
        presence: proto.Presence,
        *,
        max_line_length: int,
        rate: float | None,
        burst: int,
        now: float,
    ) -> proto.ChatSession:
        """An IRC client's rules (:class:`~triosock._sansio.irc.IrcChatSession`)."""
        return irc.IrcChatSession(
            presence,
            server=self.server,
            max_line_length=max_line_length,
            rate=rate,
            burst=burst,
            now=now,
        )

    def greeting(self, nick: str, room: str, token: str, epoch: str) -> bytes | None:
        """The welcome numerics ``001``-``005``, and ``422`` (no MOTD)."""
        self.irc_nick = irc.to_irc_nick(nick)
        lines = irc.welcome(
            self.server,
            self.irc_nick,
            network="triosock",
            version="triosock",
            isupport=ISUPPORT,
            created=_STARTED,
            channel_modes="bmo",
            param_modes="bo",
        )
        lines.append(self._numeric("422", "MOTD File is missing"))
        return b"".join(lines)

    marks_operators = True

    def listed(
        self,
        session: proto.ChatSession,
        room: str,
        nicks: list[str],
        away: Collection[str],
        operators: frozenset[str],
    ) -> list[proto.Effect]:
        """``NAMES`` and ``WHO`` with ``@`` before the room's operators."""
        assert isinstance(session, irc.IrcChatSession)
        return session.listed_users(room, nicks, away, operators=operators)

    def after_entering(self, session: proto.ChatSession) -> list[proto.Effect]:
        """The room's names (``353``, ``366``), after its topic, as IRC's JOIN has them."""
        assert isinstance(session, irc.IrcChatSession)
        return session.ask_names(session.room)

    def told_topic(self, room: str, topic: str, by: str) -> list[proto.Effect]:
        """``332``, or ``331`` when there is none (no ``333``: the record keeps who set
        it, not when)."""
        if not topic:
            return [proto.Reply(self._numeric("331", room, "No topic is set"))]
        topic = fit(topic, f":{self.server} 332 {self.irc_nick} {room} :")
        return [proto.Reply(self._numeric("332", room, topic))]

    def told_mode(self, room: str, moderated: bool) -> list[proto.Effect]:
        """``324``: the room's modes."""
        return [proto.Reply(self._numeric("324", room, "+m" if moderated else "+"))]

    async def receive(self) -> Sequence[object] | None:
        early = self._early
        if early:
            self._early = []
            return early
        while not self._ended:
            wait = PING_TIMEOUT if self._pinged else PING_INTERVAL
            with trio.move_on_after(wait):
                data = await self.conn.receive_some(RECEIVE_SIZE)
                self._pinged = False
                if not data:
                    self._ended = True
                    return self._reader.feed_eof() or None
                items = self._reader.feed(bytes(data))
                if items:
                    return items
                continue
            if self._pinged:  # ended as an idle timeout ends the input: see idled()
                self._ping_timed_out = True
                if self._stop is not None:
                    self._stop.cancel()
                await trio.lowlevel.checkpoint()
                return None
            self._pinged = True
            self.outbox.put(irc.render("PING", self.server), 0)
        return None

    def handle(self, session: proto.ChatSession, item: object, now: float) -> list[proto.Effect]:
        assert isinstance(session, irc.IrcChatSession)
        if isinstance(item, irc.IrcMessage):
            try:
                return self._message(session, item, now)
            except ValueError as exc:  # a reply that cannot be rendered: said, not fatal
                unknown = self._numeric("400", item.command[:32], f"Could not answer: {exc}")
                return session.receive_other(proto.Reply(unknown), now)
        if isinstance(item, irc.Overlong):
            too_long = self._numeric("417", "Input line was too long")
            return session.receive_other(proto.Reply(too_long), now)
        if isinstance(item, irc.Malformed):
            return session.receive_other(proto.Tell(f"malformed line: {item.reason}"), now)
        raise TypeError(f"not an IRC input item: {item!r}")

    def _message(
        self, session: irc.IrcChatSession, item: irc.IrcMessage, now: float
    ) -> list[proto.Effect]:
        command = item.command
        if command == "PING":  # costs a token, as every line does
            token = item.params[0] if item.params else ""
            pong = irc.render("PONG", self.server, token, source=self.server)
            return session.receive_other(proto.Reply(pong), now)
        if command == "PONG":  # an answer to the server's PING: free, as a heartbeat
            return []
        if command in ("CAP", "AUTHENTICATE"):
            return session.receive_other(proto.Reply(self._cap(item)), now)
        return session.receive_message(item, now)

    def _cap(self, message: irc.IrcMessage) -> bytes:
        """CAP after registration: answered; an ACK changes what the client is sent."""
        out = b""
        for answer in self._registration.receive(message):
            if isinstance(answer, irc.Reply):
                out += answer.data
        self.renderer = renderer_for(self.server, self._registration.caps)
        return out

    def farewell(self, reason: EndReason, detail: str) -> bytes | None:
        """``ERROR`` with the reason, as IRC servers close a link."""
        if reason == "idle":
            return irc.render("ERROR", f"Closing link: Ping timeout: {detail}")
        event = farewell_event(reason, detail)
        text = "" if event is None else proto.render_line(event).decode("utf-8", "replace")
        why = f"Closing link: {text.removeprefix('-!- ') or reason}"
        return irc.render("ERROR", fit(why, "ERROR :"))

    async def linger(self) -> None:
        with trio.move_on_after(2):
            try:
                await self.conn.send_eof()
                while await self.conn.receive_some(RECEIVE_SIZE):
                    pass
            except Exception:
                pass  # gone already, or TLS (which cannot half-close)

    def idled(self) -> str | None:
        if self._ping_timed_out:
            return f"{PING_INTERVAL + PING_TIMEOUT:g} seconds"
        if self.conn.idle_expired:
            return f"{self.conn.server.idle_timeout:g} s"
        return None

    def cancelled_by(self) -> str | None:
        idle = self.idled()
        return f"idle for {idle}" if idle is not None else super().cancelled_by()

    def hold_idle(self) -> contextlib.AbstractContextManager[None]:
        return self.conn.hold_idle()

    def stop_scope(self) -> trio.CancelScope:
        self._stop = self.conn.stop_scope()  # cancelled by the ping timeout too
        return self._stop

    @property
    def stopping(self) -> bool:
        return self.conn.stopping


#: What ``005`` tells clients.
ISUPPORT: Final[dict[str, str | None]] = {
    "CASEMAPPING": "ascii",
    "CHANTYPES": "#",
    "CHANLIMIT": "#:1",
    "CHANMODES": "b,,,m",
    "PREFIX": "(o)@",
    "NICKLEN": str(proto.MAX_NICK_LENGTH),
    "CHANNELLEN": str(irc.CHANNELLEN),
    "TOPICLEN": str(MAX_TOPIC),
    "LINELEN": "512",
    "NETWORK": "triosock",
    "UTF8ONLY": None,
}
