"""Chat names as IRC names: nicks mapped both ways, channels as they are.

**IRC nicks** (RFC 2812, as this server advertises them): a letter or one of
``[]\\`_^{|}``, then letters, digits, those and ``-``, at most :data:`NICKLEN`
characters. Names compare under ``CASEMAPPING=ascii`` (:data:`CASEMAPPING`, only A-Z
and a-z are the same letter), which agrees with the chat's :func:`~..chat.nick_key`
on every name the chat gives out: ``rfc1459`` would make ``[`` and ``{`` one character,
and this mapping uses both.

**Chat names** are nicks (a letter, then up to 23 letters, digits, ``_``, ``-``, ``.``)
and UDP peers, named by their address (``127.0.0.1:5000``, ``[2001:db8::1]:5000``,
``[fe80::1%eth0]:5000``). :func:`to_irc_nick` maps every name to an IRC nick:

* A name that is already an IRC nick and does not begin with the backquote
  (:data:`NICK_MARKER`) is itself: ``alice``, ``guest7``, ``a_b-c``.
* Any other name is *written out*: a backquote, then each of its characters as::

      letters, digits, [ ] `     themselves
      .  _  :  -  %              _  |  -  ^  \\     (one character each)
      anything else              {hex}: its code point in lower-case hex, e.g. {20}

  so that the common cases read well::

      127.0.0.1:5000             `127_0_0_1-5000
      [2001:db8::1]:5000         `[2001-db8--1]-5000
      [fe80::1%eth0]:53          `[fe80--1\\eth0]-53
      john.doe                   `john_doe
      j_doe.x                    `j|doe_x

Why it is sound: no chat nick begins with a backquote (a chat nick begins with a
letter), so a name that is itself and a name written out never meet; writing out is a
bijection, character by character; and it changes no letter's case, while everything it
adds is case-less, so two names that differ other than in the case of ASCII letters map to
nicks that differ under ``ascii`` casemapping: different chat nicks (by
:func:`~..chat.nick_key`) never map to one IRC nick. Every valid chat nick maps to at most
25 characters, every UDP address (scope names of up to 15 letters and digits) to at most
64, so :data:`NICKLEN` is 64, not the usual 30: a client uses it to check the nicks it
chooses (which the chat limits to 24 characters anyway), and the IRC clients in use show
longer nicks of others without trouble.

:func:`from_irc_nick` undoes the mapping, and takes a nick that is not a written-out form
(it does not begin with a backquote, or is not exactly what :func:`to_irc_nick` writes)
for itself, which the chat's :func:`~..chat.validate_nick` then judges. So an IRC user
may also *choose* the nick ```john_doe`` to be ``john.doe`` in the chat, while
```127_0_0_1-5000`` decodes to an address, which no user can take.

**Channels.** Every valid chat room (``#`` and 1 to 32 of ``a-z0-9_.-``, see
:func:`~..chat.validate_room`) is a valid IRC channel of at most :data:`CHANNELLEN`
characters, so rooms are channels as they are; a channel a client names goes to
``validate_room``, whose lower-casing agrees with ``ascii`` casemapping.
"""

from __future__ import annotations

import re
import string
from typing import Final

from ..chat._names import MAX_ROOM_LENGTH

__all__ = [
    "CASEMAPPING",
    "CHANNELLEN",
    "CHANTYPES",
    "NICKLEN",
    "NICK_MARKER",
    "from_irc_nick",
    "irc_lower",
    "is_irc_channel",
    "is_irc_nick",
    "to_irc_nick",
]

#: The longest nick: every mapped chat name fits (see the module docstring).
NICKLEN: Final = 64
#: The longest channel name, ``#`` included: every chat room fits.
CHANNELLEN: Final = 1 + MAX_ROOM_LENGTH
#: The channel prefixes: chat rooms are ``#`` rooms.
CHANTYPES: Final = "#"
#: How names compare: only ASCII letters fold.
CASEMAPPING: Final = "ascii"

#: The first character of every nick written out by :func:`to_irc_nick`.
NICK_MARKER: Final = "`"

_IRC_NICK = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}\-]*")
_IRC_CHANNEL = re.compile(r"#[^\x00\x07\r\n ,:]+")
_LITERAL = frozenset(string.ascii_letters + string.digits + "[]`")
_WRITTEN: Final = {".": "_", "_": "|", ":": "-", "-": "^", "%": "\\"}
_READ: Final = {written: char for char, written in _WRITTEN.items()}
_HEX = frozenset(string.hexdigits)
_MAX_HEX = 6  # enough for U+10FFFF
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def irc_lower(name: str) -> str:
    """``name`` under :data:`CASEMAPPING`: A-Z lowered, every other character kept."""
    return name.translate(_ASCII_LOWER)


def is_irc_nick(name: str) -> bool:
    """True if ``name`` is a nick this server accepts from IRC (see the module docstring).

    It says nothing of the chat's own rules (``validate_nick``), nor whether the nick
    is taken.
    """
    return len(name) <= NICKLEN and _IRC_NICK.fullmatch(name) is not None


def is_irc_channel(name: str) -> bool:
    """True if ``name`` is an IRC channel name this server accepts: ``#``, then 1 to
    ``CHANNELLEN - 1`` characters other than space, comma, colon, BEL, NUL, CR and LF
    (RFC 2812). Every valid chat room is one."""
    return len(name) <= CHANNELLEN and _IRC_CHANNEL.fullmatch(name) is not None


def _write(char: str) -> str:
    if char in _LITERAL:
        return char
    written = _WRITTEN.get(char)
    return written if written is not None else f"{{{ord(char):x}}}"


def to_irc_nick(name: str) -> str:
    """The IRC nick of a chat name (see the module docstring for the form).

    Args:
      name: a chat nick or a UDP peer's name (any string is mapped, and the mapping is
        injective on all of them).

    Returns:
      ``name`` itself if it is an IRC nick not beginning with `````, else its written-out
      form. The result is a valid IRC nick (:func:`is_irc_nick`) for every valid chat nick
      and every UDP peer's address.
    """
    if name[:1] != NICK_MARKER and _IRC_NICK.fullmatch(name) is not None:
        return name
    return NICK_MARKER + "".join([_write(char) for char in name])


def from_irc_nick(irc: str) -> str:
    """The chat name of an IRC nick: :func:`to_irc_nick` undone.

    Args:
      irc: a nick as an IRC client sent it (``NICK``, a ``PRIVMSG`` target, ...).

    Returns:
      The chat name ``irc`` is the mapped form of; ``irc`` itself if it is not one (it
      does not begin with `````, or is not exactly what :func:`to_irc_nick` writes, up to
      the case of letters and hex digits).
    """
    if irc[:1] != NICK_MARKER:
        return irc
    chars: list[str] = []
    position, end = 1, len(irc)
    while position < end:
        char = irc[position]
        if char == "{":
            close = irc.find("}", position)
            digits = irc[position + 1 : close]
            if close < 0 or not 0 < len(digits) <= _MAX_HEX or not _HEX.issuperset(digits):
                return irc
            code = int(digits, 16)
            if code > 0x10FFFF:
                return irc
            chars.append(chr(code))
            position = close + 1
        else:
            chars.append(_READ.get(char, char))
            position += 1
    name = "".join(chars)
    # Only the canonical form counts: ``{61}`` is not how "a" is written, so "`{61}" is
    # nobody's mapped nick, and a mapped nick names exactly one chat name.
    return name if irc_lower(to_irc_nick(name)) == irc_lower(irc) else irc
