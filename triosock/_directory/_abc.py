"""The directory interface: who owns which nick, who is in which room, and session ids.

:class:`Directory` is the interface the chat service is written against;
:class:`~triosock.chat.InProcessDirectory` is the embedded default, and a broker-backed
directory (Redis) implements the same methods for rooms shared across processes.

What every implementation guarantees:

* A nick has at most one owner at any time, cluster-wide for a broker-backed directory:
  :meth:`Directory.rename` is one atomic check-and-set. Of two sessions racing for a nick,
  exactly one gets it.
* Session ids are unique across processes and machines (``<origin>.<n>``, the origin
  random per directory instance); a session's inbox topic is ``inbox:<id>``.
* After :meth:`Directory.unregister` the nick is free for anyone.

What only the in-process directory guarantees (local-only):

* Every change is visible to every other call at once: a nick taken is taken for the
  next ``lookup``, a user who left is gone from the next ``nicks``.
* Nobody is ever listed who is not connected: sessions end with the process.

What a broker-backed directory promises instead: listings (``nicks``, ``rooms``) and
``lookup`` reflect the broker's state, which lags a dying process: the sessions of a
process that stopped refreshing its lease disappear once the lease runs out (the
implementation documents the lease), so a direct message sent in that window goes to an
inbox nobody reads.

A broker-backed directory may also change this process's sessions on its own, when the
broker lost them and got them back (:meth:`Directory.repairs`): a nick two sessions
ended up holding stays with the earlier claim, the other session gets a guest nick
(:class:`NickLost`); and sessions reaped while their process was cut off come back
(:class:`Returned`), so that their rooms hear they joined again.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import trio

from .._sansio.chat import DEFAULT_ROOM, Presence

__all__ = ["Adopted", "Directory", "HandedOver", "NickLost", "Repair", "Returned"]


@dataclass(frozen=True, slots=True)
class NickLost:
    """A session of this process lost its nick to an earlier claim and now has a guest
    nick: two sessions came to hold the nick while the broker had lost one of them.

    Attributes:
      session: the session id.
      nick: the nick it lost.
      guest: the nick it has now.
    """

    session: str
    nick: str
    guest: str


@dataclass(frozen=True, slots=True)
class Returned:
    """A session of this process that had been reaped (its room told it left) while
    the process was cut off from the broker, written back: its room is to hear it joined.

    Attributes:
      presence: the session as it is now.
    """

    presence: Presence

    @property
    def session(self) -> str:
        """The session id."""
        return self.presence.session


@dataclass(frozen=True, slots=True)
class HandedOver:
    """A session of this process was resumed on another process (its token was
    presented there, :meth:`Directory.take_session`): it goes from here without a word
    to its room, which still has it.

    Attributes:
      session: the session id.
    """

    session: str


@dataclass(frozen=True, slots=True)
class Adopted:
    """A session of a process that died, taken into this process's care by
    :meth:`Directory.reap` rather than reaped: it waits, detached, for its resume (here
    or anywhere), and its room hears it left only when its window runs out.

    Attributes:
      presence: the session (its id keeps its first process's prefix).
      digest: the SHA-256 of its resume token.
    """

    presence: Presence
    digest: bytes

    @property
    def session(self) -> str:
        """The session id."""
        return self.presence.session


#: What :meth:`Directory.repairs` reports.
Repair = NickLost | Returned | HandedOver | Adopted


class Directory(trio.abc.AsyncResource):
    """Nick ownership, room presence and session ids for the chat.

    Every method may wait (a broker-backed directory asks its broker) and is a
    checkpoint. A directory is a :class:`trio.abc.AsyncResource`, used as an async
    context manager; the in-process one needs no setup, a broker-backed one connects and
    starts refreshing its leases on entry.
    """

    __slots__ = ()

    @abc.abstractmethod
    async def register(
        self, kind: str, nick: str | None = None, room: str = DEFAULT_ROOM
    ) -> Presence:
        """Add a session of transport ``kind`` to ``room``.

        It owns ``nick`` if that is given and free, else the first free ``guestN``.
        """

    @abc.abstractmethod
    async def rename(self, session: str, nick: str) -> bool:
        """Give ``session`` the nick ``nick`` unless somebody else owns it (atomic).

        Returns whether ``session`` owns ``nick`` now.

        Raises:
          KeyError: ``session`` is not registered.
        """

    @abc.abstractmethod
    async def move(self, session: str, room: str) -> Presence:
        """Put ``session`` in ``room``; return its new presence.

        Raises:
          KeyError: ``session`` is not registered.
        """

    @abc.abstractmethod
    async def unregister(self, session: str) -> bool:
        """Remove ``session`` and free its nick. Idempotent.

        Returns:
          Whether it was this process's to remove: False for a session another process
          took (:class:`HandedOver`), which is left as it is.
        """

    @abc.abstractmethod
    async def lookup(self, nick: str) -> Presence | None:
        """The session owning ``nick`` (case-insensitively), or None."""

    @abc.abstractmethod
    async def nicks(self, room: str | None = None) -> list[str]:
        """The nicks present (in ``room``, if given), sorted."""

    @abc.abstractmethod
    async def rooms(self) -> dict[str, int]:
        """Room name -> number of sessions, for rooms with anyone in them, sorted."""

    #: Seconds between two calls of :meth:`reap` by the chat; None: no ghosts to reap.
    reap_interval: ClassVar[float | None] = None

    async def reap(self, *, adopt: bool = False) -> list[Presence]:
        """Sessions whose process stopped renewing them (it died), taken out of the
        directory: each is handed to one caller in the cluster, once, so that the room
        hears of its leaving once. The in-process directory has none.

        Args:
          adopt: take the dead process's sessions that could resume (they have a token,
            :meth:`keep_token`) into this process's care instead, reported by
            :meth:`repairs` as :class:`Adopted`; only the others are returned.
        """
        await trio.lowlevel.checkpoint()
        return []

    async def keep_token(self, session: str, digest: bytes) -> None:
        """Let any process take ``session`` (:meth:`take_session`) by the resume token
        whose SHA-256 is ``digest``; its previous token no longer works. The in-process
        directory keeps nothing: its own process holds the tokens."""
        await trio.lowlevel.checkpoint()

    async def take_session(self, digest: bytes) -> Presence | None:
        """Take the session of another process whose token's SHA-256 is ``digest``: it is
        this process's from now on (its token is used up), and the process that held it
        is told (:class:`HandedOver`), atomically, so that of two takers one gets it.
        None: no session of another process has that token (the in-process directory
        knows no other process)."""
        await trio.lowlevel.checkpoint()
        return None

    async def take_own(self, session: str) -> bool:
        """Whether this process may resume its own ``session`` (a client presented one
        of its tokens here): False when another process took it (:meth:`take_session`)
        and this one has not heard yet. Its token (:meth:`keep_token`) is used up
        either way. The in-process directory knows no other process: always True."""
        await trio.lowlevel.checkpoint()
        return True

    def check_soon(self) -> None:
        """Check with the broker soon what it holds of this process, as after an outage
        of the broker (the chat calls it when its hub finds the broker back). The
        in-process directory has no broker. Not a checkpoint."""

    async def repairs(self) -> list[Repair]:
        """Wait until the directory has changed sessions of this process on its own,
        and return what it changed since the last call, in order (see the module
        docstring). The in-process directory changes nothing: it waits forever."""
        await trio.sleep_forever()

    async def aclose(self) -> None:
        """Stop what the directory runs; the in-process one runs nothing. A broker-backed
        directory is run by its ``async with`` block instead."""
        await trio.lowlevel.checkpoint()
