"""What a user's line means: :func:`parse_line_untrusted` turns it into a command.

A line is one line *without* its terminator, as received. It is decoded as UTF-8 with
invalid bytes replaced by U+FFFD (decoding never fails), its erasures are applied (BS
and DEL erase the character before them, see :func:`~._text.apply_erasures`), it is
neutralised (control characters, escape sequences and bidi overrides removed, see
:mod:`._text`), and trailing whitespace (e.g. a stray CR) is dropped. Nothing is
truncated: the server refuses lines over its limit before they are parsed.

* An empty or whitespace-only line is :class:`Empty`; the server ignores it.
* A line whose *first* character is not ``/`` is plain text: :class:`Say`. Leading
  whitespace is kept, so `` /nick x`` is said, not run.
* A line starting with ``//`` is plain text with one ``/`` removed: ``//shrug`` says
  ``/shrug``.
* Otherwise the first word is a command name, matched case-insensitively (``/NICK``):

  ====================  ==================================================
  ``/nick NAME``        :class:`Nick` (``NAME`` is *not* validated here: the chat
                        core calls :func:`~._names.validate_nick`)
  ``/join ROOM``        :class:`Join` (validated with :func:`~._names.validate_room`)

  ``NAME`` and ``ROOM`` are the rest of the line, spaces included: ``/nick John Smith``
  asks for the nick ``John Smith``, which the chat core refuses with the reason (nicks
  and rooms cannot contain spaces), not with the usage line.

  ``/msg NAME TEXT``    :class:`Msg`
  ``/me TEXT``          :class:`Me`, an action in the current room
  ``/who``              :class:`Who`, who is in the current room
  ``/rooms``            :class:`Rooms`
  ``/resume TOKEN [EPOCH] [KEY=ID ...]``
                        :class:`Resume`, take back a session whose connection was
                        lost (``TOKEN`` is not checked here), after the last ids
                        seen if given: ``KEY`` a room or ``direct`` (see
                        :mod:`._tags`), ``ID`` a whole number, ``EPOCH`` the
                        history's (a word without ``=``)
  ``/tags on|off``      :class:`Tags`, lines said carry their ids (TCP; see
                        :mod:`._tags`)
  ``/history [N]``      :class:`History`, the last ``N`` lines of the current room
                        (``N`` from 1 to :data:`MAX_RECALL`; more is capped there;
                        20 without ``N``)
  ``/register PASSWORD`` :class:`Register`, register the nick held (``PASSWORD`` is
                        the rest of the line, spaces included)
  ``/login NICK PASSWORD``
                        :class:`Login` (alias ``/identify``; ``/identify PASSWORD``
                        logs in as the nick held)
  ``/password OLD NEW`` :class:`Password` (``OLD`` is the first word, ``NEW`` the rest)
  ``/logout``           :class:`Logout`
  ``/claim [ROOM]``, ``/op NICK``, ``/deop NICK``, ``/topic [TEXT]``, ``/kick NICK
  [REASON]``, ``/ban NICK [REASON]``, ``/unban NICK|ADDRESS``, ``/bans``, ``/mute
  NICK``, ``/unmute NICK``, ``/mode [+m|-m]``, ``/kill NICK REASON``
                        :class:`Moderate`, a room operator's command (see
                        :mod:`triosock._sansio.rooms`); ``NICK`` is not validated here
  ``/help``             :class:`Help` (arguments are ignored)
  ``/quit``             :class:`Quit` (arguments, e.g. a quit message, are ignored)
  ====================  ==================================================

  A missing argument, an argument to ``/who`` or ``/rooms``, an empty command name
  (``/`` alone) and an unknown command give :class:`Invalid`, whose ``reason`` can be
  shown to the user as a notice, e.g. ``usage: /msg NAME TEXT`` or ``unknown command
  /foo; try /help``.

Text carried by commands (``Say``, ``Msg``, ``Me``) is neutralised, so it is safe to show.

**Passwords are never said.** A line that begins, after any spaces and slashes, with one
of the password commands' names (``login``, ``identify``, ``register``, ``password``)
and then a space is that command or :class:`Invalid`, never :class:`Say`: ``
/login alice pw`` and ``//login alice pw`` are not said to the room. The reasons of
:class:`Invalid` never repeat the arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from ._resume import parse_after_untrusted
from ._text import apply_erasures, neutralise, sanitize_text

__all__ = [
    "DEFAULT_RECALL",
    "HELP_TEXT",
    "MAX_RECALL",
    "Command",
    "Empty",
    "Help",
    "History",
    "Invalid",
    "Join",
    "Login",
    "Logout",
    "Me",
    "Moderate",
    "Msg",
    "Nick",
    "Password",
    "Quit",
    "Register",
    "Resume",
    "Rooms",
    "Say",
    "Tags",
    "Who",
    "parse_line_untrusted",
]

#: The lines of ``/help``, one notice each.
HELP_TEXT: Final[tuple[str, ...]] = (
    "commands:",
    "  /nick NAME       change your nick",
    "  /join ROOM       go to ROOM (it is created if needed)",
    "  /msg NAME TEXT   send TEXT to NAME only",
    "  /me TEXT         act in your room: * you TEXT",
    "  /who             list who is in your room",
    "  /rooms           list the rooms",
    "  /history [N]     show the last N lines of your room again (20; at most 200)",
    "  /register PASSWORD       keep your nick: only you can take it from now on",
    "  /login NICK PASSWORD     take your registered nick (alias /identify)",
    "  /password OLD NEW        change your password",
    "  /logout          give your nick back and be a guest",
    "room operators (/claim a room to be its founder; the founder names operators):",
    "  /claim [ROOM]    become the founder of ROOM (yours by default), if unclaimed",
    "  /op NICK, /deop NICK     name or remove an operator (the founder)",
    "  /topic [TEXT]    show the topic, or set it (operators; /topic - clears it)",
    "  /kick NICK [REASON]      send NICK out of the room",
    "  /ban NICK [REASON], /unban NICK, /bans   keep NICK out (by account or address)",
    "  /mute NICK, /unmute NICK the room does not hear NICK",
    "  /mode [+m|-m]    moderated: only operators speak",
    "  /kill NICK REASON        disconnect NICK (server operators)",
    "  /help            show this help",
    "  /resume TOKEN    take back your session after a lost connection (as the first",
    "                   line of a new connection; the welcome tells your token)",
    "  /resume TOKEN EPOCH ROOM=ID direct=ID   the same, after the last ids you saw",
    "  /tags on|off     lines said start with their ids: @id=N;key=ROOM (TCP)",
    "  /quit            leave",
    "anything else is said to your room; start a line with // to say /something",
)


@dataclass(frozen=True, slots=True)
class Say:
    """Plain text for the current room (neutralised)."""

    text: str


@dataclass(frozen=True, slots=True)
class Nick:
    """``/nick NAME``: change nick. ``name`` is not validated yet."""

    name: str


@dataclass(frozen=True, slots=True)
class Join:
    """``/join ROOM``: change room. ``room`` is not validated yet."""

    room: str


@dataclass(frozen=True, slots=True)
class Msg:
    """``/msg NAME TEXT``: a direct message. ``name`` is not validated, ``text`` is neutralised."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Me:
    """``/me TEXT``: an action in the current room (neutralised)."""

    text: str


