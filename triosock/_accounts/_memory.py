"""Accounts in memory: the embedded default with ``--data none`` (a restart forgets them)."""

from __future__ import annotations

import dataclasses

import trio

from ._abc import Account, Accounts

__all__ = ["MemoryAccounts"]


class MemoryAccounts(Accounts):
    """Accounts in a dict of this process."""

    __slots__ = ("_accounts", "_offline", "_rooms")

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._offline: dict[str, list[bytes]] = {}
        self._rooms: dict[str, tuple[bytes, int]] = {}

    def __repr__(self) -> str:
        return f"<MemoryAccounts {len(self._accounts)}>"

    async def get(self, key: str) -> Account | None:
        await trio.lowlevel.checkpoint()
        return self._accounts.get(key)

    async def create(self, account: Account) -> bool:
        await trio.lowlevel.checkpoint()
        if account.key in self._accounts:
            return False
        self._accounts[account.key] = account
        return True

    async def set_record(self, key: str, record: str) -> bool:
        await trio.lowlevel.checkpoint()
        account = self._accounts.get(key)
        if account is None:
            return False
        self._accounts[key] = dataclasses.replace(account, record=record)
        return True

    async def keep_offline(self, key: str, data: bytes, limit: int) -> bool:
        await trio.lowlevel.checkpoint()
        kept = self._offline.setdefault(key, [])
        if len(kept) >= limit:
            return False
        kept.append(data)
        return True

    async def take_offline(self, key: str) -> list[bytes]:
        await trio.lowlevel.checkpoint()
        return self._offline.pop(key, [])

    async def get_room(self, room: str) -> tuple[bytes | None, int]:
        await trio.lowlevel.checkpoint()
        return self._rooms.get(room, (None, 0))

    async def put_room(self, room: str, data: bytes, version: int) -> bool:
        await trio.lowlevel.checkpoint()
        if self._rooms.get(room, (None, 0))[1] != version:
            return False
        self._rooms[room] = (data, version + 1)
        return True
