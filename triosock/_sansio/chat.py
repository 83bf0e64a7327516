"""The chat protocol, sans-IO: parsing, validation, neutralising and rendering.

Nothing here does IO. The chat server feeds it lines and datagrams as received and gets
back commands; it hands it events and gets back the bytes a user sees. Users of every
transport (TCP lines from ``nc``/``telnet``/``socat``, UDP peers speaking the tutorial
dialect, WebSocket users) share the same rooms, commands and events.

Commands (:func:`parse_line_untrusted`)
---------------------------------------

A line is one line *without* its terminator, as received. It is decoded as UTF-8 with
invalid bytes replaced by U+FFFD (decoding never fails), then neutralised like
:func:`sanitize_text` (control characters, escape sequences and bidi overrides removed,
no truncation yet), and trailing whitespace (e.g. a stray CR) is dropped.

* An empty or whitespace-only line is :class:`Empty`; the server ignores it.
* A line whose *first* character is not ``/`` is plain text: :class:`Say`. Leading
  whitespace is kept, so `` /nick x`` is said, not run.
* A line starting with ``//`` is plain text with one ``/`` removed: ``//shrug`` says
  ``/shrug``.
* Otherwise the first word is a command name, matched case-insensitively (``/NICK``):

  ====================  ==================================================
  ``/nick NAME``        :class:`Nick` (``NAME`` is *not* validated here: the server
                        calls :func:`validate_nick`)
  ``/join ROOM``        :class:`Join` (validate with :func:`validate_room`)
  ``/msg NAME TEXT``    :class:`Msg`
  ``/me TEXT``          :class:`Me`, an action in the current room
  ``/who``              :class:`Who`, who is in the current room
  ``/rooms``            :class:`Rooms`
  ``/help``             :class:`Help` (arguments are ignored)
  ``/quit``             :class:`Quit` (arguments, e.g. a quit message, are ignored)
  ====================  ==================================================

  A missing argument, an extra argument to ``/nick``, ``/join``, ``/who`` or ``/rooms``,
  an empty command name (``/`` alone) and an unknown command give :class:`Invalid`,
  whose ``reason`` can be shown to the user as a notice, e.g. ``usage: /msg NAME TEXT``
  or ``unknown command /foo; try /help``.

Text carried by commands (``Say``, ``Msg``, ``Me``) has passed :func:`sanitize_text` with
its default limit, so it is safe to show and at most 1000 characters long.

Names (:func:`validate_nick`, :func:`validate_room`)
----------------------------------------------------

* A nick is 1 to 24 ASCII characters: letters, digits, ``_``, ``-`` and ``.``, starting
  with a letter. Its canonical form is itself (case is kept for display); uniqueness is
  case-insensitive, by :func:`nick_key`. Non-ASCII letters are refused, which also rules
  out look-alike nicks. New users are called :func:`default_nick` (``guest1``, ...).
* A room is ``#`` (added if missing) and 1 to 32 of the same characters (a digit may
  come first). Its canonical form is lower-case: ``Lobby`` -> ``#lobby``. Everybody
  starts in :data:`DEFAULT_ROOM`.

Neither a nick nor a room can contain a space, ``:`` or ``]``, which keeps the rendered
lines below unambiguous: a user cannot fake another user's line or a server line.

Neutralising (:func:`sanitize_text`)
------------------------------------

User text ends up on other people's terminals, so it loses: escape sequences (CSI
``ESC [ ... final`` and its 8-bit form U+009B; OSC ``ESC ]``, DCS ``ESC P``, SOS, PM and
APC strings up to BEL or ST, or to the end of the text when unterminated; any other
``ESC`` with its intermediate and final characters), every other C0 control, DEL and C1
control (tab, LF, VT, FF, CR, NEL and U+2028/U+2029 become a space, the rest are
removed), the bidi embedding/override/isolate characters U+202A-U+202E and
U+2066-U+2069, and lone surrogates (replaced by U+FFFD, so the result always encodes as
UTF-8). Text longer than the limit is cut to the limit, the last character being ``…``.
The result has no character of category ``Cc``, and sanitising it again changes nothing.

Events and what a TCP user sees (:func:`render_line`)
-----------------------------------------------------

Events are what users see; :func:`render_line` gives the line (UTF-8, no terminator).
These formats are the wire format users and tests rely on::

    Message(room, sender, text)       [#lobby] alice: hi
    Action(room, sender, text)        [#lobby] * alice waves
    Direct(sender, recipient, text)   [dm from alice] hi        (viewer is the recipient)
                                      [dm to bob] hi            (viewer is the sender)
                                      [dm alice -> bob] hi      (no or another viewer)
    Joined(room, nick)                * bob joined #lobby
    Left(room, nick)                  * bob left #lobby
    NickChanged(old, new)             * alice is now known as al
    Notice(text)                      -!- text
    ServerClosing(text)               -!- server closing: text  (-!- server closing if
                                                                 text is empty)

The viewer of a :class:`Direct` is compared by :func:`nick_key`; when the viewer is both
sender and recipient (a message to oneself) the "from" form is used. Every field is
neutralised again when rendering (without truncation), so a rendered line never holds a
control character or a line break, whatever the event holds. A multi-line notice (such
as :data:`HELP_TEXT`) is one :class:`Notice` per line.

Events across processes (:func:`encode_event`, :func:`decode_event_untrusted`)
--------------------------------------------------------------------------------

An event is encoded as a compact JSON object, ASCII only, keys sorted: ``"type"`` (one of
``message``, ``action``, ``direct``, ``joined``, ``left``, ``nick``, ``notice``,
``closing``) and one string per field, named as in the dataclass, e.g.
``{"room":"#lobby","sender":"alice","text":"hi","type":"message"}``. Decoding accepts
exactly that shape (no missing or extra keys, every value a string) and raises
:class:`ChatError` for anything else; the fields are not validated beyond that, since
rendering neutralises them anyway. ``decode_event_untrusted(encode_event(e)) == e``.

The UDP tutorial dialect (:func:`classify_datagram_untrusted`, :func:`udp_ack_line`)
--------------------------------------------------------------------------------------

Trailing CR and LF bytes (any number) are stripped from a datagram; then exactly
:data:`HEARTBEAT` (``^hb^``) is a :class:`Heartbeat`, exactly :data:`UDP_QUIT` (``quit``,
lower-case) is a :class:`UdpQuit` (the server answers :data:`BYE`), and anything else is
:class:`UdpText`, decoded with replacement and sanitised (it may be empty; the server
should ignore empty text). A room message from a UDP peer is acknowledged to every UDP
peer as ``[IP:PORT] text``, e.g. ``[192.0.2.7:5000] hi``; an IPv6 address is bracketed
inside, as in :func:`format_address`: ``[[2001:db8::1]:5000] hi``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Final, TypeAlias

from .._errors import TriosockError

__all__ = [
    "BYE",
    "DEFAULT_ROOM",
    "HEARTBEAT",
    "HELP_TEXT",
    "MAX_NICK_LENGTH",
    "MAX_ROOM_LENGTH",
    "MAX_TEXT_LENGTH",
    "UDP_QUIT",
    "Action",
    "ChatError",
    "Command",
    "Datagram",
    "Direct",
    "Empty",
    "Event",
    "Heartbeat",
    "Help",
    "Invalid",
    "Join",
    "Joined",
    "Left",
    "Me",
    "Message",
    "Msg",
    "Nick",
    "NickChanged",
    "Notice",
    "Quit",
    "Rooms",
    "Say",
    "ServerClosing",
    "UdpQuit",
    "UdpText",
    "Who",
    "classify_datagram_untrusted",
    "decode_event_untrusted",
    "default_nick",
    "encode_event",
    "format_address",
    "nick_key",
    "parse_line_untrusted",
    "render_line",
    "sanitize_text",
    "udp_ack_line",
    "validate_nick",
    "validate_room",
]


class ChatError(TriosockError):
    """A chat name is invalid, or an encoded event cannot be decoded.

    The message is meant for the user (for names) and never echoes control characters.
    """


#: The room every user starts in.
DEFAULT_ROOM: Final = "#lobby"
#: The longest nick, in characters.
MAX_NICK_LENGTH: Final = 24
#: The longest room name, in characters, not counting the ``#``.
MAX_ROOM_LENGTH: Final = 32
#: The default limit of :func:`sanitize_text`, in characters.
MAX_TEXT_LENGTH: Final = 1000

#: A UDP peer's keep-alive datagram (after trailing CR/LF are stripped).
HEARTBEAT: Final = b"^hb^"
#: A UDP peer's goodbye datagram (after trailing CR/LF are stripped).
UDP_QUIT: Final = b"quit"
#: What the server answers to :data:`UDP_QUIT`.
BYE: Final = b"Bye!"

#: The lines of ``/help``, one :class:`Notice` each.
HELP_TEXT: Final[tuple[str, ...]] = (
    "commands:",
    "  /nick NAME       change your nick",
    "  /join ROOM       go to ROOM (it is created if needed)",
    "  /msg NAME TEXT   send TEXT to NAME only",
    "  /me TEXT         act in your room: * you TEXT",
    "  /who             list who is in your room",
    "  /rooms           list the rooms",
    "  /help            show this help",
    "  /quit            leave",
    "anything else is said to your room; start a line with // to say /something",
)


# -- commands -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Say:
    """Plain text for the current room (sanitised)."""

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
    """``/msg NAME TEXT``: a direct message. ``name`` is not validated, ``text`` is sanitised."""

    name: str
    text: str


@dataclass(frozen=True, slots=True)
class Me:
    """``/me TEXT``: an action in the current room (sanitised)."""

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
class Empty:
    """An empty or whitespace-only line, to be ignored."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """An unknown command or bad arguments; ``reason`` is safe to show to the user."""

    reason: str


Command: TypeAlias = Say | Nick | Join | Msg | Me | Who | Rooms | Quit | Help | Empty | Invalid


# -- neutralising ---------------------------------------------------------------------

# Escape sequences, longest forms first. String sequences (OSC, DCS, SOS, PM, APC, in
# 7-bit and 8-bit form) run to BEL or ST (ESC \ or U+009C); an ESC inside one ends it,
# as in a terminal, and an unterminated one runs to the end of the text.
_ESCAPES = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI: parameters, intermediates, final
    r"|\x1b[ -/]*[0-~]?"  # any other escape: intermediates, final
)
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_SPACES = "\t\n\x0b\x0c\r\x85\u2028\u2029"
_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0)]
_NEUTRALISE: dict[int, str | None] = {c: None for c in [*_CONTROLS, *_BIDI]}
_NEUTRALISE.update({ord(c): " " for c in _SPACES})


def _neutralise(text: str) -> str:
    """Everything :func:`sanitize_text` does except truncating."""
    if text.isprintable():  # the common case: nothing to do (no Cc, Cf, Cs, Zl, Zp)
        return text
    text = _ESCAPES.sub("", text)
    text = _SURROGATES.sub("\ufffd", text)
    return text.translate(_NEUTRALISE)


def sanitize_text(text: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """Make user text safe to show on somebody else's terminal.

    See "Neutralising" in the module docstring for exactly what is removed. The result
    has no ``Cc`` character and no bidi override, is at most ``max_length`` characters
    long, encodes as UTF-8, and is its own sanitised form.

    Args:
      text: the text as received (already decoded).
      max_length: the longest result, in characters; longer text is cut and ends with
        ``…``.

    Returns:
      The neutralised, possibly truncated text.

    Raises:
      ValueError: if ``max_length`` is less than 1.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, not {max_length}")
    text = _neutralise(text)
    if len(text) > max_length:
        text = text[: max_length - 1] + "…"
    return text


