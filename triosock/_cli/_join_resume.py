"""What ``chat join`` keeps to reconnect by itself and resume exactly once (TCP).

The client turns tags on (``/tags on``, see :mod:`triosock._sansio.chat._tags`), so
that each line said comes with its id and key (its room, or ``direct``). A
:class:`Resumer` reads every line the server sends and keeps what a resume needs: the
resume token of the last welcome (each works once: each session start tells a new
one), the history's epoch, the last id shown of each key, the user's nick and room. A
new connection then begins with ``/tags on`` and ``/resume TOKEN EPOCH ROOM=ID
direct=ID`` (the room the user is in and its direct messages), and gets exactly what
came after those ids.

What the user sees stays what the server would show without tags: the tags are taken
off each line, the epoch's notice (an answer to the client's own ``/tags on``) is not
shown, and a line whose id was shown already is dropped. That is only a repeat a
connection did not ask for: the earlier lines a fresh session is shown on arrival (a
resume the server refused, on the same history) repeat what was seen; after a
``/history`` or a ``/join`` typed on the connection, the earlier lines are shown, as
they were asked for. Ids of another epoch (a server that lost its history) and the
direct messages of another session (a new one, its own count) are forgotten.

How long it waits between attempts (:func:`backoff`): "full jitter" (AWS's
architecture blog, "Exponential Backoff And Jitter"): the n-th attempt (from 0) waits
a random time between 0 and ``min(MAX_DELAY, FIRST_DELAY * 2 ** n)`` seconds, so the
clients of a server that died do not all come back in the same instant.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Final

from .._sansio import chat as proto

__all__ = [
    "DEFAULT_RECONNECT_FOR",
    "FIRST_DELAY",
    "MAX_DELAY",
    "Resumer",
    "arrival_line",
    "backoff",
    "is_final",
]

#: The back-off: the first attempt waits up to FIRST_DELAY seconds, each next one up to
#: twice as long, at most MAX_DELAY.
FIRST_DELAY: Final = 0.5
MAX_DELAY: Final = 10.0
#: Seconds of trying before the client gives up (the server's default resume window).
DEFAULT_RECONNECT_FOR: Final = 120.0

_WELCOME = re.compile(r"-!- welcome to triosock chat, ([^\s;]+);.*")
_WELCOME_BACK = re.compile(r"-!- welcome back, ([^\s:]+):.*")
_TOKEN = re.compile(r"-!- your resume token: ([A-Za-z0-9_-]+) \(secret; .*\)")
_RENAMED = re.compile(r"\* (\S+) is now known as (\S+)")
_JOINED = re.compile(r"\* (\S+) joined (#\S+)")
#: The last lines after which the server closes for good: the session went on
#: elsewhere (another client resumed it), it idled, or the address has too many
#: connections. Reconnecting would fight the other client, or the server's rule.
_FINAL: Final = (
    "-!- your session went on on another connection",
    "-!- disconnected: idle for ",
    "-!- refused: ",
)


def backoff(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before attempt number ``attempt`` (from 0): full jitter."""
    return float(rand() * min(MAX_DELAY, FIRST_DELAY * 2.0 ** min(attempt, 32)))


def is_final(line: bytes) -> bool:
    """Whether the server's ``line`` (its last before closing) says not to come back."""
    text = line.decode("utf-8", errors="replace")
    return text.startswith(_FINAL)


class Resumer:
    """The client's side of tags and resumes, across its connections (no IO).

    Args:
      nick: the nick the user asked for (``--nick``), taken again by a new session.
      say: tells the user what happened to a resume (a line on stderr).

    Attributes:
      token, epoch: the last resume token and epoch the server told (None: none yet).
      seen: key (a room, or ``direct``) -> the newest id shown.
      nick, room: the user's, as the server's lines tell them ("": not known yet).
      welcomed: the current connection was welcomed (a session began or resumed on it).
      resumed: on the current connection, whether the resume asked for was granted
        (None: none asked, or no answer yet).
    """

    def __init__(
        self,
        nick: str | None = None,
        say: Callable[[str], None] = print,
        password: str | None = None,
    ) -> None:
        self._say = say
        self.token: str | None = None
        self.epoch: str | None = None
        self.seen: dict[str, int] = {}
        self.nick = ""
        self.room = ""
        self.welcomed = False
        self.resumed: bool | None = None
        self._wanted = nick  # the nick the user chose last
        self._login = arrival_line(nick, password) if password else None
        self._asked = False
        self._resuming = False

    def hello(self) -> list[bytes]:
        """The first lines of a new connection: tags, then a resume or the nick."""
        self._asked = self.welcomed = False
        self.resumed = None
        self._resuming = self.token is not None
        if self.token is not None:
            after = {key: self.seen[key] for key in (self.room, proto.DIRECT) if key in self.seen}
            return [b"/tags on", proto.resume_line(self.token, self.epoch, after)]
        return [b"/tags on", *self.nick_lines()]

    def nick_lines(self) -> list[bytes]:
        """``/login`` with the account given, else ``/nick`` for the nick the user chose,
        if any (a new session is a guest)."""
        line = self._login or arrival_line(self._wanted, None)
        return [line] if line else []

    def sent(self, line: bytes) -> None:
        """The user said ``line``: a ``/history`` or ``/join`` asks for earlier lines."""
        if isinstance(proto.parse_line_untrusted(line), proto.History | proto.Join):
            self._asked = True

    def receive(self, line: bytes) -> bytes | None:
        """A line from the server: the line to show (without tags), or None."""
        tags, line = proto.split_tags_untrusted(line)
        if "epoch" in tags:  # the answer to our /tags on, at each session start
            if tags["epoch"] != self.epoch:
                self.seen.clear()  # ids of another history mean nothing here
            self.epoch = tags["epoch"]
            return None
        ident, key = tags.get("id", ""), tags.get("key", "")
        if ident.isascii() and ident.isdigit() and key:
            number, last = int(ident), self.seen.get(key, 0)
            if number <= last and not self._asked:
                return None  # shown already
            self.seen[key] = max(number, last)
            return line
        self._follow(line.decode("utf-8", errors="replace"))
        return line

    def _follow(self, text: str) -> None:
        """What the server's untagged lines tell: the session, its token, nick, room."""
        if match := _TOKEN.fullmatch(text):
            self.token = match[1]
        elif match := _WELCOME.fullmatch(text):  # a new session: its own direct ids
            self.nick, self.welcomed = match[1], True
            self.seen.pop(proto.DIRECT, None)
            if self._resuming:
                self.resumed = False
                self._say(f"the session was not resumed (the server says why): now {self.nick}")
        elif match := _WELCOME_BACK.fullmatch(text):
            self.nick, self.welcomed = match[1], True
            self.resumed = True
            self._say(f"the session was resumed, {self.nick}")
        elif (match := _RENAMED.fullmatch(text)) and self._mine(match[1]):
            self.nick = self._wanted = match[2]
        elif (match := _JOINED.fullmatch(text)) and self._mine(match[1]):
            self.room = match[2]

    def _mine(self, nick: str) -> bool:
        return bool(self.nick) and proto.nick_key(nick) == proto.nick_key(self.nick)


def arrival_line(nick: str | None, password: str | None) -> bytes | None:
    """What a new session says first: ``/login NICK PASSWORD`` with a password,
    ``/nick NICK`` without, nothing without a nick."""
    if not nick:
        return None
    if password:
        return b"/login " + nick.encode("utf-8", "replace") + b" " + password.encode("utf-8")
    return b"/nick " + nick.encode("utf-8", "replace")
