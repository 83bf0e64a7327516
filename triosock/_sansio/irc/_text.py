"""The text IRC messages carry: cut to fit a line, CTCP, and formatting codes.

* :func:`split_text` cuts text into pieces that each fit the room a line leaves
  (:func:`privmsg_room`), at character boundaries, preferring a space near the end of a
  piece; the pieces joined give the text back exactly.
* :func:`parse_ctcp` and :func:`ctcp` read and write a CTCP body (modern.ircdocs.horse's
  CTCP document): ``\\x01COMMAND params\\x01``, the closing ``\\x01`` optional on input
  because some clients' message splitting drops it (``/me`` in particular).
* :func:`strip_formatting` and :func:`has_formatting` deal with the formatting codes of
  modern.ircdocs.horse's "IRC Formatting" and the common extensions: bold ``\\x02``,
  colour ``\\x03`` with its optional ``fg[,bg]`` (one or two digits each), hex colour
  ``\\x04`` with its optional ``RRGGBB[,RRGGBB]``, reset ``\\x0f``, monospace ``\\x11``,
  reverse ``\\x16``, italic ``\\x1d``, strikethrough ``\\x1e`` and underline ``\\x1f``.
  As the formatting document says, a comma after a colour is text unless a colour
  follows it: ``\\x034,`` is a red comma.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "MAX_LINE",
    "ctcp",
    "from_marks",
    "has_formatting",
    "parse_ctcp",
    "privmsg_room",
    "split_text",
    "strip_formatting",
    "to_marks",
]

#: The longest message without its tags, CR LF included (RFC 1459).
MAX_LINE: Final = 512
#: The longest UTF-8 character: the least room :func:`split_text` can work with.
_LONGEST_CHARACTER = 4

_FORMATTING = re.compile(
    r"\x03(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?"
    r"|\x04(?:[0-9A-Fa-f]{6}(?:,[0-9A-Fa-f]{6})?)?"
    r"|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)
_FORMATTING_CHARS = re.compile(r"[\x02\x03\x04\x0f\x11\x16\x1d\x1e\x1f]")
_SPACE = 0x20
_CONTINUATION_MASK, _CONTINUATION = 0xC0, 0x80


def split_text(text: str, room_bytes: int) -> list[str]:
    """Cut ``text`` into pieces that each take at most ``room_bytes`` bytes in UTF-8.

    A piece is cut after the last space in its last quarter when there is one (the space
    ends the piece), else at the last character boundary that fits; no character is ever
    split, dropped or moved: ``"".join(pieces) == text``. A piece begins with a space only
    when the cut before it found no space and fell just before one.

    Args:
      text: the text to send.
      room_bytes: the room for each piece, e.g. from :func:`privmsg_room`.

    Returns:
      The pieces, none empty (no piece at all for empty text).

    Raises:
      ValueError: if ``room_bytes`` is less than 4, the longest UTF-8 character.
    """
    if room_bytes < _LONGEST_CHARACTER:
        raise ValueError(f"room_bytes must be at least {_LONGEST_CHARACTER}, not {room_bytes}")
    # "surrogatepass": a lone surrogate (never in neutralised text) is measured as the
    # three bytes it would take, and the pieces decode back to the same string.
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= room_bytes:
        return [text] if text else []
    pieces: list[str] = []
    start = 0
    quarter = room_bytes // 4
    while len(data) - start > room_bytes:
        cut = start + room_bytes  # the first byte that does not fit
        while data[cut] & _CONTINUATION_MASK == _CONTINUATION:
            cut -= 1  # inside a character: back to its first byte
        space = data.rfind(b" ", max(start, cut - quarter), cut)
        if space >= 0:
            cut = space + 1
        pieces.append(data[start:cut].decode("utf-8", "surrogatepass"))
        start = cut
    pieces.append(data[start:].decode("utf-8", "surrogatepass"))
    return pieces


def privmsg_room(source: str, target: str, command: str = "PRIVMSG", tags_len: int = 0) -> int:
    """The bytes left for the text of ``:source COMMAND target :TEXT`` CR LF in 512.

    Args:
      source: the source as sent (``nick!user@host``): the receiving client counts it.
      target: the channel or nick.
      command: ``PRIVMSG`` or ``NOTICE``.
      tags_len: bytes to reserve for tags. Message-tags gives the tag section its own
        budget, outside the 512 bytes, so 0 is right for a client that negotiated tags;
        pass the tag section's length to stay within 512 for a client that counts the
        whole line.

    Returns:
      The room in bytes; it may be less than 4 (or negative) for an absurdly long source
      or target, which :func:`split_text` then refuses.
    """
    overhead = len(f":{source} {command} {target} :\r\n".encode("utf-8", "replace"))
    return MAX_LINE - overhead - tags_len


def parse_ctcp(text: str) -> tuple[str, str] | None:
    """Read a CTCP body: ``"\\x01ACTION waves\\x01"`` is ``("ACTION", "waves")``.

    Args:
      text: a ``PRIVMSG`` or ``NOTICE`` text.

    Returns:
      The command, upper-cased, and its parameters (``""`` for none; everything after the
      first space, spaces kept), or None if the text is no CTCP (it does not begin with
      ``\\x01`` or has no command). A missing closing ``\\x01`` is tolerated.
    """
    if text[:1] != "\x01":
        return None
    body = text[1:-1] if text[-1:] == "\x01" and len(text) > 1 else text[1:]
    command, _, params = body.partition(" ")
    if not command or "\x01" in command:
        return None
    return command.upper(), params


def ctcp(command: str, arg: str = "") -> str:
    """Write a CTCP body: ``ctcp("ACTION", "waves")`` is ``"\\x01ACTION waves\\x01"``.

    Args:
      command: the CTCP command, e.g. ``ACTION``, ``VERSION``, ``PING``.
      arg: its parameters, or ``""`` for none.

    Returns:
      The body, closing ``\\x01`` included.

    Raises:
      ValueError: if the command is empty or contains a space, or either contains
        ``\\x01``, NUL, CR or LF.
    """
    if not command or " " in command:
        raise ValueError(f"bad CTCP command {command!r}")
    for part in (command, arg):
        if "\x01" in part or "\x00" in part or "\r" in part or "\n" in part:
            raise ValueError(f"\\x01, NUL, CR or LF in a CTCP part: {part!r}")
    return f"\x01{command} {arg}\x01" if arg else f"\x01{command}\x01"


def has_formatting(text: str) -> bool:
    """True if ``text`` has any formatting code (see the module docstring)."""
    if text.isprintable():  # the common case: no control character at all
        return False
    return _FORMATTING_CHARS.search(text) is not None


def strip_formatting(text: str) -> str:
    """``text`` without its formatting codes, colour numbers included.

    ``"\\x02bold\\x02 \\x0304,12red\\x03"`` is ``"bold red"``. Other control characters
    are left alone (the chat neutralises them where text is shown).
    """
    if text.isprintable():
        return text
    return _FORMATTING.sub("", text)


#: IRC's formatting codes -> the chat's marks for them, and back (see
#: :data:`triosock._sansio.chat.FORMATTING_MARKS`).
_TO_MARKS: Final = {ord(c): 0xE000 + ord(c) for c in "\x02\x03\x04\x0f\x11\x16\x1d\x1e\x1f"}
_FROM_MARKS: Final = {mark: code for code, mark in _TO_MARKS.items()}


def to_marks(text: str) -> str:
    """An IRC client's text with its formatting codes as the chat carries them (marks
    that neutralising keeps, that other IRC clients get back as codes and that every
    other transport is shown without)."""
    return text.translate(_TO_MARKS)


def from_marks(text: str) -> str:
    """The chat's text with its formatting marks as IRC's codes again."""
    return text if text.isascii() else text.translate(_FROM_MARKS)