@dataclass(frozen=True, slots=True)
class Who:
    """``/who``: list the users in the current room."""


@dataclass(frozen=True, slots=True)
class Rooms:
    """``/rooms``: list the rooms."""


@dataclass(frozen=True, slots=True)
class Quit:
    """``/quit``: leave."""


@dataclass(frozen=True, slots=True)
class Help:
    """``/help``: show :data:`HELP_TEXT`."""


@dataclass(frozen=True, slots=True)
class History:
    """``/history [N]``: show the last ``count`` lines of the current room again;
    ``capped`` when the user asked for more than :data:`MAX_RECALL`."""

    count: int
    capped: bool = False


@dataclass(frozen=True, slots=True)
class Resume:
    """``/resume TOKEN [EPOCH] [KEY=ID ...]``: take back a detached session. ``token``
    is not checked yet; ``after`` (key -> the last id seen, checked as
    :func:`~._resume.parse_after_untrusted` checks a JSON resume's) and ``epoch`` are
    None when not given."""

    token: str
    after: dict[str, int] | None = None
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Tags:
    """``/tags on`` or ``/tags off``: whether lines said carry their ids (TCP)."""

    on: bool


@dataclass(frozen=True, slots=True)
class Register:
    """``/register PASSWORD``: register the nick held. ``password`` is not checked yet."""

    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Login:
    """``/login NICK PASSWORD`` (``/identify``): take a registered nick. ``nick`` is None
    for the nick held (``/identify PASSWORD``)."""

    nick: str | None
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Password:
    """``/password OLD NEW``: change the logged-in account's password."""

    old: str = field(repr=False)
    new: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Logout:
    """``/logout``: leave the account; the session becomes a guest."""


