"""The chat: rooms shared by TCP line users, UDP peers and WebSocket users.

:class:`ChatServer` runs the rooms; its handlers are what :func:`triosock.serve_tcp`,
:func:`triosock.serve_udp` and :func:`triosock.serve_websocket` call, and
:meth:`ChatServer.serve_member` runs a user over any :class:`Member` adapter.
:class:`ChatPage` serves the page a browser opens. Nicks, rooms and session ids live in a
:class:`Directory`: :class:`InProcessDirectory` by default, :class:`RedisDirectory` to
share them between processes and machines (it needs coredis, the ``redis`` extra, and is
imported on first use). Registered nicks and the rooms' records (founders, operators,
bans, topics) live in :class:`Accounts`: :class:`MemoryAccounts`, :class:`SqliteAccounts`,
or :class:`RedisAccounts` (imported on first use, as ``RedisDirectory``); passwords are
hashed off the event loop by a :class:`Hasher`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._accounts import Account, Accounts, Hasher, MemoryAccounts, SqliteAccounts
from ._directory import Directory, InProcessDirectory
from ._errors import DirectoryUnavailable
from ._services.chat import (
    ChatPage,
    ChatServer,
    ChatStatistics,
    EndReason,
    IrcMember,
    IrcRenderer,
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
    from ._accounts._redis import RedisAccounts as RedisAccounts
    from ._directory._redis import RedisDirectory as RedisDirectory

__all__ = [
    "Account",
    "Accounts",
    "ChatPage",
    "ChatServer",
    "ChatStatistics",
    "Directory",
    "DirectoryUnavailable",
    "EndReason",
    "Hasher",
    "InProcessDirectory",
    "IrcMember",
    "IrcRenderer",
    "Member",
    "MemoryAccounts",
    "MemoryStore",
    "NullStore",
    "RedisAccounts",
    "RedisDirectory",
    "Renderer",
    "SqliteAccounts",
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
    """``RedisDirectory`` and ``RedisAccounts`` on first use: they need coredis, which
    costs half a second to import."""
    if name == "RedisDirectory":
        from ._directory._redis import RedisDirectory

        return RedisDirectory
    if name == "RedisAccounts":
        from ._accounts._redis import RedisAccounts

        return RedisAccounts
    raise AttributeError(f"module 'triosock.chat' has no attribute {name!r}")
