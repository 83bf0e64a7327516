"""The store interface: what must outlive a connection, starting with the history.

:class:`Store` is what the chat service is written against; :class:`MemoryStore`
(:mod:`._memory`) is the embedded default. A store keeps, for each key (a room's topic
``room:#lobby``, a session's inbox ``inbox:<id>``), the recent lines said under it, with
ids that increase per key and an epoch that changes when the history is lost (the rules
are :mod:`triosock._sansio.history`'s).

What every implementation guarantees:

* :meth:`Store.append` (and :meth:`Store.append_nowait`) gives a line the next id of its
  key and the time, and returns it encoded with both: the bytes to publish. Ids of one
  key are given in the order of the calls.
* What :meth:`Store.last`, :meth:`Store.after` and :meth:`Store.before` return is what
  was appended, whole, oldest first, within the bounds (count per key, bytes in all),
  with the key's first kept and last given ids, so a reader can tell a gap.

What only the memory store guarantees (local-only): ``append_nowait`` never raises
:class:`trio.WouldBlock`, and a line appended is in the next read. Its history ends
with the process: a new process has a new epoch.
"""

from __future__ import annotations

import abc

import trio

from .._sansio import chat as proto
from .._sansio.history import Page

__all__ = ["STORED", "Store", "Stored"]

#: The events a store keeps: lines said in a room, direct messages.
Stored = proto.Message | proto.Action | proto.Direct
STORED = (proto.Message, proto.Action, proto.Direct)


class Store(trio.abc.AsyncResource):
    """Room and inbox history, by key, with ids and an epoch.

    Every async method may wait (a store with a broker asks it) and is a checkpoint. A
    store is a :class:`trio.abc.AsyncResource`, used as an async context manager.

    Attributes:
      per_key: the most lines kept per key (0: ids are given, nothing is kept).
      delivers: whether lines are recorded where they are published (a broker that
        gives ids in the order it delivers): then a line said goes through
        :meth:`deliver_nowait`, not :meth:`append` and the hub.
    """

    __slots__ = ()

    per_key: int
    delivers: bool = False

    @property
    @abc.abstractmethod
    def epoch(self) -> str:
        """The history's epoch: it changes when the history is lost."""

    @abc.abstractmethod
    def append_nowait(self, key: str, event: Stored) -> bytes:
        """Record ``event`` under ``key`` with the next id and the time, at once.

        Returns:
          The event with its id and time, encoded (:func:`~triosock._sansio.chat.
          encode_event`).

        Raises:
          trio.WouldBlock: the store cannot record it without waiting (call
            :meth:`append`).
        """

    async def append(self, key: str, event: Stored) -> bytes:
        """:meth:`append_nowait`, waiting if need be. A checkpoint."""
        await trio.lowlevel.checkpoint_if_cancelled()
        data = self.append_nowait(key, event)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    def deliver_nowait(self, key: str, event: proto.Event) -> None:
        """Publish ``event`` on the topic ``key`` at once, recording it first if it is a
        line said (:data:`STORED`), for a store that :attr:`delivers`. Not a checkpoint.

        Raises:
          NotImplementedError: the store does not deliver (the default).
        """
        raise NotImplementedError(f"{type(self).__name__} records; the hub delivers")

    async def refresh_epoch(self) -> str:
        """The epoch as the store's keeper has it now (a broker that restarted empty has
        a new one). A checkpoint; the default is :attr:`epoch`, which changes only with
        the process."""
        await trio.lowlevel.checkpoint()
        return self.epoch

    @abc.abstractmethod
    async def last(self, key: str, count: int) -> Page:
        """The newest ``count`` lines of ``key``."""

    @abc.abstractmethod
    async def after(self, key: str, after: int, limit: int) -> Page:
        """The lines of ``key`` after id ``after``, at most ``limit`` (the oldest)."""

    @abc.abstractmethod
    async def before(self, key: str, before: int, limit: int) -> Page:
        """The lines of ``key`` before id ``before``, at most ``limit`` (the newest)."""

    @abc.abstractmethod
    def forget(self, key: str) -> None:
        """Drop what ``key`` holds (an inbox nobody will read). Not a checkpoint."""

    async def aclose(self) -> None:
        """Write what waits to be written and stop; the memory store has nothing to do."""
        await trio.lowlevel.checkpoint()
