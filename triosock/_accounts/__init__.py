"""Registered nicks: where their password hashes live, and the hashing off the loop.

:class:`Accounts` is the interface, as the hub and the directory have one: kept in
memory (:class:`MemoryAccounts`), in the chat's SQLite file (:class:`SqliteAccounts`),
or in Redis, shared by every server of a cluster (``triosock._accounts._redis``, which
imports coredis). :class:`Hasher` runs scrypt in worker threads under a small limit.
"""

from __future__ import annotations

from ._abc import Account, Accounts
from ._hasher import DEFAULT_HASHERS, Hasher
from ._memory import MemoryAccounts
from ._sqlite import SqliteAccounts

__all__ = [
    "DEFAULT_HASHERS",
    "Account",
    "Accounts",
    "Hasher",
    "MemoryAccounts",
    "SqliteAccounts",
]