def _quote(name: str) -> str:
    """A short, quoted form of a user-supplied name for error messages.

    ``repr`` escapes every character that is not printable (controls, format characters
    such as bidi overrides, surrogates), so the result is safe to show.
    """
    return repr(name if len(name) <= 40 else name[:39] + "…")


# -- parsing --------------------------------------------------------------------------

_COMMAND = re.compile(r"/(\S*)\s*(.*)", re.DOTALL)
_NAME_AND_TEXT = re.compile(r"(\S+)\s+(.+)", re.DOTALL)

_NO_ARGUMENTS: dict[str, Command] = {"who": Who(), "rooms": Rooms()}
_IGNORING_ARGUMENTS: dict[str, Command] = {"help": Help(), "quit": Quit()}


def parse_line_untrusted(line: bytes) -> Command:
    """Parse one line a user sent.

    See "Commands" in the module docstring for the syntax.

    Args:
      line: the line as received, without its terminator; any bytes.

    Returns:
      The command. Never raises for any input: bad input is :class:`Invalid` (or plain
      text).
    """
    text = _neutralise(line.decode("utf-8", errors="replace")).rstrip()
    if not text.strip():
        return Empty()
    if text[0] != "/":
        return Say(sanitize_text(text))
    if text[:2] == "//":
        return Say(sanitize_text(text[1:]))
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
        if not args or len(args.split()) != 1:
            return Invalid("usage: /nick NAME" if name == "nick" else "usage: /join ROOM")
        return Nick(args) if name == "nick" else Join(args)
    if name == "msg":
        parts = _NAME_AND_TEXT.fullmatch(args)
        if parts is None:
            return Invalid("usage: /msg NAME TEXT")
        return Msg(parts[1], sanitize_text(parts[2]))
    if name == "me":
        return Me(sanitize_text(args)) if args else Invalid("usage: /me TEXT")
    return Invalid(f"unknown command /{sanitize_text(name, max_length=20)}; try /help")


