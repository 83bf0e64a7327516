"""The account store's interface: see :class:`Accounts`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["Account", "Accounts"]


@dataclass(frozen=True, slots=True)
class Account:
    """A registered nick.

    Attributes:
      key: the nick's case-folded key (:func:`~triosock._sansio.chat.nick_key`): one
        account per key, so nicks that differ only in case are one account.
      nick: the nick as it was registered.
      record: its password's hash record (:mod:`triosock._sansio.accounts`), never the
        password.
      created: when it was registered, in milliseconds since the epoch.
    """

    key: str
    nick: str
    record: str
    created: int


class Accounts(ABC):
    """Where accounts live, and the rooms' records (founders, operators, bans, topics:
    who is who in a room, :mod:`triosock._sansio.rooms`). Every method may raise what its
    backend raises when it cannot be reached (:class:`OSError`, ``sqlite3.Error``,
    coredis's errors)."""

    @abstractmethod
    async def get(self, key: str) -> Account | None:
        """The account of nick key ``key``, or None."""

    @abstractmethod
    async def create(self, account: Account) -> bool:
        """Add ``account``; False (and nothing changed) if its key has one already."""

    @abstractmethod
    async def set_record(self, key: str, record: str) -> bool:
        """Replace the password hash of ``key``'s account; False if there is none."""

    @abstractmethod
    async def keep_offline(self, key: str, data: bytes, limit: int) -> bool:
        """Keep ``data`` (an encoded direct message) for ``key``'s account until it next
        logs in; False (nothing kept) when ``limit`` messages wait for it already."""

    @abstractmethod
    async def take_offline(self, key: str) -> list[bytes]:
        """The messages kept for ``key``'s account, oldest first; they are kept no more."""

    @abstractmethod
    async def get_room(self, room: str) -> tuple[bytes | None, int]:
        """The record of ``room`` (:func:`~triosock._sansio.rooms.encode_record`'s bytes,
        None for a room never given one) and its version (0 for none)."""

    @abstractmethod
    async def put_room(self, room: str, data: bytes, version: int) -> bool:
        """Replace the record of ``room`` by ``data`` if its version is still
        ``version`` (it becomes ``version + 1``); False, and nothing changed, if another
        change came first (read it again and retry)."""

    async def aclose(self) -> None:  # noqa: B027 - most stores hold nothing to close
        """Release what the store holds."""
