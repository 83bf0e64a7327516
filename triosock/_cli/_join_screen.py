"""What the chat client's screen shows: the server's lines, neutralised and coloured
for a terminal (nicks by a hash of their name, rooms, notices, direct messages), or
byte for byte for a pipe; with the time before each line if asked."""

from __future__ import annotations

import os
import re
import sys
import time
import zlib
from collections.abc import Callable
from typing import Final

from .._sansio import chat as proto

__all__ = ["Screen", "colour_wanted", "paint"]

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_NOTICE = "\x1b[33m"  # yellow
_DIRECT = "\x1b[1;35m"  # bold magenta
#: Each nick gets one of these, by a hash of its name, as in irssi or weechat.
_NICK_COLOURS: Final = tuple(f"\x1b[{code}m" for code in (31, 32, 36, 35, 91, 92, 94, 95, 96))

# The server's lines (see render_line in _sansio/chat/_events.py and the UDP dialect).
_ACTION = re.compile(r"(\[#\S+\]) \* (\S+)( .*)?")
_MESSAGE = re.compile(r"(\[#\S+\]) (\S+?): (.*)")
_RENAMED = re.compile(r"\* (\S+) is now known as (\S+)")
#: The server's notice of the resume token: a terminal shows it on one short line.
_TOKEN = re.compile(r"-!- your resume token: ([A-Za-z0-9_-]+) \(secret; .*\)")
_PRESENCE = re.compile(r"\* (\S+) (joined|left) (\S+)")
_DIRECT_LINE = re.compile(r"(\[dm (?:from \S+|to \S+|\S+ -> \S+)\]) (.*)")
_UDP_SAID = re.compile(r"(\[\S+\]) (.*)")  # a UDP peer's message: [ip:port] text
_WELCOME = re.compile(r"-!- welcome to triosock chat, ([^\s;]+);.*")


def colour_wanted(stream_is_terminal: bool) -> bool:
    """Colour for a terminal, unless ``NO_COLOR`` is set (https://no-color.org: any
    non-empty value) or the terminal is ``dumb``."""
    if not stream_is_terminal or os.environ.get("NO_COLOR"):
        return False
    return os.environ.get("TERM", "") != "dumb"


def _nick_colour(nick: str, me: str) -> str:
    colour = _NICK_COLOURS[zlib.crc32(proto.nick_key(nick).encode()) % len(_NICK_COLOURS)]
    mine = bool(me) and proto.nick_key(nick) == proto.nick_key(me)
    return f"{_BOLD if mine else ''}{colour}{nick}{_RESET}"


def paint(text: str, me: str = "") -> str:
    """A line from the server with colour: notices, nicks, rooms, direct messages.

    Args:
      text: one neutralised line, as the server renders it.
      me: the user's own nick, shown in bold.
    """
    if text.startswith("-!- ") or text == proto.BYE.decode():
        return f"{_NOTICE}{text}{_RESET}"
    if match := _ACTION.fullmatch(text):
        room, nick, rest = match[1], match[2], match[3] or ""
        return f"{_DIM}{room}{_RESET} * {_nick_colour(nick, me)}{rest}"
    if match := _MESSAGE.fullmatch(text):
        return f"{_DIM}{match[1]}{_RESET} {_nick_colour(match[2], me)}: {match[3]}"
    if match := _RENAMED.fullmatch(text):
        old, new = _nick_colour(match[1], me), _nick_colour(match[2], me)
        return f"{_DIM}*{_RESET} {old}{_DIM} is now known as{_RESET} {new}"
    if match := _PRESENCE.fullmatch(text):
        who, verb, room = _nick_colour(match[1], me), match[2], match[3]
        return f"{_DIM}*{_RESET} {who}{_DIM} {verb} {room}{_RESET}"
    if match := _DIRECT_LINE.fullmatch(text):
        return f"{_DIRECT}{match[1]}{_RESET} {match[2]}"
    if match := _UDP_SAID.fullmatch(text):
        return f"[{_nick_colour(match[1][1:-1], me)}] {match[2]}"
    return text


class Screen:
    """Where the room's lines go, and how they look.

    Args:
      terminal: stdout is a terminal: lines are neutralised, split at line breaks, and
        written as text through ``write``. Otherwise the bytes go to stdout unchanged.
      colour: paint the lines (only with ``terminal``).
      timestamps: put ``HH:MM:SS`` before each line.

    Attributes:
      nick: the user's nick once known (from the welcome and renames): the prompt's.
      write: how text reaches the terminal; UTF-8 to stdout unless the prompt runs, when
        it goes through prompt_toolkit's proxy.
    """

    def __init__(self, *, terminal: bool, colour: bool, timestamps: bool) -> None:
        self.nick = ""
        self.write: Callable[[str], None] = _write_stdout
        self._terminal = terminal
        self._colour = colour and terminal
        self._timestamps = timestamps

    def show(self, line: bytes) -> None:
        if not self._terminal:
            when = time.strftime("%H:%M:%S ").encode() if self._timestamps else b""
            sys.stdout.buffer.write(when + line + b"\n")
            sys.stdout.flush()
            return
        shown = []
        for part in line.split(b"\n"):
            text = proto.neutralise(part.decode("utf-8", errors="replace"))
            self._follow_nick(text)
            if token := _TOKEN.fullmatch(text):  # its secret on one short line
                text = f"-!- resume token {token[1]}: send /resume and it after a drop"
            if self._colour:
                text = paint(text, self.nick)
            if self._timestamps:
                stamp = time.strftime("%H:%M:%S")
                text = f"{_DIM}{stamp}{_RESET} {text}" if self._colour else f"{stamp} {text}"
            shown.append(text + "\n")
        self.write("".join(shown))

    def _follow_nick(self, text: str) -> None:
        if match := _WELCOME.fullmatch(text):
            self.nick = match[1]
        elif (match := _RENAMED.fullmatch(text)) and proto.nick_key(match[1]) == proto.nick_key(
            self.nick
        ):
            self.nick = match[2]


def _write_stdout(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8", errors="replace"))
    sys.stdout.flush()