# -- names ----------------------------------------------------------------------------

_NAME_CHARS = re.compile(r"[A-Za-z0-9_.\-]*")
_FIRST_BAD_CHAR = re.compile(r"[^A-Za-z0-9_.\-]")


def _check_chars(kind: str, name: str) -> None:
    if not _NAME_CHARS.fullmatch(name):
        bad = _FIRST_BAD_CHAR.search(name)
        assert bad is not None
        raise ChatError(
            f"{kind} {_quote(name)} contains {_quote(bad[0])}; "
            "use only letters A-Z, digits, '_', '-' and '.'"
        )


def validate_nick(name: str) -> str:
    """Check a requested nick.

    Args:
      name: the nick as requested, e.g. the argument of ``/nick``.

    Returns:
      The canonical nick: ``name`` itself (case is kept; compare with :func:`nick_key`).

    Raises:
      ChatError: if the nick is empty, longer than :data:`MAX_NICK_LENGTH`, does not
        start with an ASCII letter or contains anything but ASCII letters, digits, ``_``,
        ``-`` and ``.``.
    """
    if not name:
        raise ChatError("a nick must not be empty")
    if len(name) > MAX_NICK_LENGTH:
        raise ChatError(f"nick {_quote(name)} is too long: at most {MAX_NICK_LENGTH} characters")
    _check_chars("nick", name)
    if not ("a" <= name[0] <= "z" or "A" <= name[0] <= "Z"):
        raise ChatError(f"nick {_quote(name)} must start with a letter")
    return name


