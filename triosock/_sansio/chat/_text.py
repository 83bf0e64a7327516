"""Neutralising user text before it reaches somebody else's terminal.

User text ends up on other people's terminals, so it loses: escape sequences (CSI
``ESC [ ... final`` and its 8-bit form U+009B; OSC ``ESC ]``, DCS ``ESC P``, SOS, PM and
APC strings up to BEL or ST, or to the end of the text when unterminated; any other
``ESC`` with its intermediate and final characters), every other C0 control, DEL and C1
control (tab, LF, VT, FF, CR, NEL and U+2028/U+2029 become a space, the rest are
removed), the bidi embedding/override/isolate characters U+202A-U+202E and
U+2066-U+2069, and lone surrogates (replaced by U+FFFD, so the result always encodes as
UTF-8). :func:`sanitize_text` cuts text longer than its ``max_length`` (the last
character then being ``…``); the chat itself never truncates: it refuses lines over its
limit instead. The result has no character of category ``Cc``, and sanitising it again
changes nothing.

Before neutralising, a typed line has its erasures applied (:func:`apply_erasures`):
a terminal in character mode (``telnet``'s ``mode character``) sends the Backspace key
as BS or DEL, and the line the user saw is the one without the erased characters.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "FORMATTING_MARKS",
    "MAX_TEXT_LENGTH",
    "apply_erasures",
    "neutralise",
    "plain",
    "quote",
    "sanitize_text",
]

#: The default limit of :func:`sanitize_text`, in characters.
MAX_TEXT_LENGTH: Final = 1000

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


def neutralise(text: str) -> str:
    """Everything :func:`sanitize_text` does except truncating."""
    if text.isprintable():  # the common case: nothing to do (no Cc, Cf, Cs, Zl, Zp)
        return text
    text = _ESCAPES.sub("", text)
    text = _SURROGATES.sub("\ufffd", text)
    return text.translate(_NEUTRALISE)


#: IRC's formatting codes (bold, colour, hex colour, reset, monospace, reverse, italic,
#: strikethrough, underline) as the chat's text carries them: each as the private-use
#: character U+E000 + its code, which neutralising keeps, so that what an IRC client
#: formats reaches other IRC clients formatted. Every other transport is shown the text
#: without them (:func:`plain`).
FORMATTING_MARKS: Final = "\ue002\ue003\ue004\ue00f\ue011\ue016\ue01d\ue01e\ue01f"
_MARKS = re.compile(
    "\ue003(?:[0-9]{1,2}(?:,[0-9]{1,2})?)?"  # a colour, with its numbers
    "|\ue004(?:[0-9A-Fa-f]{6}(?:,[0-9A-Fa-f]{6})?)?"  # a hex colour
    f"|[{FORMATTING_MARKS}]"
)


def plain(text: str) -> str:
    """``text`` neutralised, and without IRC's formatting (:data:`FORMATTING_MARKS`, a
    colour's numbers with it): as a terminal or a page shows it."""
    text = neutralise(text)
    if text.isascii():  # the common case: no mark
        return text
    return _MARKS.sub("", text)


def sanitize_text(text: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """Make user text safe to show on somebody else's terminal.

    See the module docstring for exactly what is removed. The result has no ``Cc``
    character and no bidi override, is at most ``max_length`` characters long, encodes
    as UTF-8, and is its own sanitised form.

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
    text = neutralise(text)
    if len(text) > max_length:
        text = text[: max_length - 1] + "…"
    return text


def apply_erasures(text: str) -> str:
    """The line as the user saw it: each BS or DEL erases the character before it.

    An erasure at the start of the line erases nothing. ``"helo\\x7flo"`` is
    ``"hello"``.
    """
    if "\x08" not in text and "\x7f" not in text:
        return text
    kept: list[str] = []
    for char in text:
        if char in "\x08\x7f":
            if kept:
                kept.pop()
        else:
            kept.append(char)
    return "".join(kept)


def quote(name: str) -> str:
    """A short, quoted form of a user-supplied name for error messages.

    ``repr`` escapes every character that is not printable (controls, format characters
    such as bidi overrides, surrogates), so the result is safe to show.
    """
    return repr(name if len(name) <= 40 else name[:39] + "…")
