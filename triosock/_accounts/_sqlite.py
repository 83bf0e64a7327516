"""Accounts in the chat's SQLite file (``--data``): they survive a restart.

The file is the history's (``chat.sqlite3``), made readable by its owner only (mode
0600); accounts, their offline messages and the rooms' records have tables of their own
there. Every operation runs in a worker thread (``trio.to_thread``) on the store's own
connection, one at a time: logins and registrations are rare next to the lines said,
and never block the event loop.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, TypeVar

import trio

from ._abc import Account, Accounts

__all__ = ["SqliteAccounts"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    key TEXT PRIMARY KEY, nick TEXT NOT NULL, record TEXT NOT NULL, created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offline (
    n INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS offline_key ON offline (key, n);
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT PRIMARY KEY, data BLOB NOT NULL, version INTEGER NOT NULL
) WITHOUT ROWID;
"""


class SqliteAccounts(Accounts):
    """Accounts in a SQLite file; use it as an async context manager.

    Args:
      path: the file (made, mode 0600, if missing).

    Raises:
      OSError, sqlite3.Error: on entering, the file cannot be made or read.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = trio.Lock()

    def __repr__(self) -> str:
        return f"<SqliteAccounts {self.path}>"

    async def __aenter__(self) -> SqliteAccounts:
        self._db = await trio.to_thread.run_sync(self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 5000")
        db.executescript(_SCHEMA)
        return db

    async def _run(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one statement (each is atomic on its own) in a worker thread; its rows."""
        db = self._db
        if db is None:
            raise trio.ClosedResourceError("the accounts file is not open: use `async with`")

        def run() -> list[tuple[Any, ...]]:
            with db:
                return db.execute(query, args).fetchall()

        async with self._lock:
            return await trio.to_thread.run_sync(run)

    async def get(self, key: str) -> Account | None:
        rows = await self._run("SELECT key, nick, record, created FROM accounts WHERE key = ?", key)
        return Account(*rows[0]) if rows else None

    async def create(self, account: Account) -> bool:
        rows = await self._run(
            "INSERT INTO accounts VALUES (?, ?, ?, ?) ON CONFLICT (key) DO NOTHING RETURNING key",
            account.key,
            account.nick,
            account.record,
            account.created,
        )
        return bool(rows)

    async def set_record(self, key: str, record: str) -> bool:
        rows = await self._run(
            "UPDATE accounts SET record = ? WHERE key = ? RETURNING key", record, key
        )
        return bool(rows)

    async def keep_offline(self, key: str, data: bytes, limit: int) -> bool:
        rows = await self._run(
            "INSERT INTO offline (key, data) SELECT ?, ? "
            "WHERE (SELECT COUNT(*) FROM offline WHERE key = ?) < ? RETURNING n",
            key,
            data,
            key,
            limit,
        )
        return bool(rows)

    async def take_offline(self, key: str) -> list[bytes]:
        rows = await self._run("DELETE FROM offline WHERE key = ? RETURNING n, data", key)
        return [bytes(data) for _, data in sorted(rows)]

    async def get_room(self, room: str) -> tuple[bytes | None, int]:
        rows = await self._run("SELECT data, version FROM rooms WHERE room = ?", room)
        return (bytes(rows[0][0]), rows[0][1]) if rows else (None, 0)

    async def put_room(self, room: str, data: bytes, version: int) -> bool:
        if version == 0:
            query = (
                "INSERT INTO rooms VALUES (?, ?, 1) ON CONFLICT (room) DO NOTHING RETURNING room"
            )
            rows = await self._run(query, room, data)
        else:
            rows = await self._run(
                "UPDATE rooms SET data = ?, version = version + 1 "
                "WHERE room = ? AND version = ? RETURNING room",
                data,
                room,
                version,
            )
        return bool(rows)

    async def aclose(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:
                await trio.to_thread.run_sync(db.close)
        else:
            await trio.lowlevel.checkpoint()
