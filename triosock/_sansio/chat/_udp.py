"""The UDP tutorial dialect: heartbeats, ``quit``, and everything else said in the room.

A datagram is compared with its surrounding whitespace (spaces, tabs, CR, LF) stripped
and its ASCII letters folded to lower case, as the tutorial's server does: then
:data:`HEARTBEAT` (``^hb^``) is a :class:`Heartbeat` and :data:`UDP_QUIT` (``quit``,
``QUIT``, ``quit\\r\\n``, ...) is a :class:`UdpQuit` (the server answers :data:`BYE`).
Anything else is :class:`UdpText`: decoded with replacement, neutralised, trailing
whitespace dropped (it may be empty; the server ignores empty text). The chat takes such a
datagram as a line, as from a TCP user, so ``/msg`` and the other commands work over UDP
too (the tutorial's dialect has none: there, a ``/msg`` would be said to everyone). A room message
from a UDP peer is acknowledged to every UDP peer as ``[IP:PORT] text``, e.g.
``[192.0.2.7:5000] hi``; an IPv6 address is bracketed inside, as in
:func:`format_address`: ``[[2001:db8::1]:5000] hi``.

Address validation (QUIC's rule, RFC 9000 section 8.1): until an address has proved that
it reads what is sent to it, the server sends it at most :data:`REFLECTION_FACTOR` times
the bytes it received from it, and no room traffic; so a spoofed source cannot turn the
server into a reflector. The first reply is :func:`join_notice`, ``send ^ok^TOKEN to
join``; the address is validated by a datagram that is exactly :func:`address_token`
(whitespace around it aside). An echo server at a spoofed address sends the notice back
whole, which is not the token, so it never validates. The token is an HMAC of the
address under a secret the server keeps, so only who sees the reply can send it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Final, TypeAlias

from ..addresses import format_address as _format_address
from ._text import neutralise

__all__ = [
    "BYE",
    "HEARTBEAT",
    "REFLECTION_FACTOR",
    "TOKEN_MARK",
    "UDP_QUIT",
    "Datagram",
    "Heartbeat",
    "UdpQuit",
    "UdpText",
    "address_token",
    "classify_datagram_untrusted",
    "format_address",
    "is_address_token",
    "join_notice",
    "notice_token_untrusted",
    "udp_ack_line",
]

#: A UDP peer's keep-alive datagram (compared stripped and case-folded).
HEARTBEAT: Final = b"^hb^"
#: A UDP peer's goodbye datagram (compared stripped and case-folded).
UDP_QUIT: Final = b"quit"
#: What the server answers to :data:`UDP_QUIT`, and says to every UDP peer when it stops.
BYE: Final = b"Bye!"
#: An address not validated yet gets at most this many times the bytes it sent.
REFLECTION_FACTOR: Final = 3
#: How an address token begins; :data:`TOKEN_DIGITS` hex digits follow.
TOKEN_MARK: Final = b"^ok^"
#: The token's hex digits: 48 bits of an HMAC-SHA256 of the address.
TOKEN_DIGITS: Final = 12
_NOTICE_HEAD: Final = b"send "
_NOTICE_TAIL: Final = b" to join"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A UDP peer's keep-alive, :data:`HEARTBEAT`."""


@dataclass(frozen=True, slots=True)
class UdpQuit:
    """A UDP peer says goodbye, :data:`UDP_QUIT`; answer :data:`BYE`."""


@dataclass(frozen=True, slots=True)
class UdpText:
    """Text from a UDP peer for its room (neutralised; may be empty)."""

    text: str


Datagram: TypeAlias = Heartbeat | UdpQuit | UdpText


def classify_datagram_untrusted(data: bytes) -> Datagram:
    """Tell what a UDP peer sent.

    Args:
      data: the datagram's payload; any bytes.

    Returns:
      :class:`Heartbeat` or :class:`UdpQuit` when the stripped, case-folded datagram is
      :data:`HEARTBEAT` or :data:`UDP_QUIT`, else :class:`UdpText` with the payload
      decoded (invalid UTF-8 replaced), neutralised and right-stripped. Never raises.
    """
    word = data.strip().lower()
    if word == HEARTBEAT:
        return Heartbeat()
    if word == UDP_QUIT:
        return UdpQuit()
    return UdpText(neutralise(data.decode("utf-8", errors="replace")).rstrip())


def format_address(ip: str, port: int) -> str:
    """A peer's address for display: ``192.0.2.7:5000``, or ``[2001:db8::1]:5000`` for IPv6.

    Args:
      ip: the address as the socket reports it (IPv6 if it contains ``:``).
      port: the port.

    Returns:
      The address, neutralised.
    """
    return neutralise(_format_address((ip, int(port))))


def udp_ack_line(sender_ip: str, sender_port: int, text: str) -> bytes:
    """The acknowledgement every UDP peer receives for a UDP peer's room message.

    Args:
      sender_ip: the sending peer's IP address.
      sender_port: the sending peer's port.
      text: what the peer said (neutralised again here).

    Returns:
      ``[IP:PORT] text`` (``[[IPv6]:PORT] text`` for IPv6), UTF-8, without a terminator.
    """
    return f"[{format_address(sender_ip, sender_port)}] {neutralise(text)}".encode()


def address_token(secret: bytes, ip: str, port: int) -> bytes:
    """The token that validates one address: :data:`TOKEN_MARK` and :data:`TOKEN_DIGITS`
    hex digits of HMAC-SHA256(``secret``, ``ip:port``).

    Args:
      secret: the server's secret (random, per process).
      ip: the peer's IP address as the socket reports it.
      port: the peer's port.

    Returns:
      The token, such as ``^ok^3f09a1c27b5e``.
    """
    mac = hmac.new(secret, _format_address((ip, int(port))).encode(), hashlib.sha256)
    return TOKEN_MARK + mac.hexdigest()[:TOKEN_DIGITS].encode()


def is_address_token(data: bytes, token: bytes) -> bool:
    """Whether a datagram is exactly ``token`` (compared stripped of surrounding
    whitespace and case-folded, in constant time): the notice sent back whole is not.

    Args:
      data: the datagram; any bytes.
      token: the address's :func:`address_token`.
    """
    return hmac.compare_digest(data.strip().lower(), token)


def join_notice(token: bytes) -> bytes:
    """The first reply to an address not validated yet: ``send TOKEN to join`` (30 bytes
    with its LF), which is not itself the token.

    Args:
      token: the address's :func:`address_token`.
    """
    return _NOTICE_HEAD + token + _NOTICE_TAIL


def notice_token_untrusted(data: bytes) -> bytes | None:
    """The token in a :func:`join_notice` (for a client to send back), or None when
    ``data`` (any bytes, a trailing LF allowed) is not such a notice."""
    data = data.rstrip(b"\r\n")
    if not (data.startswith(_NOTICE_HEAD + TOKEN_MARK) and data.endswith(_NOTICE_TAIL)):
        return None
    token = data[len(_NOTICE_HEAD) : -len(_NOTICE_TAIL)]
    digits = token[len(TOKEN_MARK) :]
    if len(digits) != TOKEN_DIGITS or digits.strip(b"0123456789abcdef"):
        return None
    return token
