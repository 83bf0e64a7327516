"""The embedded directory: :class:`~triosock._sansio.chat.DirectoryState` in one process."""

from __future__ import annotations

import trio

from .._sansio.chat import DEFAULT_ROOM, DirectoryState, Presence
from ._abc import Directory

__all__ = ["InProcessDirectory"]


class InProcessDirectory(Directory):
    """The directory of one process: every change is visible at once, to every caller.

    Each method does its work synchronously and then checkpoints, so a change is
    complete before any other task runs (``rename`` is atomic without a lock).

    Args:
      origin: the prefix of session ids; random by default.
    """

    __slots__ = ("state",)

    def __init__(self, origin: str | None = None) -> None:
        #: The rules and the data (sans-IO); read it directly for synchronous snapshots.
        self.state = DirectoryState(origin)

    def __repr__(self) -> str:
        return f"<InProcessDirectory sessions={len(self.state)}>"

    async def register(
        self, kind: str, nick: str | None = None, room: str = DEFAULT_ROOM
    ) -> Presence:
        presence = self.state.register(kind, nick, room)
        await trio.lowlevel.checkpoint()
        return presence

    async def rename(self, session: str, nick: str) -> bool:
        ok = self.state.rename(session, nick)
        await trio.lowlevel.checkpoint()
        return ok

    async def move(self, session: str, room: str) -> Presence:
        presence = self.state.move(session, room)
        await trio.lowlevel.checkpoint()
        return presence

    async def unregister(self, session: str) -> None:
        self.state.unregister(session)
        await trio.lowlevel.checkpoint()

    async def lookup(self, nick: str) -> Presence | None:
        presence = self.state.lookup(nick)
        await trio.lowlevel.checkpoint()
        return presence

    async def nicks(self, room: str | None = None) -> list[str]:
        nicks = self.state.nicks(room)
        await trio.lowlevel.checkpoint()
        return nicks

    async def rooms(self) -> dict[str, int]:
        rooms = self.state.rooms()
        await trio.lowlevel.checkpoint()
        return rooms
