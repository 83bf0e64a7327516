"""Events: what users see, how a TCP user sees them, and how they cross processes.

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
    Crowd(room, joined, left)         * 37 joined, 12 left #lobby
    NickChanged(old, new)             * alice is now known as al
    Notice(text)                      -!- text
    ServerClosing(text)               -!- server closing: text  (-!- server closing if
                                                                 text is empty)
    Moderation(room, by, "kick", target, text)
                                      * alice kicked bob (flooding)
                                      (and so for every operator's action: claimed,
                                      made bob an operator, set the topic, banned, ...)

Lines said (:class:`Message`, :class:`Action`, :class:`Direct`) carry ``id``, their id in
their room's (or inbox's) history, and ``time``, when it was said in milliseconds since
the Unix epoch; both 0 when the line was never recorded. A TCP user does not see them on
live lines. Lines shown again from the history (:mod:`._recall`) are framed by notices
and carry their time (UTC)::

    RecallStart(room, count, day)     -!- #lobby: 5 earlier lines (times UTC, 2026-12-07)
    Recalled(event)                   [12:03:04] [#lobby] alice: hi
    DayChanged(day)                   -!- day changed to 2026-12-08
    RecallEnd(room, more)             -!- end of earlier lines of #lobby
                                      (more: ``...; /history N shows more``)

A :class:`Crowd` stands for the joins and leaves of a while in a room too crowded for a
line each (see ``presence_limit`` in :class:`~triosock.chat.ChatServer`); it always gives both
counts, so it cannot be read as one user's line.

The viewer of a :class:`Direct` is compared by :func:`nick_key`; when the viewer is both
sender and recipient (a message to oneself) the "from" form is used. Every field is
neutralised again when rendering (without truncation), so a rendered line never holds a
control character or a line break, whatever the event holds. A multi-line notice (such
as :data:`HELP_TEXT`) is one :class:`Notice` per line.

Events across processes (:func:`encode_event`, :func:`decode_event_untrusted`)
--------------------------------------------------------------------------------

An event is encoded as a compact JSON object, ASCII only, keys sorted: ``"type"`` (one of
``message``, ``action``, ``direct``, ``joined``, ``left``, ``crowd``, ``nick``,
``notice``, ``closing``, ``moderation``) and one value per field, named as in the
dataclass: a string, but for the counts of a ``crowd`` (non-negative integers), e.g.
``{"room":"#lobby","sender":"alice","text":"hi","type":"message"}`` or
``{"joined":37,"left":12,"room":"#lobby","type":"crowd"}``. Decoding accepts exactly
that shape (no missing or extra keys, every value of its type) and raises
:class:`ChatError` for anything else; the fields are not validated beyond that, since
rendering neutralises them anyway. ``decode_event_untrusted(encode_event(e)) == e``.
"""

from __future__ import annotations

import functools
import json
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeAlias

from ._errors import ChatError
from ._names import nick_key
from ._text import plain, quote

__all__ = [
    "Action",
    "Crowd",
    "DayChanged",
    "Direct",
    "Event",
    "Joined",
    "Left",
    "Message",
    "Moderation",
    "NickChanged",
    "Notice",
    "RecallEnd",
    "RecallStart",
    "Recalled",
    "ServerClosing",
    "Shown",
    "decode_event_untrusted",
    "encode_event",
    "event_id",
    "render_line",
]


# -- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """``sender`` said ``text`` in ``room``."""

    room: str
    sender: str
    text: str
    id: int = 0
    time: int = 0


@dataclass(frozen=True, slots=True)
class Action:
    """``sender`` did ``text`` in ``room`` (``/me``)."""

    room: str
    sender: str
    text: str
    id: int = 0
    time: int = 0


@dataclass(frozen=True, slots=True)
class Direct:
    """A direct message from ``sender`` to ``recipient``."""

    sender: str
    recipient: str
    text: str
    id: int = 0
    time: int = 0


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
class Crowd:
    """``joined`` users entered ``room`` and ``left`` users left it, lately: what a room
    too crowded for a line per join and leave is told instead."""

    room: str
    joined: int
    left: int


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