def nick_key(name: str) -> str:
    """The key under which nicks are unique: ``Alice`` and ``ALICE`` are the same user.

    Args:
      name: a (valid) nick.

    Returns:
      The case-folded nick.
    """
    return name.casefold()


def validate_room(name: str) -> str:
    """Check a requested room name.

    Args:
      name: the room as requested, with or without its leading ``#``.

    Returns:
      The canonical room: ``#`` and the name in lower case, e.g. ``#lobby``.

    Raises:
      ChatError: if the name (after the optional ``#``) is empty, longer than
        :data:`MAX_ROOM_LENGTH` or contains anything but ASCII letters, digits, ``_``,
        ``-`` and ``.``.
    """
    body = name[1:] if name[:1] == "#" else name
    if not body:
        raise ChatError("a room name must not be empty")
    if len(body) > MAX_ROOM_LENGTH:
        raise ChatError(
            f"room {_quote(name)} is too long: at most {MAX_ROOM_LENGTH} characters after #"
        )
    _check_chars("room", body)
    return "#" + body.lower()


def default_nick(n: int) -> str:
    """The nick of the ``n``-th new user, before they choose one: ``guest1``, ...

    Args:
      n: a non-negative number, unique per server run.

    Returns:
      ``guest`` followed by ``n``.

    Raises:
      ValueError: if ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"a guest number must not be negative, not {n}")
    return f"guest{n}"


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """``sender`` said ``text`` in ``room``."""

    room: str
    sender: str
    text: str


@dataclass(frozen=True, slots=True)
class Action:
    """``sender`` did ``text`` in ``room`` (``/me``)."""

    room: str
    sender: str
    text: str


@dataclass(frozen=True, slots=True)
class Direct:
    """A direct message from ``sender`` to ``recipient``."""

    sender: str
    recipient: str
    text: str


@dataclass(frozen=True, slots=True)
class Joined:
    """``nick`` entered ``room``."""

    room: str
    nick: str


@dataclass(frozen=True, slots=True)
class Left:
    """``nick`` left ``room`` (changed room or disconnected)."""

    room: str
    nick: str


@dataclass(frozen=True, slots=True)
class NickChanged:
    """The user called ``old`` is now called ``new``."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Notice:
    """A line of server information for one user (/who, /rooms, /help results, errors)."""

    text: str


