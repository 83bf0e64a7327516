"""Nicks and room names: what is valid, and when two are the same.

* A nick is 1 to 24 ASCII characters: letters, digits, ``_``, ``-`` and ``.``, starting
  with a letter. Its canonical form is itself (case is kept for display); uniqueness is
  case-insensitive, by :func:`nick_key`. Non-ASCII letters are refused, which also rules
  out look-alike nicks. New users are called :func:`default_nick` (``guest1``, ...).
* A room is ``#`` (added if missing) and 1 to 32 of the same characters (a digit may
  come first). Its canonical form is lower-case: ``Lobby`` -> ``#lobby``. Everybody
  starts in :data:`DEFAULT_ROOM`.

Neither a nick nor a room can contain a space, ``:`` or ``]``, which keeps the rendered
lines unambiguous: a user cannot fake another user's line or a server line. A UDP peer is
named by its address (``127.0.0.1:5000``), which no user can take as a nick because of
the ``:``.
"""

from __future__ import annotations

import re
from typing import Final

from ._errors import ChatError
from ._text import quote

__all__ = [
    "DEFAULT_ROOM",
    "MAX_NICK_LENGTH",
    "MAX_ROOM_LENGTH",
    "default_nick",
    "nick_key",
    "validate_nick",
    "validate_room",
]

#: The room every user starts in.
DEFAULT_ROOM: Final = "#lobby"
#: The longest nick, in characters.
MAX_NICK_LENGTH: Final = 24
#: The longest room name, in characters, not counting the ``#``.
MAX_ROOM_LENGTH: Final = 32

_NAME_CHARS = re.compile(r"[A-Za-z0-9_.\-]*")
_FIRST_BAD_CHAR = re.compile(r"[^A-Za-z0-9_.\-]")


def _check_chars(kind: str, kinds: str, name: str) -> None:
    if not _NAME_CHARS.fullmatch(name):
        bad = _FIRST_BAD_CHAR.search(name)
        assert bad is not None
        # A space is the likeliest mistake (``/nick John Smith``): say it in words.
        why = f": {kinds} cannot contain spaces" if bad[0].isspace() else ""
        raise ChatError(
            f"{kind} {quote(name)} contains {quote(bad[0])}{why}; "
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
        raise ChatError(f"nick {quote(name)} is too long: at most {MAX_NICK_LENGTH} characters")
    _check_chars("nick", "nicks", name)
    if not ("a" <= name[0] <= "z" or "A" <= name[0] <= "Z"):
        raise ChatError(f"nick {quote(name)} must start with a letter")
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
            f"room {quote(name)} is too long: at most {MAX_ROOM_LENGTH} characters after #"
        )
    _check_chars("room", "room names", body)
    return "#" + body.lower()


def default_nick(n: int) -> str:
    """The nick of the ``n``-th new user, before they choose one: ``guest1``, ...

    Args:
      n: a non-negative number.

    Returns:
      ``guest`` followed by ``n``.

    Raises:
      ValueError: if ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"a guest number must not be negative, not {n}")
    return f"guest{n}"