@dataclass(frozen=True, slots=True)
class Moderation:
    """An operator's action in ``room``: ``by`` did ``action`` (a command's name:
    ``claim``, ``op``, ``deop``, ``topic``, ``kick``, ``ban``, ``unban``, ``mute``,
    ``unmute``, ``mode``, ``kill``) to ``target`` (a nick, or the flag of ``mode``),
    ``text`` the reason or the topic."""

    room: str
    by: str
    action: str
    target: str
    text: str


Event: TypeAlias = (
    Message
    | Action
    | Direct
    | Joined
    | Left
    | Crowd
    | NickChanged
    | Notice
    | ServerClosing
    | Moderation
)

#: How a TCP user sees each :class:`Moderation`: by, target; `` (text)`` is added where
#: the format has no ``{text}`` and the action has a text (a reason).
_MODERATION_LINES: dict[str, str] = {
    "claim": "* {by} claimed {room}: its founder",
    "op": "* {by} made {target} an operator of {room}",
    "deop": "* {by} removed {target} as operator of {room}",
    "topic": "* {by} set the topic of {room}: {text}",
    "kick": "* {by} kicked {target}",
    "ban": "* {by} banned {target}",
    "unban": "* {by} unbanned {target}",
    "mute": "* {by} muted {target}",
    "unmute": "* {by} unmuted {target}",
    "mode": "* {by} set {room} {target}",
    "kill": "* {by} disconnected {target}",
}


# -- lines shown again from the history (they never cross processes) ----------------


@dataclass(frozen=True, slots=True)
class RecallStart:
    """Earlier lines of ``room`` follow: ``count`` of them, the first said on ``day``
    (``YYYY-MM-DD``, UTC)."""

    room: str
    count: int
    day: str


@dataclass(frozen=True, slots=True)
class Recalled:
    """A line said earlier, shown again: ``event`` carries its id and time."""

    event: Message | Action | Direct


@dataclass(frozen=True, slots=True)
class DayChanged:
    """The earlier lines that follow were said on ``day`` (``YYYY-MM-DD``, UTC)."""

    day: str


@dataclass(frozen=True, slots=True)
class RecallEnd:
    """The end of the earlier lines of ``room``; ``more`` when older ones are kept."""

    room: str
    more: bool


#: What a user may be shown: the events, and the lines of a recall.
Shown: TypeAlias = Event | RecallStart | Recalled | DayChanged | RecallEnd


