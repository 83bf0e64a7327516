"""The chat's rules for one session, sans-IO: input in, effects out.

:class:`ChatSession` is the state of one user (session id, nick, room, rate limit) and
the rules of what each input means. It never does IO: it is fed what the user sent and
the answers to the questions it asked, and returns :data:`Effect` lists for the service
to carry out, in order::

    session = ChatSession(presence, max_line_length=4096, rate=50, burst=100, now=0)
    session.start()                          # [Tell(welcome), Publish(room, Joined)]
    session.receive_line(b"/nick alice", now)  # [Rename("alice")]
    session.renamed("alice", ok=True)        # [Publish(room, NickChanged(...))]

Effects:

==========================  ===========================================================
:class:`Pause`              wait this long before carrying out the rest (the rate limit)
:class:`Publish`            publish the event on the topic (a room's, or an inbox)
:class:`Tell`               a notice for this user only, after everything already
                            queued for it (the user sees lines in the order they were
                            produced for it)
:class:`Reply`              bytes for this user's transport as they are (a telnet
                            answer), never dropped
:class:`Rename`             ask the directory for the nick; answer with :meth:`renamed`
:class:`Move`               move to the room (subscription and directory); then call
                            :meth:`moved`
:class:`Lookup`             find the nick's session; answer with :meth:`found`
:class:`ListUsers`          ask who is in the room; answer with :meth:`listed_users`
:class:`ListRooms`          ask for the rooms; answer with :meth:`listed_rooms`
:class:`Replay`             the session is entering the room: subscribe it, show it the
                            room's last lines (as many as the server shows on joining),
                            then its live lines, none missing, none twice. It comes
                            before the session's own join line: until it is carried
                            out the subscription is held, and a session publishing to
                            a room it holds would wait for itself
:class:`Recall`             show the room's last ``count`` lines again (``/history``),
                            after what is already queued
:class:`Reattach`           the user asks for a detached session back (``/resume``): the
                            service checks the token and carries it out
:class:`Close`              end the session (the user said ``/quit`` or ``quit``, or a
                            member refused its client)
:class:`CreateAccount`      register the nick held with the password (``/register``)
:class:`LogIn`              take the registered nick if the password is its
                            (``/login``); then call :meth:`logged_in`
:class:`ChangePassword`     ``/password``: the service checks the old one
:class:`LogOut`             leave the account (``/logout``): the service renames the
                            session to a guest nick
:class:`Act`                a room operator's command (``/kick``, ``/ban``, ...): the
                            service checks the user's rank and carries it out
==========================  ===========================================================

The account effects carry a password: they are never logged or published, and their
``repr`` leaves it out.

Rules beyond the command syntax (:mod:`._commands`) and the names (:mod:`._names`):

* **One line limit.** A line (or UDP datagram, or WebSocket message) longer than
  ``max_line_length`` bytes, not counting its terminator, is refused with a notice that
  names the limit; the session goes on. Nothing is ever cut short.
* **UDP.** ``^hb^`` and ``quit`` are the dialect's (see :mod:`._udp`); any other datagram
  is a line, commands included.
* **Rate limit.** Every input item spends a token of the session's bucket (``rate`` per
  second, ``burst`` at once), refused or not, as IRC's fakelag counts every line: a line
  (an empty one too), a datagram, a line refused for its length, a WebSocket message
  that is no event, a telnet command that gets an answer (:meth:`receive_other`). Only
  UDP heartbeats are free. When the bucket is empty the effects start with a
  :class:`Pause`, so the sender is slowed (its reading waits) and nothing is dropped;
  a flood of refused input gets at most ``burst`` answers at once and ``rate`` a second
  after that, and costs the server no more than as many lines. ``rate=None`` turns the
  limit off.
* ``/nick`` and ``/join`` with the name the user has already are answered with a notice,
  not carried out. A taken nick is refused with a notice; the directory decides.
* A direct message reaches the recipient's inbox and a copy reaches the sender's own
  (unless it is a message to oneself).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from ..accounts import check_password, is_guest_nick
from ..ratelimit import TokenBucket
from ..rooms import MAX_TOPIC
from ._commands import (
    HELP_TEXT,
    Empty,
    Help,
    History,
    Invalid,
    Join,
    Login,
    Logout,
    Me,
    Moderate,
    Msg,
    Nick,
    Password,
    Quit,
    Register,
    Resume,
    Rooms,
    Say,
    Tags,
    Who,
    parse_line_untrusted,
)
from ._directory import Presence, room_topic
from ._errors import ChatError
from ._events import Action, Direct, Event, Joined, Left, Message, NickChanged
from ._names import nick_key, validate_nick, validate_room
from ._resume import ResumeRequest
from ._text import sanitize_text
from ._udp import Heartbeat, UdpQuit, classify_datagram_untrusted

__all__ = [
    "Act",
    "ChangePassword",
    "ChatSession",
    "Close",
    "CreateAccount",
    "Effect",
    "ListRooms",
    "ListUsers",
    "LogIn",
    "LogOut",
    "Lookup",
    "Move",
    "Pause",
    "Publish",
    "Reattach",
    "Recall",
    "Rename",
    "Replay",
    "Reply",
    "Tell",
]


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait ``seconds`` before carrying out the effects that follow (the rate limit)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish ``event`` on ``topic``."""

    topic: str
    event: Event


