"""The chat service: :class:`ChatServer` and its member adapters (TCP lines, UDP dialect)."""

from __future__ import annotations

from ._member import EndReason, Member, Renderer
from ._server import ChatServer, ChatStatistics
from ._tcp import TCPLineMember, TCPRenderer
from ._udp import UDPDialectMember, UDPRenderer

__all__ = [
    "ChatServer",
    "ChatStatistics",
    "EndReason",
    "Member",
    "Renderer",
    "TCPLineMember",
    "TCPRenderer",
    "UDPDialectMember",
    "UDPRenderer",
]
