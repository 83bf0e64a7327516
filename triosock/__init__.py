"""triosock: a structured-concurrency networking toolkit on Trio.

This package is the toolkit's first tier: the transports (TCP, UDP with a task per peer,
HTTP on h11, WebSocket on websockets), message framing, the outbox that writes whole
frames without waiting, liveness on cancel scopes, and the errors. The other tiers are
public submodules:

* :mod:`triosock.hub`: the broadcast hub (topics, subscriptions, policies).
* :mod:`triosock.chat`: the chat server, its member adapters and its directory.
* :mod:`triosock.services`: echo, time and HTTP handlers, and ``reply_each``.

The implementation lives in private modules; these re-export the public API.
"""

from __future__ import annotations

from ._errors import (
    BindError,
    ConnectError,
    FramingError,
    MessageTooLargeError,
    TriosockError,
)
from ._liveness import DEFAULT_EXPIRY_FACTOR, IdleTimer, expiry_after, send_heartbeats
from ._sansio.addresses import format_address
from ._sansio.framing import DEFAULT_MAX_MESSAGE, Framer, LengthPrefixFramer, LineFramer
from ._transport._lifecycle import ConnectionStatistics
from ._transport.channel import FramedChannel
from ._transport.http import Request, Response, serve_http
from ._transport.http_client import (
    HTTPResponseError,
    NotHTTPError,
    ResponseTooLargeError,
    fetch,
)
from ._transport.outbox import DatagramSink, Outbox, OutboxStalled, Sink, StreamSink
from ._transport.tcp import (
    TCPConnection,
    TCPServer,
    TCPServerStatistics,
    open_tcp_channel,
    open_tcp_stream,
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
from ._transport.websocket import (
    WebSocketPeer,
    WebSocketServer,
    WebSocketServerStatistics,
    serve_websocket,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_EXPIRY_FACTOR",
    "DEFAULT_MAX_MESSAGE",
    "BindError",
    "ConnectError",
    "ConnectionStatistics",
    "DatagramSink",
    "DatagramTooLargeError",
    "FramedChannel",
    "Framer",
    "FramingError",
    "HTTPResponseError",
    "IdleTimer",
    "LengthPrefixFramer",
    "LineFramer",
    "MessageTooLargeError",
    "NotHTTPError",
    "Outbox",
    "OutboxStalled",
    "PeerUnreachableError",
    "Request",
    "Response",
    "ResponseTooLargeError",
    "Sink",
    "StreamSink",
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
    "WebSocketServerStatistics",
    "expiry_after",
    "fetch",
    "format_address",
    "open_tcp_channel",
    "open_tcp_stream",
    "open_udp_channel",
    "send_heartbeats",
    "serve_http",
    "serve_tcp",
    "serve_udp",
    "serve_websocket",
]