@dataclass(frozen=True, slots=True)
class Tell:
    """Show this user the notice ``text``, after what is already queued for it."""

    text: str


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``data`` to this user as it is (a telnet answer): never dropped."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Rename:
    """Ask the directory for ``nick``; answer with :meth:`ChatSession.renamed`."""

    nick: str


@dataclass(frozen=True, slots=True)
class Move:
    """Move the session to ``room``; then call :meth:`ChatSession.moved`."""

    room: str


@dataclass(frozen=True, slots=True)
class Lookup:
    """Find who owns ``nick`` to send them ``text``; answer with :meth:`ChatSession.found`."""

    nick: str
    text: str


@dataclass(frozen=True, slots=True)
class ListUsers:
    """Ask who is in ``room`` (``""``: everyone); answer with :meth:`ChatSession.listed_users`."""

    room: str


@dataclass(frozen=True, slots=True)
class ListRooms:
    """Ask for the rooms and their sizes; answer with :meth:`ChatSession.listed_rooms`."""


@dataclass(frozen=True, slots=True)
class Replay:
    """The session has just entered ``room``: show it the room's last lines, then its
    live lines (none missing, none twice)."""

    room: str


@dataclass(frozen=True, slots=True)
class Recall:
    """Show the last ``count`` lines of ``room`` again, after what is already queued."""

    room: str
    count: int


@dataclass(frozen=True, slots=True)
class Reattach:
    """The user asks for a detached session back: the service checks ``request``'s
    token and, if it is right, this connection becomes that session's."""

    request: ResumeRequest


@dataclass(frozen=True, slots=True)
class Close:
    """End the session: ``reason`` is ``"quit"`` (the user asked to leave) or
    ``"refused"`` (a member found its client is no chat client, ``detail`` says why)."""

    reason: Literal["quit", "refused"]
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CreateAccount:
    """Register the session's nick with ``password``; answer with
    :meth:`ChatSession.registered`."""

    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class LogIn:
    """Take the registered ``nick`` if ``password`` is its; answer with
    :meth:`ChatSession.logged_in`."""

    nick: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ChangePassword:
    """Replace the logged-in account's password ``old`` by ``new``."""

    old: str = field(repr=False)
    new: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class LogOut:
    """Leave the account: the service gives the session a guest nick."""


@dataclass(frozen=True, slots=True)
class Act:
    """A room operator's command (:class:`~._commands.Moderate`) in ``room``, its
    target checked: the service decides whether the user may, and carries it out."""

    room: str
    action: str
    target: str = ""
    text: str = ""


Effect: TypeAlias = (
    Pause
    | Publish
    | Tell
    | Reply
    | Rename
    | Move
    | Lookup
    | ListUsers
    | ListRooms
    | Replay
    | Recall
    | Reattach
    | Close
    | CreateAccount
    | LogIn
    | ChangePassword
    | LogOut
    | Act
)

