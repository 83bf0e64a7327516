"""The store in a SQLite file: the history survives a restart.

:class:`SqliteStore` keeps the history in memory, as :class:`~._memory.MemoryStore`
does (every read is served from there, and ``append_nowait`` never waits), and writes
what is appended to a SQLite file (the standard library's :mod:`sqlite3`) off the event
loop: a task takes what was appended since its last write, at most every
:data:`WRITE_INTERVAL` seconds, and writes it in one transaction in a worker thread
(``trio.to_thread``), never one blocking write per line. Each room keeps its last
``history`` lines on disk too (older ones are deleted as new ones are written).

On opening, the file's rooms (their last ``history`` lines and the last id each gave)
and its epoch are read back: ids go on where they stopped, and clients holding ids of
this history can tell they still mean the same lines. A new file gets a new epoch.
Direct messages are not written (they are for a session's resume, and sessions end
with the process); nor is anything of a key :meth:`~Store.forget` dropped.

The file is made readable by its owner only (mode 0600). What was appended in the last
:data:`WRITE_INTERVAL` seconds before the process is killed is lost; a clean stop
(``aclose``) writes everything.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import trio

from .._running import Running
from .._sansio.history import DEFAULT_HISTORY, DEFAULT_HISTORY_BYTES, Record, new_epoch
from ._memory import MemoryStore

__all__ = ["WRITE_INTERVAL", "SqliteStore"]

LOGGER = logging.getLogger("triosock.chat")

#: Seconds between two writes to the file (at most).
WRITE_INTERVAL: Final = 0.2
#: A line as the file holds it: key, id, time, data.
_Row = tuple[str, int, int, bytes]
#: Keys whose lines are written to the file: rooms (not inboxes).
_ROOM_PREFIX = "room:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lines (
    key TEXT NOT NULL, id INTEGER NOT NULL, time INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (key, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, last INTEGER NOT NULL);
"""


class SqliteStore(Running, MemoryStore):
    """The history in memory and in a SQLite file (see the module docstring).

    Use it as an async context manager: entering opens (or makes) the file and reads
    it back, off the event loop; leaving writes what waits and closes it.

    Args:
      path: the file (its folder is made if need be).
      history: lines kept per room, in memory and in the file.
      history_bytes: bytes of lines kept in memory in all.

    Raises:
      OSError: the file cannot be made or opened (on entering).
      sqlite3.DatabaseError: the file is not a SQLite database (on entering).
    """

    __slots__ = ("_db", "_failing", "_lock", "_pending", "_wake", "path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        history: int = DEFAULT_HISTORY,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
    ) -> None:
        super().__init__(history, history_bytes)
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock: int | None = None
        self._pending: list[_Row] = []
        self._wake = trio.Event()
        self._failing = False

    def __repr__(self) -> str:
        return f"<SqliteStore {str(self.path)!r} lines={len(self.log)}>"

    @contextlib.asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        self._db = await trio.to_thread.run_sync(self._open)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_forever)
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._write()
                db, self._db = self._db, None
                if db is not None:
                    await trio.to_thread.run_sync(db.close)
                lock, self._lock = self._lock, None
                if lock is not None:
                    os.close(lock)  # and with it the lock

    async def aclose(self) -> None:
        """Write what waits to be written now (leaving the ``async with`` block also
        closes the file)."""
        await self._write()

    # -- the file, in a worker thread ----------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # One server a file: two would give the same ids to different lines.
        lock = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise OSError(
                f"another chat server keeps its history in {self.path} (give each its own "
                "--data DIR, or --data none)"
            ) from None
        try:
            db = self._read_back()
        except BaseException:
            os.close(lock)
            raise
        self._lock = lock
        return db

    def _read_back(self) -> sqlite3.Connection:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # its owner's only
        os.close(fd)
        os.chmod(self.path, 0o600)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchone()
            if row is None:
                epoch = new_epoch()
                db.execute("INSERT INTO meta VALUES ('epoch', ?)", (epoch,))
            else:
                epoch = str(row[0])
            self.log.epoch = epoch
            keep = self.log.per_key
            for key, last in db.execute("SELECT key, last FROM keys").fetchall():
                rows = db.execute(
                    "SELECT id, time, data FROM lines WHERE key = ? AND id > ? ORDER BY id",
                    (key, int(last) - keep),
                ).fetchall()
                records = [Record(int(i), int(t), bytes(d)) for i, t, d in rows]
                self.log.restore(str(key), records, int(last))
        except BaseException:
            db.close()
            raise
        return db

    def _write_batch(
        self, db: sqlite3.Connection, batch: list[tuple[str, int, int, bytes]]
    ) -> None:
        keep = self.log.per_key
        lasts: dict[str, int] = {}
        for key, line_id, _, _ in batch:
            lasts[key] = max(line_id, lasts.get(key, 0))
        with db:  # one transaction
            db.execute("BEGIN")
            if keep:
                db.executemany("INSERT OR REPLACE INTO lines VALUES (?, ?, ?, ?)", batch)
            db.executemany(
                "INSERT INTO keys VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET last = "
                "max(last, excluded.last)",
                lasts.items(),
            )
            db.executemany(
                "DELETE FROM lines WHERE key = ? AND id <= ?",
                [(key, last - keep) for key, last in lasts.items()],
            )

    # -- on the event loop ----------------------------------------------------------------

    def _recorded(self, key: str, line_id: int, time: int, data: bytes) -> None:
        if key.startswith(_ROOM_PREFIX):
            self._pending.append((key, line_id, time, data))
            self._wake.set()

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            await trio.sleep(WRITE_INTERVAL)  # gather a batch
            await self._write()

    async def _write(self) -> None:
        db = self._db
        self._wake = trio.Event()
        batch, self._pending = self._pending, []
        if db is None or not batch:
            await trio.lowlevel.checkpoint()
            return
        try:
            await trio.to_thread.run_sync(self._write_batch, db, batch)
        except (sqlite3.Error, OSError) as exc:  # kept in memory; the file misses them
            if not self._failing:
                LOGGER.warning("cannot write the history to %s: %s", self.path, exc)
            self._failing = True
        else:
            if self._failing:
                LOGGER.warning("writing the history to %s again", self.path)
            self._failing = False
