"""Sessions that resume, sans-IO: tokens, what a resume asks for, and the pace of wrong
tokens.

A session that ends without ``/quit`` is *detached* for the server's resume window (its
nick and room kept, what is said meanwhile kept in the history); a new connection that
presents the session's token gets it back (see the chat service). This module holds the
rules that need no IO:

* **Tokens** (:func:`new_token`) are 32 characters of the URL-safe base64 alphabet
  (``A-Z a-z 0-9 - _``): 192 random bits. The server keeps only their SHA-256
  (:func:`token_digest`), finds a session by it and compares digests in constant time,
  so a token is never stored, logged or compared in clear. :func:`check_token_untrusted`
  says what is wrong with a text that is no token.
* **A request** (:class:`ResumeRequest`): the token, and for clients that count ids, the
  last id seen per room (``after``: room name, or :data:`DIRECT` for direct messages,
  to id) and the epoch those ids belong to.
* **Wrong tokens are slowed per address** (:class:`WrongTokens`): the n-th wrong token
  from one address within :data:`WRONG_TOKEN_MEMORY` seconds waits
  ``min(WRONG_TOKEN_FIRST * 2 ** (n - 1), WRONG_TOKEN_MOST)`` seconds for its answer;
  an address that makes no mistake for that long starts again from the first.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Final

from ..ratelimit import Backoff

__all__ = [
    "DIRECT",
    "TOKEN_LENGTH",
    "WRONG_TOKEN_FIRST",
    "WRONG_TOKEN_MEMORY",
    "WRONG_TOKEN_MOST",
    "ResumeRequest",
    "WrongTokens",
    "check_token_untrusted",
    "new_token",
    "parse_after_untrusted",
    "token_digest",
]

#: The length of a resume token, in characters.
TOKEN_LENGTH: Final = 32
#: The key of ``after`` that stands for the session's direct messages.
DIRECT: Final = "direct"
#: Seconds the first wrong token from an address waits; each next one twice as long,
#: at most WRONG_TOKEN_MOST; an address is forgotten WRONG_TOKEN_MEMORY seconds after
#: its last wrong token.
WRONG_TOKEN_FIRST: Final = 0.25
WRONG_TOKEN_MOST: Final = 8.0
WRONG_TOKEN_MEMORY: Final = 60.0
#: The most addresses remembered (the oldest is forgotten first).
WRONG_TOKEN_ADDRESSES: Final = 4096
#: The most rooms an ``after`` may name.
MAX_AFTER: Final = 64

_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")
_MAX_ID = 2**53  # what a JSON number holds exactly


def new_token() -> str:
    """A new resume token: 32 URL-safe characters, 192 random bits."""
    return secrets.token_urlsafe(24)


def token_digest(token: str) -> bytes:
    """What the server keeps of a token: its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


def check_token_untrusted(text: str) -> str | None:
    """None when ``text`` has the form of a token; else why not, safe to show."""
    if _TOKEN.fullmatch(text):
        return None
    return (
        f"a resume token is {TOKEN_LENGTH} characters: letters, digits, - and _ "
        "(the welcome told it)"
    )


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    """A client asks for its session back.

    Attributes:
      token: what it presents (not checked yet).
      after: for clients that count ids: room (or :data:`DIRECT`) -> the last id seen;
        None: resume after the last line the server wrote to the old connection.
      epoch: the epoch of those ids, if the client knows it.
    """

    token: str
    after: dict[str, int] | None = field(default=None, compare=False)
    epoch: str | None = None


def parse_after_untrusted(value: Any) -> dict[str, int] | str:
    """The ``after`` of a JSON resume event, or why it is refused (safe to show)."""
    if not isinstance(value, dict):
        return "'after' is an object: room -> the last id seen"
    if len(value) > MAX_AFTER:
        return f"'after' names at most {MAX_AFTER} rooms"
    after: dict[str, int] = {}
    for key, number in value.items():
        if not isinstance(key, str) or len(key) > 64:
            return "each key of 'after' is a room name (or 'direct')"
        if type(number) is not int or not 0 <= number < _MAX_ID:
            return "each value of 'after' is an id: a whole number, 0 or more"
        after[key] = number
    return after


class WrongTokens(Backoff):
    """How long the answer to a wrong token from each address waits (see the module
    docstring)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(
            WRONG_TOKEN_FIRST, WRONG_TOKEN_MOST, WRONG_TOKEN_MEMORY, WRONG_TOKEN_ADDRESSES
        )

    def wrong(self, address: str, now: float) -> float:
        """One more wrong token from ``address`` at ``now``: the seconds its answer waits."""
        return self.failed(address, now)
