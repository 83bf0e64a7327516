"""triosock: a structured-concurrency networking toolkit on Trio.

Framed TCP and per-peer UDP transports where every connection or peer runs in its own
task, a broadcast hub, liveness on cancel scopes, and the classic socket services (echo,
time, chat) built on them. The implementation lives in private modules; this package
re-exports the public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._directory import Directory, InProcessDirectory
from ._errors import (
    BindError,
    ConnectError,
    DirectoryUnavailable,
    FramingError,
    MessageTooLargeError,
    TriosockError,
)
from ._hub import (
    Hub,
    HubStatistics,
    InProcessHub,
    Policy,
    ReadyQueue,
    SlowSubscriberError,
    SubscriberStatistics,
    Subscription,
)
from ._liveness import DEFAULT_EXPIRY_FACTOR, IdleTimer, expiry_after, send_heartbeats
from ._sansio.addresses import format_address
from ._sansio.framing import DEFAULT_MAX_MESSAGE, Framer, LengthPrefixFramer, LineFramer
from ._services.chat import ChatPage, ChatServer, ChatStatistics
from ._services.echo import echo_handler, udp_echo_handler
from ._services.http import StaticFiles, tutorial_handler
from ._transport.channel import FramedChannel
from ._transport.http import Request, Response, serve_http
from ._transport.outbox import DatagramSink, Outbox, OutboxStalled, StreamSink
from ._transport.tcp import (
    TCPConnection,
    TCPServer,
    TCPServerStatistics,
    connect_tcp,
    open_tcp_channel,
    serve_tcp,
)
from ._transport.udp import (
    DatagramTooLargeError,
    PeerUnreachableError,
    UDPChannel,
    UDPPeer,
    UDPServer,
    UDPServerStatistics,
    open_udp_channel,
    serve_udp,
)
from ._transport.websocket import WebSocketPeer, WebSocketServer, serve_websocket

if TYPE_CHECKING:  # imported on first use at run time: see __getattr__ below
    from ._directory._redis import RedisDirectory as RedisDirectory
    from ._hub._redis import RedisHub as RedisHub

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_EXPIRY_FACTOR",
    "DEFAULT_MAX_MESSAGE",
    "BindError",
    "ChatPage",
    "ChatServer",
    "ChatStatistics",
    "ConnectError",
    "DatagramSink",
    "DatagramTooLargeError",
    "Directory",
    "DirectoryUnavailable",
    "FramedChannel",
    "Framer",
    "FramingError",
    "Hub",
    "HubStatistics",
    "IdleTimer",
    "InProcessDirectory",
    "InProcessHub",
    "LengthPrefixFramer",
    "LineFramer",
    "MessageTooLargeError",
    "Outbox",
    "OutboxStalled",
    "PeerUnreachableError",
    "Policy",
    "ReadyQueue",
    "Request",
    "Response",
    "SlowSubscriberError",
    "StaticFiles",
    "StreamSink",
    "SubscriberStatistics",
    "Subscription",
    "TCPConnection",
    "TCPServer",
    "TCPServerStatistics",
    "TriosockError",
    "UDPChannel",
    "UDPPeer",
    "UDPServer",
    "UDPServerStatistics",
    "WebSocketPeer",
    "WebSocketServer",
    "connect_tcp",
    "echo_handler",
    "expiry_after",
    "format_address",
    "open_tcp_channel",
    "open_udp_channel",
    "send_heartbeats",
    "serve_http",
    "serve_tcp",
    "serve_udp",
    "serve_websocket",
    "tutorial_handler",
    "udp_echo_handler",
]


def __getattr__(name: str) -> object:
    """``RedisHub`` and ``RedisDirectory`` on first use: they need coredis (the ``redis``
    extra), which costs half a second to import."""
    if name == "RedisHub":
        from ._hub._redis import RedisHub

        return RedisHub
    if name == "RedisDirectory":
        from ._directory._redis import RedisDirectory

        return RedisDirectory
    raise AttributeError(f"module 'triosock' has no attribute {name!r}")
