"""The welcome burst and the ISUPPORT tokens it carries.

The welcome burst (:func:`welcome`) is ``001`` to ``004`` and then ``005``
(``RPL_ISUPPORT``) lines of at most 13 tokens each, every line within 512 bytes, the last
parameter ``are supported by this server``. ISUPPORT values escape space, backslash and
``=`` as ``\\xHH``, as the modern document says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ._message import numeric
from ._text import MAX_LINE

__all__ = ["ISUPPORT_TAIL", "MAX_ISUPPORT_TOKENS", "isupport_tokens", "welcome"]

#: The most tokens in one ``005`` line (the modern document's limit).
MAX_ISUPPORT_TOKENS: Final = 13
#: The last parameter of every ``005`` line.
ISUPPORT_TAIL: Final = "are supported by this server"

_ISUPPORT_ESCAPES = str.maketrans({" ": "\\x20", "\\": "\\x5C", "=": "\\x3D"})


def _token(name: str, value: str | int | None) -> str:
    if not (name.isascii() and name.isalnum() and name == name.upper()):
        raise ValueError(f"an ISUPPORT name is upper-case letters and digits, not {name!r}")
    if value is None or value == "":
        return name
    return f"{name}={str(value).translate(_ISUPPORT_ESCAPES)}"


def isupport_tokens(**values: str | int | None) -> list[str]:
    """ISUPPORT tokens: ``isupport_tokens(CASEMAPPING="ascii", NICKLEN=64, SAFELIST=None)``
    is ``["CASEMAPPING=ascii", "NICKLEN=64", "SAFELIST"]``.

    Args:
      values: each token's value; None or ``""`` for a token without one.

    Returns:
      The tokens in the order given, values escaped.

    Raises:
      ValueError: if a name is not upper-case ASCII letters and digits.
    """
    return [_token(name, value) for name, value in values.items()]


def welcome(
    server: str,
    nick: str,
    network: str,
    version: str,
    isupport: Mapping[str, str | None],
    created: str,
    *,
    user_modes: str = "i",
    channel_modes: str = "bmnot",
    param_modes: str = "bo",
) -> list[bytes]:
    """The lines that tell a client it is registered: ``001`` to ``005``.

    Args:
      server: the server's name.
      nick: the client's (IRC) nick.
      network: the network's name, for ``001``.
      version: the server's version, for ``002`` and ``004``.
      isupport: the ISUPPORT tokens' values (None for a token without one), in order.
      created: when the server started, as people read it, for ``003``.
      user_modes: the user modes ``004`` lists.
      channel_modes: the channel modes ``004`` lists.
      param_modes: the channel modes that take a parameter, for ``004``.

    Returns:
      One line each for ``001`` to ``004``, then as many ``005`` lines as the tokens need
      (at most 13 tokens each, each line within 512 bytes).

    Raises:
      ValueError: if a token name is malformed, a token alone cannot fit a line, or a
        name cannot be rendered.
    """
    lines = [
        numeric("001", nick, f"Welcome to the {network} Network, {nick}", server=server),
        numeric("002", nick, f"Your host is {server}, running version {version}", server=server),
        numeric("003", nick, f"This server was created {created}", server=server),
        numeric(
            "004", nick, server, version, user_modes, channel_modes, param_modes, server=server
        ),
    ]
    tokens = [_token(name, value) for name, value in isupport.items()]
    # The bytes of a 005 line without tokens; each token adds its length and a space.
    base = len(numeric("005", nick, ISUPPORT_TAIL, server=server))
    batch: list[str] = []
    size = base
    for token in tokens:
        cost = len(token.encode()) + 1
        if base + cost > MAX_LINE:
            raise ValueError(f"ISUPPORT token {token[:40]!r}... cannot fit a line")
        if len(batch) == MAX_ISUPPORT_TOKENS or size + cost > MAX_LINE:
            lines.append(numeric("005", nick, *batch, ISUPPORT_TAIL, server=server))
            batch, size = [], base
        batch.append(token)
        size += cost
    if batch:
        lines.append(numeric("005", nick, *batch, ISUPPORT_TAIL, server=server))
    return lines