def clock(time: int) -> str:
    """``HH:MM:SS`` (UTC) of a time in milliseconds since the Unix epoch."""
    return _time.strftime("%H:%M:%S", _time.gmtime(time // 1000))


def day(time: int) -> str:
    """``YYYY-MM-DD`` (UTC) of a time in milliseconds since the Unix epoch."""
    return _time.strftime("%Y-%m-%d", _time.gmtime(time // 1000))


def render_line(event: Shown, *, viewer: str | None = None) -> bytes:
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
    n = plain  # neutralised, without IRC's formatting
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
        case Crowd(room, joined, left):
            line = f"* {joined:d} joined, {left:d} left {n(room)}"
        case NickChanged(old, new):
            line = f"* {n(old)} is now known as {n(new)}"
        case Notice(text):
            line = f"-!- {n(text)}"
        case ServerClosing(text):
            line = f"-!- server closing: {n(text)}" if text else "-!- server closing"
        case Moderation(room, by, action, target, text):
            line = _moderation_line(room, by, action, target, text)
        case RecallStart(room, count, first_day):
            lines = "1 earlier line" if count == 1 else f"{count:d} earlier lines"
            line = f"-!- {n(room)}: {lines} (times UTC, {n(first_day)})"
        case Recalled(said):
            stamp = clock(said.time).encode("ascii")
            return b"[" + stamp + b"] " + render_line(said, viewer=viewer)
        case DayChanged(new_day):
            line = f"-!- day changed to {n(new_day)}"
        case RecallEnd(room, more):
            line = f"-!- end of earlier lines of {n(room)}"
            if more:
                line += "; /history N shows more"
        case _:
            raise TypeError(f"not a chat event: {event!r}")
    return line.encode("utf-8")


def _moderation_line(room: str, by: str, action: str, target: str, text: str) -> str:
    n = plain
    if action == "topic" and not text:
        return f"* {n(by)} cleared the topic of {n(room)}"
    if action == "mode":
        what = "only operators speak" if target == "+m" else "everyone speaks"
        return f"* {n(by)} set {n(room)} {n(target)} ({what})"
    form = _MODERATION_LINES.get(action)
    if form is None:  # an action of a newer server
        return f"* {n(by)} {n(action)} {n(target)} {n(text)}".rstrip()
    line = form.format(by=n(by), target=n(target), room=n(room), text=n(text))
    if text and "{text}" not in form:
        line += f" ({n(text)})"
    return line


# -- encoding events ------------------------------------------------------------------

_EVENT_CLASSES: dict[str, Callable[..., Event]] = {
    "message": Message,
    "action": Action,
    "direct": Direct,
    "joined": Joined,
    "left": Left,
    "crowd": Crowd,
    "nick": NickChanged,
    "notice": Notice,
    "closing": ServerClosing,
    "moderation": Moderation,
}
_EVENT_TAGS: dict[object, str] = {cls: tag for tag, cls in _EVENT_CLASSES.items()}
_EVENT_FIELDS: dict[str, frozenset[str]] = {
    tag: frozenset(f.name for f in fields(cls))  # type: ignore[arg-type]
    for tag, cls in _EVENT_CLASSES.items()
}
# The fields that hold a count (a non-negative int), by tag; every other field is a str.
_COUNT_FIELDS: dict[str, frozenset[str]] = {
    tag: frozenset(f.name for f in fields(cls) if f.type == "int")  # type: ignore[arg-type]
    for tag, cls in _EVENT_CLASSES.items()
}


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


# Every event's keys with "type", sorted; and one encoder for all (a line is encoded once
# per publish: this is on the chat's hot path).
_SORTED_KEYS: dict[str, tuple[str, ...]] = {
    tag: tuple(sorted({"type", *names})) for tag, names in _EVENT_FIELDS.items()
}
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def encode_event(event: Event) -> bytes:
    """Encode an event to cross a process boundary (e.g. through Redis).

    Args:
      event: the event.

    Returns:
      Compact, ASCII-only JSON; see "Events across processes" in the module docstring.

    Raises:
      TypeError: if ``event`` is not an event or one of its fields is not a string (a
        non-negative int, for a count).
    """
    tag = _EVENT_TAGS.get(type(event))
    if tag is None:
        raise TypeError(f"not a chat event: {event!r}")
    obj: dict[str, str | int] = {}
    counts = _COUNT_FIELDS[tag]
    for name in _SORTED_KEYS[tag]:  # in key order, so the encoder need not sort
        value = tag if name == "type" else getattr(event, name)
        if not (_is_count(value) if name in counts else isinstance(value, str)):
            wanted = "a non-negative int" if name in counts else "a str"
            raise TypeError(f"{type(event).__name__}.{name} must be {wanted}: {value!r}")
        obj[name] = value
    return _ENCODER.encode(obj).encode("ascii")


@functools.lru_cache(maxsize=4096)  # a room's line is asked for once per member
def event_id(data: bytes) -> int:
    """The id of an encoded event: a line said's id in its history; 0 for anything else
    (an event that is no line said, a line never recorded, bytes that are no event)."""
    if b'"id":' not in data:
        return 0
    try:
        value = json.loads(data).get("id", 0)
    except (ValueError, AttributeError, RecursionError):
        return 0
    return value if type(value) is int and value > 0 else 0


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
        raise ChatError(f"unknown event type {quote(tag)}")
    expected = _EVENT_FIELDS[tag]
    if obj.keys() != expected:
        raise ChatError(f"a {tag} event has the fields {', '.join(sorted(expected))}")
    counts = _COUNT_FIELDS[tag]
    for name, value in obj.items():
        if name in counts:
            if not _is_count(value):
                raise ChatError(f"the {name} of a {tag} event must be a non-negative integer")
        elif not isinstance(value, str):
            raise ChatError(f"every field of a {tag} event but its counts must be a string")
    return _EVENT_CLASSES[tag](**obj)
