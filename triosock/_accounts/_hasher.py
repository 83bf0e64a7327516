"""Password hashing off the event loop, a few at a time: :class:`Hasher`."""

from __future__ import annotations

import os
from typing import Final

import trio

from .._sansio import accounts as rules

__all__ = ["DEFAULT_HASHERS", "Hasher"]

#: Hashes computed at once by default (each takes about 16 MiB and tens of milliseconds).
DEFAULT_HASHERS: Final = 2


class Hasher:
    """scrypt in worker threads (``trio.to_thread``), at most ``limit`` at once: a flood
    of logins waits its turn, neither stalling the rooms (the event loop never hashes)
    nor taking more than ``limit`` times scrypt's memory.

    Args:
      limit: hashes computed at once.
      parameters: scrypt's cost (the module's default; tests may lower it).
    """

    def __init__(
        self, limit: int = DEFAULT_HASHERS, parameters: rules.ScryptParameters | None = None
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1 hash at once, not {limit}")
        self._limiter = trio.CapacityLimiter(limit)
        self.parameters = parameters or rules.ScryptParameters()
        #: Hashes computed so far (records made and passwords checked).
        self.computed = 0

    async def record(self, password: str) -> str:
        """A new hash record of ``password``, with a fresh salt."""
        salt = os.urandom(16)
        self.computed += 1
        return await trio.to_thread.run_sync(
            rules.make_record, password, salt, self.parameters, limiter=self._limiter
        )

    async def verify(self, password: str, record: str) -> bool:
        """Whether ``password`` matches ``record`` (compared in constant time)."""
        self.computed += 1
        return await trio.to_thread.run_sync(
            rules.verify_record, password, record, limiter=self._limiter
        )
