"""The store: what must outlive a connection (room and inbox history). The interface is
in :mod:`._abc`, the implementations in memory (:class:`MemoryStore`, :mod:`._memory`)
and in a SQLite file (:class:`SqliteStore`, :mod:`._sqlite`).
"""

from __future__ import annotations

from ._abc import STORED, Store, Stored
from ._memory import MemoryStore, NullStore, now_ms
from ._sqlite import SqliteStore

__all__ = ["STORED", "MemoryStore", "NullStore", "SqliteStore", "Store", "Stored", "now_ms"]
