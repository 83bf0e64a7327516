"""The chat service: :class:`ChatServer`, its member adapters (TCP lines, UDP dialect,
WebSocket) and the web page."""

from __future__ import annotations

from ._member import EndReason, Member, Renderer
from ._page import ChatPage
from ._server import ChatServer, ChatStatistics
from ._tcp import TaggedTCPRenderer, TCPLineMember, TCPRenderer
from ._udp import UDPDialectMember, UDPRenderer
from ._websocket import WebSocketMember, WebSocketRenderer

__all__ = [
    "ChatPage",
    "ChatServer",
    "ChatStatistics",
    "EndReason",
    "Member",
    "Renderer",
    "TCPLineMember",
    "TCPRenderer",
    "TaggedTCPRenderer",
    "UDPDialectMember",
    "UDPRenderer",
    "WebSocketMember",
    "WebSocketRenderer",
]
