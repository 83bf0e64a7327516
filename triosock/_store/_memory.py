"""The embedded store: the history in this process's memory
(:class:`~triosock._sansio.history.HistoryLog`), gone when it ends."""

from __future__ import annotations

import dataclasses
import time

import trio

from .._sansio import chat as proto
from .._sansio.history import (
    DEFAULT_HISTORY,
    DEFAULT_HISTORY_BYTES,
    HistoryLog,
    Page,
    new_epoch,
)
from ._abc import Store, Stored

__all__ = ["MemoryStore", "NullStore", "now_ms"]


def now_ms() -> int:
    """The wall-clock time in milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


class MemoryStore(Store):
    """The history of one process, in memory: the embedded default.

    Args:
      history: lines kept per room (and per inbox); 0 keeps none (ids are still given).
      history_bytes: bytes of lines kept in all (the oldest lines of any room go first).

    Raises:
      ValueError: a negative ``history``, or ``history_bytes`` under one line.
    """

    __slots__ = ("log",)

    def __init__(
        self, history: int = DEFAULT_HISTORY, history_bytes: int = DEFAULT_HISTORY_BYTES
    ) -> None:
        #: The rules and the data (sans-IO).
        self.log = HistoryLog(history, history_bytes)

    def __repr__(self) -> str:
        return f"<MemoryStore lines={len(self.log)} bytes={self.log.bytes}>"

    @property
    def per_key(self) -> int:  # type: ignore[override]
        """The most lines kept per room (0: ids are given, nothing is kept)."""
        return self.log.per_key

    @property
    def epoch(self) -> str:
        return self.log.epoch

    def append_nowait(self, key: str, event: Stored) -> bytes:
        log = self.log
        stamped = dataclasses.replace(event, id=log.next_id(key), time=now_ms())
        data = proto.encode_event(stamped)
        log.add(key, stamped.time, data)
        self._recorded(key, stamped.id, stamped.time, data)
        return data

    def _recorded(self, key: str, line_id: int, time: int, data: bytes) -> None:
        """A line was recorded (a store that writes it elsewhere hooks in here)."""

    async def last(self, key: str, count: int) -> Page:
        await trio.lowlevel.checkpoint()
        return self.log.last(key, count)

    async def after(self, key: str, after: int, limit: int) -> Page:
        await trio.lowlevel.checkpoint()
        return self.log.after(key, after, limit)

    async def before(self, key: str, before: int, limit: int) -> Page:
        await trio.lowlevel.checkpoint()
        return self.log.before(key, before, limit)

    def forget(self, key: str) -> None:
        self.log.forget(key)


class NullStore(Store):
    """No history at all: lines get no id and no time, and every read is empty.

    For rooms shared by several processes (a broker-backed hub) while the history is
    not shared: each process's own store would give the same ids to different lines.
    """

    __slots__ = ("_epoch",)

    per_key = 0

    def __init__(self) -> None:
        self._epoch = new_epoch()

    def __repr__(self) -> str:
        return "<NullStore>"

    @property
    def epoch(self) -> str:
        return self._epoch

    def append_nowait(self, key: str, event: Stored) -> bytes:
        return proto.encode_event(event)

    async def last(self, key: str, count: int) -> Page:
        await trio.lowlevel.checkpoint()
        return Page(self._epoch, (), 0, 0)

    async def after(self, key: str, after: int, limit: int) -> Page:
        return await self.last(key, 0)

    async def before(self, key: str, before: int, limit: int) -> Page:
        return await self.last(key, 0)

    def forget(self, key: str) -> None:
        """Nothing to forget."""
