"""The chat service: :class:`ChatServer`, its member adapters (TCP lines, UDP dialect,
WebSocket, IRC) and the web page."""

from __future__ import annotations

from ._irc import IrcMember, IrcRenderer
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
    "IrcMember",
    "IrcRenderer",
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
