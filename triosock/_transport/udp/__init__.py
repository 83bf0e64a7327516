"""UDP: a server with a task per peer address (:mod:`.server`, :mod:`.peer`), the socket
under it (:mod:`.sockets`), and the connected client channel (:mod:`.client`)."""

from __future__ import annotations

from .client import DatagramTooLargeError, PeerUnreachableError, UDPChannel, open_udp_channel
from .peer import UDPPeer
from .server import UDPServer, UDPServerStatistics, serve_udp
from .sockets import MAX_UDP_PAYLOAD

__all__ = [
    "MAX_UDP_PAYLOAD",
    "DatagramTooLargeError",
    "PeerUnreachableError",
    "UDPChannel",
    "UDPPeer",
    "UDPServer",
    "UDPServerStatistics",
    "open_udp_channel",
    "serve_udp",
]