@dataclass(frozen=True, slots=True)
class ServerClosing:
    """The server is shutting down; ``text`` says why (may be empty)."""

    text: str


Event: TypeAlias = Message | Action | Direct | Joined | Left | NickChanged | Notice | ServerClosing


def render_line(event: Event, *, viewer: str | None = None) -> bytes:
    """The line a TCP user sees for an event.

    See "Events and what a TCP user sees" in the module docstring for every format.

    Args:
      event: the event.
      viewer: the nick of the user the line is for; only :class:`Direct` uses it.

    Returns:
      The UTF-8 line, without a terminator. It contains no control character.

    Raises:
      TypeError: if ``event`` is not an event.
    """
    n = _neutralise
    match event:
        case Message(room, sender, text):
            line = f"[{n(room)}] {n(sender)}: {n(text)}"
        case Action(room, sender, text):
            line = f"[{n(room)}] * {n(sender)} {n(text)}"
        case Direct(sender, recipient, text):
            key = None if viewer is None else nick_key(viewer)
            if key == nick_key(recipient):
                line = f"[dm from {n(sender)}] {n(text)}"
            elif key == nick_key(sender):
                line = f"[dm to {n(recipient)}] {n(text)}"
            else:
                line = f"[dm {n(sender)} -> {n(recipient)}] {n(text)}"
        case Joined(room, nick):
            line = f"* {n(nick)} joined {n(room)}"
        case Left(room, nick):
            line = f"* {n(nick)} left {n(room)}"
        case NickChanged(old, new):
            line = f"* {n(old)} is now known as {n(new)}"
        case Notice(text):
            line = f"-!- {n(text)}"
        case ServerClosing(text):
            line = f"-!- server closing: {n(text)}" if text else "-!- server closing"
        case _:
            raise TypeError(f"not a chat event: {event!r}")
    return line.encode("utf-8")


# -- encoding events ------------------------------------------------------------------

_EVENT_CLASSES: dict[str, Callable[..., Event]] = {
    "message": Message,
    "action": Action,
    "direct": Direct,
    "joined": Joined,
    "left": Left,
    "nick": NickChanged,
    "notice": Notice,
    "closing": ServerClosing,
}
_EVENT_TAGS: dict[object, str] = {cls: tag for tag, cls in _EVENT_CLASSES.items()}
_EVENT_FIELDS: dict[str, frozenset[str]] = {
    tag: frozenset(f.name for f in fields(cls))  # type: ignore[arg-type]
    for tag, cls in _EVENT_CLASSES.items()
}