@dataclass(frozen=True, slots=True)
class Moderate:
    """A room operator's command. ``action`` is the command's name (``claim``, ``op``,
    ``deop``, ``topic``, ``kick``, ``ban``, ``unban``, ``bans``, ``mute``, ``unmute``,
    ``mode``, ``kill``); ``target`` its first word (a nick, the room of ``/claim``, the
    flag of ``/mode``; ``""`` when it has none); ``text`` the rest (a reason, a topic;
    neutralised)."""

    action: str
    target: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class Empty:
    """An empty or whitespace-only line, to be ignored."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """An unknown command or bad arguments; ``reason`` is safe to show to the user."""

    reason: str


Command: TypeAlias = (
    Say
    | Nick
    | Join
    | Msg
    | Me
    | Who
    | Rooms
    | Quit
    | Help
    | History
    | Resume
    | Tags
    | Register
    | Login
    | Password
    | Logout
    | Moderate
    | Empty
    | Invalid
)

#: The most lines one ``/history N`` shows, and how many without ``N``.
MAX_RECALL: Final = 200
DEFAULT_RECALL: Final = 20
_HISTORY_USAGE = f"usage: /history [N], N a number of lines from 1 to {MAX_RECALL}"
_RESUME_USAGE = "usage: /resume TOKEN [EPOCH] [ROOM=ID ...] [direct=ID]"
#: The longest epoch a resume may name (as a JSON resume's) and the most digits of an id.
_MAX_EPOCH = 64
_MAX_DIGITS = 16

_COMMAND = re.compile(r"/(\S*)\s*(.*)", re.DOTALL)
_NAME_AND_TEXT = re.compile(r"(\S+)\s+(.+)", re.DOTALL)

_NO_ARGUMENTS: dict[str, Command] = {"who": Who(), "rooms": Rooms(), "logout": Logout()}
#: Commands whose arguments hold a password, and what a line that only looks like one
#: is told (see the module docstring).
_SECRET = re.compile(r"\s*/+(login|identify|register|password)(\s.*)?", re.DOTALL | re.IGNORECASE)
_NOT_SAID = (
    "not said: it looks like /{0} and may hold a password; "
    "type the command at the start of the line"
)
_IGNORING_ARGUMENTS: dict[str, Command] = {"help": Help(), "quit": Quit()}
#: The operators' commands: (words before the text: 0, 1 at most, or exactly 1; whether
#: text may follow; whether text is needed), and their usage.
_MODERATE: dict[str, tuple[str, bool, bool, str]] = {
    "claim": ("optional", False, False, "/claim [ROOM]"),
    "op": ("one", False, False, "/op NICK"),
    "deop": ("one", False, False, "/deop NICK"),
    "mute": ("one", False, False, "/mute NICK"),
    "unmute": ("one", False, False, "/unmute NICK"),
    "unban": ("one", False, False, "/unban NICK|ADDRESS"),
    "kick": ("one", True, False, "/kick NICK [REASON]"),
    "ban": ("one", True, False, "/ban NICK [REASON]"),
    "kill": ("one", True, True, "/kill NICK REASON"),
    "mode": ("optional", False, False, "/mode [+m|-m]"),
    "bans": ("none", False, False, "/bans"),
    "topic": ("none", True, False, "/topic [TEXT]"),
}


def parse_line_untrusted(line: bytes) -> Command:
    """Parse one line a user sent.

    See the module docstring for the syntax.

    Args:
      line: the line as received, without its terminator; any bytes.

    Returns:
      The command. Never raises for any input: bad input is :class:`Invalid` (or plain
      text).
    """
    text = neutralise(apply_erasures(line.decode("utf-8", errors="replace"))).rstrip()
    if not text.strip():
        return Empty()
    secret = _SECRET.fullmatch(text)
    if secret is not None and (text[0] != "/" or text[:2] == "//"):
        return Invalid(_NOT_SAID.format(secret[1].lower()))
    if text[0] != "/":
        return Say(text)
    if text[:2] == "//":
        return Say(text[1:])
    match = _COMMAND.fullmatch(text)
    assert match is not None  # \S* and .* with DOTALL match anything after the "/"
    name, args = match[1].lower(), match[2]
    if not name:
        return Invalid("empty command; try /help")
    if name in _NO_ARGUMENTS:
        return Invalid(f"usage: /{name}") if args else _NO_ARGUMENTS[name]
    if name in _IGNORING_ARGUMENTS:
        return _IGNORING_ARGUMENTS[name]
    if name in ("nick", "join"):
        if not args:
            return Invalid("usage: /nick NAME" if name == "nick" else "usage: /join ROOM")
        # The whole rest, spaces included: the name's validation says why it is refused.
        return Nick(args) if name == "nick" else Join(args)
    if name == "msg":
        parts = _NAME_AND_TEXT.fullmatch(args)
        if parts is None:
            return Invalid("usage: /msg NAME TEXT")
        return Msg(parts[1], parts[2])
    if name == "me":
        return Me(args) if args else Invalid("usage: /me TEXT")
    if name in ("register", "login", "identify", "password"):
        return _secret(name, args)
    if name == "resume":
        return _resume(args.split())
    if name in _MODERATE:
        return _moderate(name, args)
    if name == "tags":
        switch = args.strip().lower()
        return Tags(switch == "on") if switch in ("on", "off") else Invalid("usage: /tags on|off")
    if name == "history":
        if not args:
            return History(DEFAULT_RECALL)
        if not (args.isascii() and args.isdigit()) or len(args) > 12 or int(args) < 1:
            return Invalid(_HISTORY_USAGE)
        count = int(args)
        return History(min(count, MAX_RECALL), capped=count > MAX_RECALL)
    return Invalid(f"unknown command /{sanitize_text(name, max_length=20)}; try /help")


def _secret(name: str, args: str) -> Command:
    """The password commands (their reasons never repeat the arguments)."""
    if name == "register":
        return Register(args) if args else Invalid("usage: /register PASSWORD")
    if name == "password":
        parts = _NAME_AND_TEXT.fullmatch(args)
        return Password(parts[1], parts[2]) if parts else Invalid("usage: /password OLD NEW")
    parts = _NAME_AND_TEXT.fullmatch(args)
    if parts is not None:
        return Login(parts[1], parts[2])
    if name == "identify" and args:
        return Login(None, args)
    return Invalid(f"usage: /{name} NICK PASSWORD")


def _moderate(name: str, args: str) -> Moderate | Invalid:
    """An operator's command: its words as :data:`_MODERATE` says."""
    words, has_text, needs_text, usage = _MODERATE[name]
    if words == "none":
        if args and not has_text:
            return Invalid(f"usage: {usage}")
        return Moderate(name, "", args)
    target, _, text = args.partition(" ")
    text = text.strip()
    if (words == "one" and not target) or (text and not has_text) or (needs_text and not text):
        return Invalid(f"usage: {usage}")
    return Moderate(name, target, text)


