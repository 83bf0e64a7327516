"""The WebSocket chat protocol: JSON lines out, JSON events or plain text in.

What the server sends
---------------------

Each WebSocket text message from the server holds one or more events, each a JSON object
on a line of its own, ending in LF (JSON Lines): a client splits the message on LF and
parses each non-empty line. A member's events of one fan-out pass share a message. The
first event of a session is ``hello``; the others are the events of
:mod:`._events`, encoded as :func:`~._events.encode_event` does, with every field
neutralised as for a terminal (no control characters; the text is *text*: a page shows
it with ``textContent``, never as HTML)::

    {"epoch":"9f3c...","nick":"guest3","room":"#lobby","token":"...","type":"hello"}
    {"room":"#lobby","sender":"alice","text":"hi","type":"message"}
    {"room":"#lobby","sender":"alice","text":"waves","type":"action"}
    {"recipient":"bob","sender":"alice","text":"hi","type":"direct"}
    {"nick":"bob","room":"#lobby","type":"joined"}
    {"nick":"bob","room":"#lobby","type":"left"}
    {"joined":37,"left":12,"room":"#lobby","type":"crowd"}
    {"new":"al","old":"alice","type":"nick"}
    {"text":"bob is in #lobby","type":"notice"}
    {"text":"goodbye","type":"closing"}

Lines said (``message``, ``action``, ``direct``) carry ``id``, their id in their room's
(or the client's inbox's) history, and ``time``, in milliseconds since the Unix epoch
(``new Date(time)``)::

    {"id":7,"room":"#lobby","sender":"alice","text":"hi","time":1796645823123,"type":"message"}

Earlier lines, shown when the client joins a room or asks ``/history N``, come between
a ``history`` and a ``history_end`` event, each with ``"history":true`` (``more``: older
lines are kept than these)::

    {"count":2,"room":"#lobby","type":"history"}
    {"history":true,"id":5,"room":"#lobby","sender":"alice","text":"one",...}
    {"history":true,"id":6,"room":"#lobby","sender":"alice","text":"two",...}
    {"more":false,"room":"#lobby","type":"history_end"}

``hello`` tells the client its nick and room, its resume token (when the server keeps
sessions for a resume: see ``resume`` below) and the history's epoch; after it, a
``nick`` event whose ``old`` is the client's nick and a ``joined`` event whose ``nick``
is the client's are its own rename and move. A ``direct`` is the same for both ends:
the client compares ``sender`` and ``recipient`` with its nick.

What the server accepts
-----------------------

A text message that starts with ``{`` is JSON events, one object per line (a single
object, or JSON Lines as the server sends them)::

    {"type":"line","text":"/msg bob hi"}   a line as a TCP user types it (commands too)
    {"type":"say","text":"/not a command"}  said to the room as it is
    {"type":"me","text":"waves"}
    {"type":"msg","to":"bob","text":"hi"}
    {"type":"nick","nick":"bob"}
    {"type":"join","room":"#games"}
    {"type":"who"}  {"type":"rooms"}  {"type":"help"}  {"type":"quit"}
    {"type":"register","password":"..."}    {"type":"login","nick":"alice","password":"..."}
    {"type":"password","old":"...","new":"..."}  {"type":"logout"}
                                            the account commands (``old`` one word)
    {"type":"claim","room":"#dev"}  {"type":"topic","text":"..."}  {"type":"bans"}
    {"type":"op","nick":"bob"}  (and deop, mute, unmute, unban: a nick)
    {"type":"kick","nick":"bob","reason":"..."}  (and ban, kill; ``reason`` may be "")
    {"type":"mode","mode":"+m"}             the operators' commands (an empty ``room``,
                                            ``text`` or ``mode`` asks: /claim, /topic
                                            show the current one)
    {"type":"resume","token":"...","after":{"#lobby":57,"direct":3},"epoch":"..."}
                                            take back a detached session (``after`` and
                                            ``epoch`` optional: the last ids seen)

Any other text message is plain text: each of its lines (split on LF, a CR before it
dropped) is a line as a TCP user types it, so ``websocat`` and ``python -m websockets``
users type as they would in ``nc``. A line of a ``{`` message that is not one of the
events above (not JSON, not an object, an unknown type, a missing or extra field) is
refused with a notice (:class:`BadEvent`), never said to the room: a ``msg`` with a
typo must not reach everyone. Binary messages are refused with a notice too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from ._events import DayChanged, Event, Recalled, RecallEnd, RecallStart, Shown, encode_event
from ._resume import ResumeRequest, parse_after_untrusted
from ._text import neutralise, plain

__all__ = [
    "BadEvent",
    "hello_json",
    "parse_json_line_untrusted",
    "parse_web_message_untrusted",
    "render_json",
    "split_web_message_untrusted",
]


@dataclass(frozen=True, slots=True)
class BadEvent:
    """A JSON object that is not an event the server accepts; ``reason`` says why."""

    reason: str


def render_json(event: Shown) -> bytes:
    """The JSON line (ending in LF) a WebSocket client receives for ``event``; empty for
    what a WebSocket client is not shown (a day change: it has every line's time).

    Raises:
      TypeError: ``event`` is not an event.
    """
    match event:
        case RecallStart(room, count, _):
            return _encode_any({"count": count, "room": neutralise(room), "type": "history"})
        case RecallEnd(room, more):
            return _encode_any({"more": more, "room": neutralise(room), "type": "history_end"})
        case DayChanged():
            return b""
        case Recalled(said):
            return _encode_any({**json.loads(render_json(said)), "history": True})
    values: dict[str, Any] = {}
    for f in fields(event):
        value = getattr(event, f.name)
        values[f.name] = plain(value) if isinstance(value, str) else value
    cleaned: Event = type(event)(**values)
    return encode_event(cleaned) + b"\n"


def _encode_any(obj: dict[str, Any]) -> bytes:
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    return text.encode("ascii") + b"\n"


def hello_json(nick: str, room: str, token: str = "", epoch: str = "") -> bytes:
    """The first event of a session: who and where the client is; its resume token and
    the history's epoch, when given."""
    hello = {"nick": neutralise(nick), "room": neutralise(room), "type": "hello"}
    if token:
        hello["token"] = token
    if epoch:
        hello["epoch"] = epoch
    return encode_json(hello)


def encode_json(obj: dict[str, str]) -> bytes:
    """``obj`` as a JSON line: compact, ASCII, keys sorted, ending in LF."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    return text.encode("ascii") + b"\n"


# The accepted events: type -> (the fields it needs, how it becomes a typed line).
_EVENTS_IN: dict[str, tuple[tuple[str, ...], str]] = {
    "line": (("text",), "{text}"),
    "say": (("text",), "{text}"),  # escaped below when it starts with /
    "me": (("text",), "/me {text}"),
    "msg": (("to", "text"), "/msg {to} {text}"),
    "nick": (("nick",), "/nick {nick}"),
    "join": (("room",), "/join {room}"),
    "who": ((), "/who"),
    "rooms": ((), "/rooms"),
    "help": ((), "/help"),
    "quit": ((), "/quit"),
    "register": (("password",), "/register {password}"),
    "login": (("nick", "password"), "/login {nick} {password}"),
    "password": (("old", "new"), "/password {old} {new}"),
    "logout": ((), "/logout"),
    # the operators' commands (see triosock._sansio.rooms); an empty field is left out
    "claim": (("room",), "/claim {room}"),
    "topic": (("text",), "/topic {text}"),
    "mode": (("mode",), "/mode {mode}"),
    "bans": ((), "/bans"),
    **{name: (("nick",), f"/{name} {{nick}}") for name in ("op", "deop", "mute", "unmute")},
    "unban": (("nick",), "/unban {nick}"),
    **{name: (("nick", "reason"), f"/{name} {{nick}} {{reason}}") for name in ("kick", "ban")},
    "kill": (("nick", "reason"), "/kill {nick} {reason}"),
}
# Fields that are one word on a command line (/msg TO TEXT). A nick or a room is the rest
# of its line: the chat's rules say why one with a space is refused, as for a TCP user.
_WORDS = frozenset({"to", "old", "mode"})
_NAMES = frozenset({"nick", "room"})
# Fields that may be "": the command without them asks (/claim the room one is in, /mode).
_MAY_BE_EMPTY = frozenset({("claim", "room"), ("mode", "mode")})
# Passwords: the rest of their line, on one line (never said, whatever they hold).
_SECRETS = frozenset({"password", "new"})


def parse_web_message_untrusted(text: str) -> list[bytes | BadEvent | ResumeRequest]:
    """What one WebSocket text message says: lines as a TCP user types them (UTF-8, no
    terminator, maybe empty), or a :class:`BadEvent`. See the module docstring.

    Never raises, for any input.
    """
    return [
        parse_json_line_untrusted(item) if isinstance(item, str) else item
        for item in split_web_message_untrusted(text)
    ]


def split_web_message_untrusted(text: str) -> list[bytes | str]:
    """:func:`parse_web_message_untrusted`'s cheap first half: the lines of a plain text
    message (bytes, done), or the lines of a ``{`` message (str, each for
    :func:`parse_json_line_untrusted`). A server that paces input parses each JSON
    line when its turn comes: 64 KiB of ``{}`` lines parsed at once hold it ~0.3 s.

    Never raises, for any input.
    """
    if text.lstrip().startswith("{"):
        return [line for line in text.split("\n") if line.strip()]
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # a message ending in LF is that many lines, not one more empty one
    return [line.removesuffix("\r").encode("utf-8", "replace") for line in lines]


def parse_json_line_untrusted(line: str) -> bytes | BadEvent | ResumeRequest:
    """One line of a ``{`` message: the line it stands for, or why it is refused.

    Never raises, for any input.
    """
    try:
        obj: Any = json.loads(line)
    except (ValueError, RecursionError) as exc:
        return BadEvent(
            f"not a JSON event ({_brief(exc)}); to say text that starts with {{, "
            'send {"type":"say","text":...}'
        )
    if not isinstance(obj, dict):
        return BadEvent("a JSON event is an object")
    return _event_line(obj)


def _brief(exc: BaseException) -> str:
    return str(exc).split(":")[0][:60] if isinstance(exc, ValueError) else "nested too deep"


def _resume_event(obj: dict[str, Any]) -> ResumeRequest | BadEvent:
    extra = set(obj) - {"type", "token", "after", "epoch"}
    if extra:
        return BadEvent(f"a resume event has no field {json.dumps(sorted(extra)[0])[:40]}")
    token, epoch = obj.get("token"), obj.get("epoch")
    if not isinstance(token, str):
        return BadEvent("a resume event needs a string field 'token'")
    if epoch is not None and (not isinstance(epoch, str) or len(epoch) > 64):
        return BadEvent("the 'epoch' of a resume event is the string the hello told")
    after = None
    if "after" in obj:
        parsed = parse_after_untrusted(obj["after"])
        if isinstance(parsed, str):
            return BadEvent(parsed)
        after = parsed
    return ResumeRequest(token, after, epoch)


def _event_line(obj: dict[str, Any]) -> bytes | BadEvent | ResumeRequest:
    kind = obj.get("type")
    if kind == "resume":
        return _resume_event(obj)
    if not isinstance(kind, str) or kind not in _EVENTS_IN:
        shown = json.dumps(kind)[:40]
        expected = ", ".join(sorted([*_EVENTS_IN, "resume"]))
        return BadEvent(f"unknown event type {shown}: expected one of {expected}")
    needed, template = _EVENTS_IN[kind]
    extra = set(obj) - {"type", *needed}
    if extra:
        return BadEvent(f"a {kind} event has no field {json.dumps(sorted(extra)[0])[:40]}")
    values: dict[str, str] = {}
    for name in needed:
        value = obj.get(name)
        if not isinstance(value, str):
            return BadEvent(f"a {kind} event needs a string field {name!r}")
        if not value and (kind, name) in _MAY_BE_EMPTY:
            values[name] = value
            continue
        if name in _WORDS and (not value or value != value.strip() or len(value.split()) != 1):
            return BadEvent(f"the {name!r} of a {kind} event is one word")
        if name in _NAMES and (not value.strip() or "\n" in value or "\r" in value):
            return BadEvent(f"the {name!r} of a {kind} event is a name on one line")
        if name in _SECRETS and ("\n" in value or "\r" in value):
            return BadEvent(f"the {name!r} of a {kind} event is on one line")
        values[name] = value
    if kind == "say" and values["text"].startswith("/"):
        values["text"] = "/" + values["text"]  # // says /something
    return template.format(**values).encode("utf-8", "replace")