def encode_event(event: Event) -> bytes:
    """Encode an event to cross a process boundary (e.g. through Redis).

    Args:
      event: the event.

    Returns:
      Compact, ASCII-only JSON; see "Events across processes" in the module docstring.

    Raises:
      TypeError: if ``event`` is not an event or one of its fields is not a string.
    """
    tag = _EVENT_TAGS.get(type(event))
    if tag is None:
        raise TypeError(f"not a chat event: {event!r}")
    obj: dict[str, str] = {"type": tag}
    for field in fields(event):
        value = getattr(event, field.name)
        if not isinstance(value, str):
            raise TypeError(f"{type(event).__name__}.{field.name} must be a str: {value!r}")
        obj[field.name] = value
    return json.dumps(obj, ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode("ascii")


def decode_event_untrusted(data: bytes) -> Event:
    """Decode what :func:`encode_event` made, from a source that may send anything.

    Args:
      data: the encoded event.

    Returns:
      The event.

    Raises:
      ChatError: if ``data`` is not an encoded event (and only ChatError, for any input).
    """
    try:
        obj: Any = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ChatError(f"an encoded event must be a JSON object: {exc}") from None
    if not isinstance(obj, dict):
        raise ChatError("an encoded event must be a JSON object")
    tag = obj.pop("type", None)
    if not isinstance(tag, str):
        raise ChatError("an encoded event needs a string 'type'")
    if tag not in _EVENT_CLASSES:
        raise ChatError(f"unknown event type {_quote(tag)}")
    expected = _EVENT_FIELDS[tag]
    if obj.keys() != expected:
        raise ChatError(f"a {tag} event has the fields {', '.join(sorted(expected))}")
    if not all(isinstance(value, str) for value in obj.values()):
        raise ChatError(f"every field of a {tag} event must be a string")
    return _EVENT_CLASSES[tag](**obj)


# -- the UDP tutorial dialect ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A UDP peer's keep-alive, :data:`HEARTBEAT`."""


@dataclass(frozen=True, slots=True)
class UdpQuit:
    """A UDP peer says goodbye, :data:`UDP_QUIT`; answer :data:`BYE`."""


@dataclass(frozen=True, slots=True)
class UdpText:
    """Text from a UDP peer for its room (sanitised; may be empty)."""

    text: str


Datagram: TypeAlias = Heartbeat | UdpQuit | UdpText


def classify_datagram_untrusted(data: bytes) -> Datagram:
    """Tell what a UDP peer sent.

    Args:
      data: the datagram's payload; any bytes.

    Returns:
      :class:`Heartbeat` or :class:`UdpQuit` for exactly :data:`HEARTBEAT` or
      :data:`UDP_QUIT` once trailing CR and LF bytes are stripped, else :class:`UdpText`
      with the stripped payload decoded (invalid UTF-8 replaced) and sanitised. Never
      raises.
    """
    data = data.rstrip(b"\r\n")
    if data == HEARTBEAT:
        return Heartbeat()
    if data == UDP_QUIT:
        return UdpQuit()
    return UdpText(sanitize_text(data.decode("utf-8", errors="replace")))


def format_address(ip: str, port: int) -> str:
    """A peer's address for display: ``192.0.2.7:5000``, or ``[2001:db8::1]:5000`` for IPv6.

    Args:
      ip: the address as the socket reports it (IPv6 if it contains ``:``).
      port: the port.

    Returns:
      The address, neutralised.
    """
    ip = _neutralise(ip)
    return f"[{ip}]:{port:d}" if ":" in ip else f"{ip}:{port:d}"


def udp_ack_line(sender_ip: str, sender_port: int, text: str) -> bytes:
    """The acknowledgement every UDP peer receives for a UDP peer's room message.

    Args:
      sender_ip: the sending peer's IP address.
      sender_port: the sending peer's port.
      text: what the peer said (sanitised again here).

    Returns:
      ``[IP:PORT] text`` (``[[IPv6]:PORT] text`` for IPv6), UTF-8, without a terminator.
    """
    return f"[{format_address(sender_ip, sender_port)}] {sanitize_text(text)}".encode()