def _resume(words: list[str]) -> Resume | Invalid:
    """The words after ``/resume``: ``TOKEN [EPOCH] [KEY=ID ...]``."""
    if not words:
        return Invalid(_RESUME_USAGE)
    token, rest = words[0], words[1:]
    epoch = None
    if rest and "=" not in rest[0]:
        epoch, rest = rest[0], rest[1:]
        if len(epoch) > _MAX_EPOCH:
            return Invalid(f"{_RESUME_USAGE}: EPOCH is the one /tags on told")
    given: dict[str, int] = {}
    for word in rest:
        key, equals, number = word.rpartition("=")
        shown = sanitize_text(word, max_length=40)
        if not equals or not key:
            return Invalid(f"{_RESUME_USAGE}: {shown} is not ROOM=ID")
        if not (number.isascii() and number.isdigit()) or len(number) > _MAX_DIGITS:
            return Invalid(f"{_RESUME_USAGE}: {shown}: an ID is a whole number, 0 or more")
        if key in given:
            return Invalid(f"{_RESUME_USAGE}: {sanitize_text(key, max_length=40)} comes twice")
        given[key] = int(number)
    if not rest:
        return Resume(token, None, epoch)
    after = parse_after_untrusted(given)
    if isinstance(after, str):
        return Invalid(f"{_RESUME_USAGE}: {after} (the ROOM=ID words)")
    return Resume(token, after, epoch)
