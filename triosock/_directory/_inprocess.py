"""The embedded directory: :class:`~triosock._sansio.chat.DirectoryState` in one process."""

from __future__ import annotations

import trio

from .._sansio.chat import DEFAULT_ROOM, DirectoryState, Presence
from ._abc import Directory

__all__ = ["InProcessDirectory"]


class InProcessDirectory(Directory):
    """The directory of one process: every change is visible at once, to every caller.

    Each method is one synchronous step between two checkpoints, as trio's own
    operations are: a cancellation arrives before the change or not at all, so a change is
    never half made nor made and then reported as cancelled (a cancelled ``register``
    leaves no ghost), and nothing runs in the middle of it (``rename`` is atomic without
    a lock).

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
        await trio.lowlevel.checkpoint_if_cancelled()
        presence = self.state.register(kind, nick, room)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return presence

    async def rename(self, session: str, nick: str) -> bool:
        await trio.lowlevel.checkpoint_if_cancelled()
        ok = self.state.rename(session, nick)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return ok

    async def move(self, session: str, room: str) -> Presence:
        await trio.lowlevel.checkpoint_if_cancelled()
        presence = self.state.move(session, room)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return presence

    async def unregister(self, session: str) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self.state.unregister(session)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def lookup(self, nick: str) -> Presence | None:
        await trio.lowlevel.checkpoint_if_cancelled()
        presence = self.state.lookup(nick)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return presence

    async def nicks(self, room: str | None = None) -> list[str]:
        await trio.lowlevel.checkpoint_if_cancelled()
        nicks = self.state.nicks(room)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return nicks

    async def rooms(self) -> dict[str, int]:
        await trio.lowlevel.checkpoint_if_cancelled()
        rooms = self.state.rooms()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return rooms
