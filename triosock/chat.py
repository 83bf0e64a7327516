"""The chat: rooms shared by TCP line users, UDP peers and WebSocket users.

:class:`ChatServer` runs the rooms; its handlers are what :func:`triosock.serve_tcp`,
:func:`triosock.serve_udp` and :func:`triosock.serve_websocket` call, and
:meth:`ChatServer.serve_member` runs a user over any :class:`Member` adapter.
:class:`ChatPage` serves the page a browser opens. Nicks, rooms and session ids live in a
:class:`Directory`: :class:`InProcessDirectory` by default, :class:`RedisDirectory` to
share them between processes and machines (it needs coredis, the ``redis`` extra, and is
imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._directory import Directory, InProcessDirectory
from ._errors import DirectoryUnavailable
from ._services.chat import (
    ChatPage,
    ChatServer,
    ChatStatistics,
    EndReason,
    Member,
    Renderer,
    TaggedTCPRenderer,
    TCPLineMember,
    TCPRenderer,
    UDPDialectMember,
    UDPRenderer,
    WebSocketMember,
    WebSocketRenderer,
)
from ._store import MemoryStore, NullStore, SqliteStore, Store

if TYPE_CHECKING:  # imported on first use at run time: see __getattr__ below
    from ._directory._redis import RedisDirectory as RedisDirectory

__all__ = [
    "ChatPage",
    "ChatServer",
    "ChatStatistics",
    "Directory",
    "DirectoryUnavailable",
    "EndReason",
    "InProcessDirectory",
    "Member",
    "MemoryStore",
    "NullStore",
    "RedisDirectory",
    "Renderer",
    "SqliteStore",
    "Store",
    "TCPLineMember",
    "TCPRenderer",
    "TaggedTCPRenderer",
    "UDPDialectMember",
    "UDPRenderer",
    "WebSocketMember",
    "WebSocketRenderer",
]


def __getattr__(name: str) -> object:
    """``RedisDirectory`` on first use: it needs coredis, which costs half a second to
    import."""
    if name == "RedisDirectory":
        from ._directory._redis import RedisDirectory

        return RedisDirectory
    raise AttributeError(f"module 'triosock.chat' has no attribute {name!r}")