_QUIT = Close("quit")
#: What ``/tags`` gets where lines carry no tags (a WebSocket's events have ids anyway).
TAGS_ELSEWHERE = "/tags is for TCP lines (nc, telnet, chat join); WebSocket events carry ids"


class ChatSession:
    """One user's state and the chat's rules for it.

    Args:
      presence: what the directory gave the session on arrival (id, nick, room, kind).
      max_line_length: the longest line accepted, in bytes.
      rate: lines per second allowed on average, or None for no limit.
      burst: lines allowed at once.
      now: the current time, in seconds (for the rate limit).
    """

    def __init__(
        self,
        presence: Presence,
        *,
        max_line_length: int = 4096,
        rate: float | None = None,
        burst: int = 100,
        now: float = 0.0,
    ) -> None:
        if max_line_length < 1:
            raise ValueError(f"max_line_length must be at least 1 byte, not {max_line_length}")
        self.session = presence.session
        self.inbox = presence.inbox
        self.kind = presence.kind
        self.nick = presence.nick
        self.room = presence.room
        self.max_line_length = max_line_length
        self._bucket = None if rate is None else TokenBucket(rate, burst, now)
        #: Inputs that had to wait for a token (a measure of how often the limit bites).
        self.paused = 0
        #: Whether the session has started (its room was told it joined).
        self.started = False
        #: The key of the account the session is logged in to (its nick's), or None.
        self.account: str | None = None
        #: Why the session may not speak in its room (muted, or a moderated room), as
        #: the notice its lines get instead; None when it may. The service sets it.
        self.silenced: str | None = None

    @property
    def topic(self) -> str:
        """The topic of the session's current room."""
        return room_topic(self.room)

    # -- arriving and leaving ----------------------------------------------------------

    def start(self, *, welcome: bool = True) -> list[Effect]:
        """What arriving does: a welcome notice (unless not wanted) and the join line."""
        self.started = True
        effects: list[Effect] = []
        if welcome:
            effects.append(Tell(f"welcome to triosock chat, {self.nick}; /help lists commands"))
        # the room's earlier lines first: the session must publish nothing to the room
        # between subscribing to it and being fed it (see Replay)
        effects.append(Replay(self.room))
        effects.append(Publish(self.topic, Joined(self.room, self.nick)))
        return effects

    def leave(self) -> list[Effect]:
        """What leaving does, for whatever reason: the room is told, if it was told of
        the arrival (a session that never started leaves unannounced)."""
        if not self.started:
            return []
        return [Publish(self.topic, Left(self.room, self.nick))]

    # -- input -------------------------------------------------------------------------

    def _pace(self, now: float, effects: list[Effect]) -> list[Effect]:
        if self._bucket is not None:
            delay = self._bucket.take(now)
            if delay > 0:
                self.paused += 1
                return [Pause(delay), *effects]
        return effects

    def _refuse(self, size: int | None) -> Tell:
        told = f"{size} bytes" if size is not None else "longer than the limit"
        return Tell(f"line refused ({told}): lines may be at most {self.max_line_length} bytes")

    def receive_line(self, line: bytes, now: float) -> list[Effect]:
        """A line the user typed (TCP, WebSocket), without its terminator."""
        if len(line) > self.max_line_length:
            return self._pace(now, [self._refuse(len(line))])
        command = parse_line_untrusted(line)
        if isinstance(command, Empty):
            return self._pace(now, [])
        if isinstance(command, Say):  # the hot path
            if self.silenced is not None:
                return self._pace(now, [Tell(self.silenced)])
            event = Message(self.room, self.nick, command.text)
            return self._pace(now, [Publish(self.topic, event)])
        return self._pace(now, self._command(command))

    def receive_overlong(self, size: int | None, now: float) -> list[Effect]:
        """A line the transport refused for its length (``size`` bytes, if known)."""
        return self._pace(now, [self._refuse(size)])

    def receive_other(self, answer: Tell | Reply, now: float) -> list[Effect]:
        """An input item that is no line but gets ``answer``: a WebSocket message that is
        no event (its refusal), telnet's ``AYT`` or option negotiation. It costs a token,
        as a line does."""
        return self._pace(now, [answer])

    def receive_resume(self, request: ResumeRequest, now: float) -> list[Effect]:
        """A resume asked for by a client that counts ids (a JSON ``resume`` event); it
        costs a token, as a line does."""
        return self._pace(now, [Reattach(request)])

    def receive_datagram(self, data: bytes, now: float) -> list[Effect]:
        """A datagram of the UDP dialect: a heartbeat, ``quit``, or a line as on TCP.

        Anything but the dialect's two words is one line without its terminator, so a UDP
        peer has the commands too (a ``/msg`` is never said to the room by mistake).
        """
        match classify_datagram_untrusted(data):
            case Heartbeat():
                return []
            case UdpQuit():
                return self._pace(now, [_QUIT])
        return self.receive_line(data.rstrip(b"\r\n"), now)

    def _command(self, command: object) -> list[Effect]:
        match command:
            case Me(text):
                if self.silenced is not None:
                    return [Tell(self.silenced)]
                return [Publish(self.topic, Action(self.room, self.nick, text))]
            case Moderate():
                return self._moderate(command)
            case Nick(name):
                try:
                    nick = validate_nick(name)
                except ChatError as exc:
                    return [Tell(str(exc))]
                if nick == self.nick:
                    return [Tell(f"you are {nick} already")]
                return [Rename(nick)]
            case Join(name):
                try:
                    room = validate_room(name)
                except ChatError as exc:
                    return [Tell(str(exc))]
                if room == self.room:
                    return [Tell(f"you are in {room} already")]
                return [Move(room)]
            case Msg(name, text):
                return [Lookup(name, text)]
            case Who():
                return [ListUsers(self.room)]
            case Rooms():
                return [ListRooms()]
            case Help():
                limits = f"lines may be at most {self.max_line_length} bytes"
                if self._bucket is not None:
                    limits += (
                        f"; up to {self._bucket.rate:g} lines a second"
                        f" (bursts of {self._bucket.burst})"
                    )
                return [*(Tell(line) for line in HELP_TEXT), Tell(limits)]
            case History(count, capped):
                effects: list[Effect] = [Recall(self.room, count)]
                if capped:
                    effects.insert(0, Tell(f"/history shows at most {count} lines at a time"))
                return effects
            case Resume(token, after, epoch):
                return [Reattach(ResumeRequest(token, after, epoch))]
            case Tags():  # a TCP member takes it first (see _tags)
                return [Tell(TAGS_ELSEWHERE)]
            case Register() | Login() | Password() | Logout():
                return self._account_command(command)
            case Invalid(reason):
                return [Tell(reason)]
            case Quit():
                return [_QUIT]
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    def _account_command(self, command: Register | Login | Password | Logout) -> list[Effect]:
        match command:
            case Register(password):
                if self.account == nick_key(self.nick):
                    return [Tell(f"{self.nick} is registered to you already")]
                if is_guest_nick(self.nick):
                    return [
                        Tell(
                            "guest nicks cannot be registered: take a nick of your own "
                            "(/nick NAME), then /register PASSWORD"
                        )
                    ]
                why = check_password(password)
                return [Tell(f"not registered: {why}")] if why else [CreateAccount(password)]
            case Login(name, password):
                try:
                    nick = validate_nick(name) if name is not None else self.nick
                except ChatError as exc:
                    return [Tell(str(exc))]
                if self.account == nick_key(nick):
                    return [Tell(f"you are logged in as {self.nick} already")]
                return [LogIn(nick, password)]
            case Password(old, new):
                if self.account is None:
                    return [Tell("log in first: /login NICK PASSWORD")]
                why = check_password(new)
                return [Tell(f"password not changed: {why}")] if why else [ChangePassword(old, new)]
            case Logout():
                if self.account is None:
                    return [Tell("you are not logged in")]
                return [LogOut()]
        raise AssertionError(f"unhandled command {command!r}")  # pragma: no cover

    def _moderate(self, command: Moderate) -> list[Effect]:
        """An operator's command, its words checked (who may is the service's to say)."""
        action, target, text = command.action, command.target, command.text
        room = self.room
        try:
            if action == "claim":
                room = validate_room(target) if target else room
                target = ""
            elif action == "mode":
                if target not in ("", "+m", "-m"):
                    return [Tell("usage: /mode [+m|-m]: +m lets only operators speak")]
            elif action == "unban":
                pass  # a nick, or an address: the service matches it against the bans
            elif target:
                target = validate_nick(target)
        except ChatError as exc:
            return [Tell(str(exc))]
        if action == "topic" and len(text) > MAX_TOPIC:
            return [Tell(f"a topic may be at most {MAX_TOPIC} characters, not {len(text)}")]
        if action in ("kick", "ban", "mute", "kill") and self.owns(target):
            return [Tell(f"/{action} is for others, not yourself")]
        return [Act(room, action, target, text)]

    # -- answers -----------------------------------------------------------------------

    def logged_in(self, key: str, nick: str) -> list[Effect]:
        """The service's answer to :class:`LogIn` (or :class:`CreateAccount`): the
        session is logged in to ``key``'s account, and holds ``nick`` (the room is told
        of a change)."""
        self.account = key
        effects: list[Effect] = []
        if nick != self.nick:
            old, self.nick = self.nick, nick
            effects.append(Publish(self.topic, NickChanged(old, nick)))
        effects.append(Tell(f"you are logged in as {nick}"))
        return effects

    def logged_out(self, guest: str) -> list[Effect]:
        """The service's answer to :class:`LogOut`: the session is ``guest`` now."""
        self.account = None
        old, self.nick = self.nick, guest
        return [Publish(self.topic, NickChanged(old, guest)), Tell(f"logged out: you are {guest}")]

    def renamed(self, nick: str, ok: bool) -> list[Effect]:
        """The directory's answer to :class:`Rename`."""
        if not ok:
            return [Tell(f"nick {nick} is taken")]
        old, self.nick = self.nick, nick
        return [Publish(self.topic, NickChanged(old, nick))]

    def moved(self, room: str) -> list[Effect]:
        """The session is in ``room`` now (after :class:`Move`): both rooms are told."""
        old, self.room = self.room, room
        return [
            Publish(room_topic(old), Left(old, self.nick)),
            Replay(room),
            Publish(self.topic, Joined(room, self.nick)),
        ]

    def found(self, lookup: Lookup, target: Presence | None) -> list[Effect]:
        """The directory's answer to :class:`Lookup`: who owns the nick, if anyone."""
        if target is None:
            return [Tell(f"no user named {sanitize_text(lookup.nick, max_length=40)}")]
        direct = Direct(self.nick, target.nick, lookup.text)
        effects: list[Effect] = [Publish(target.inbox, direct)]
        if target.session != self.session:
            effects.append(Publish(self.inbox, direct))
        return effects

    def listed_users(self, room: str, nicks: list[str], away: Collection[str] = ()) -> list[Effect]:
        """The directory's answer to :class:`ListUsers`; the nicks whose
        :func:`nick_key` is in ``away`` are marked so (detached sessions)."""
        shown = [f"{nick} (away)" if nick_key(nick) in away else nick for nick in nicks]
        return [Tell(f"in {room}: {', '.join(shown)}")]

    def listed_rooms(
        self, rooms: dict[str, int], topics: dict[str, str] | None = None
    ) -> list[Effect]:
        """The directory's answer to :class:`ListRooms`, with the rooms' ``topics``."""
        topics = topics or {}
        listed = [
            f"{room} ({n}): {topics[room]}" if room in topics else f"{room} ({n})"
            for room, n in rooms.items()
        ]
        return [Tell("rooms: " + ", ".join(listed))]

    def owns(self, nick: str) -> bool:
        """Whether ``nick`` is this session's nick (case-insensitively)."""
        return nick_key(nick) == nick_key(self.nick)
