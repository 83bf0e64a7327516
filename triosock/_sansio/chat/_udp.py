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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

from ..addresses import format_address as _format_address
from ._text import neutralise

__all__ = [
    "BYE",
    "HEARTBEAT",
    "UDP_QUIT",
    "Datagram",
    "Heartbeat",
    "UdpQuit",
    "UdpText",
    "classify_datagram_untrusted",
    "format_address",
    "udp_ack_line",
]

#: A UDP peer's keep-alive datagram (compared stripped and case-folded).
HEARTBEAT: Final = b"^hb^"
#: A UDP peer's goodbye datagram (compared stripped and case-folded).
UDP_QUIT: Final = b"quit"
#: What the server answers to :data:`UDP_QUIT`, and says to every UDP peer when it stops.
BYE: Final = b"Bye!"


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
