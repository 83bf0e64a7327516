"""The embedded directory: :class:`~triosock._sansio.chat.DirectoryState` in one process."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import trio

from .._sansio.chat import DEFAULT_ROOM, DirectoryState, Presence
from ._abc import Directory

__all__ = ["InProcessDirectory"]

P = ParamSpec("P")
R = TypeVar("R")


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
        return await _step(self.state.register, kind, nick, room)

    async def rename(self, session: str, nick: str) -> bool:
        return await _step(self.state.rename, session, nick)

    async def move(self, session: str, room: str) -> Presence:
        return await _step(self.state.move, session, room)

    async def unregister(self, session: str) -> bool:
        await _step(self.state.unregister, session)
        return True

    async def lookup(self, nick: str) -> Presence | None:
        return await _step(self.state.lookup, nick)

    async def nicks(self, room: str | None = None) -> list[str]:
        return await _step(self.state.nicks, room)

    async def rooms(self) -> dict[str, int]:
        return await _step(self.state.rooms)


async def _step(operation: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``operation(*args)`` between two checkpoints, as trio's own operations are."""
    await trio.lowlevel.checkpoint_if_cancelled()
    result = operation(*args, **kwargs)
    await trio.lowlevel.cancel_shielded_checkpoint()
    return result
