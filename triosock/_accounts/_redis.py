"""Accounts in Redis, shared by every server of a cluster (``--redis``).

Each account is a hash, ``P account:<key>`` (``P`` the hub's prefix), with ``nick``,
``record`` (the password's hash record, never the password) and ``created``; the direct
messages kept for it while it is offline are a list, ``P offline:<key>``. A room's
record (its founder, operators, bans, topic) is a hash, ``P roomrecord:<room>``, with
``data`` and ``version``, replaced by a script only if its version is still the one read. Give Redis
persistence (``appendonly yes``) to keep them across its restarts; an account lost with
Redis's data has to be registered again.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Final

import trio

from .._redis import redis_client
from ._abc import Account, Accounts

if TYPE_CHECKING:
    import coredis

__all__ = ["RedisAccounts"]

# KEYS: the account's key. ARGV: nick, record, created. 1 if made, 0 if it existed.
_CREATE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'nick', ARGV[1], 'record', ARGV[2], 'created', ARGV[3])
return 1
"""
# KEYS: the account's key. ARGV: the new record. 1 if replaced, 0 if no such account.
_SET: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1])
return 1
"""

# KEYS: the account's offline list. ARGV: the message, the most kept. 1 if kept, 0 if full.
_KEEP: Final = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
return 1
"""
# KEYS: the account's offline list. The messages, oldest first; the list is gone after.
_TAKE: Final = """
local kept = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return kept
"""

# KEYS: the room's record. ARGV: the new record, the version it replaces. 1 if replaced.
_PUT_ROOM: Final = """
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'version', version + 1)
return 1
"""


class RedisAccounts(Accounts):
    """Accounts in Redis; use it as an async context manager (it opens a connection).

    Args:
      url: where Redis is (as the hub's).
      prefix: put before every key (the hub's, ``triosock:`` by default).
    """

    def __init__(self, url: str, prefix: str = "triosock:") -> None:
        self.url = url
        self.prefix = prefix
        self._client: coredis.Redis[bytes] | None = None
        self._stack = AsyncExitStack()

    def __repr__(self) -> str:
        return f"<RedisAccounts {self.url}>"

    async def __aenter__(self) -> RedisAccounts:
        self._client = await self._stack.enter_async_context(redis_client(self.url))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _redis(self) -> coredis.Redis[bytes]:
        if self._client is None:
            raise trio.ClosedResourceError("the accounts are not open: use `async with`")
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}account:{key}"

    async def get(self, key: str) -> Account | None:
        found: Any = await self._redis().hgetall(self._key(key))
        if not found:
            return None
        values = {_text(k): _text(v) for k, v in found.items()}
        return Account(key, values["nick"], values["record"], int(values["created"]))

    async def create(self, account: Account) -> bool:
        args = [account.nick, account.record, str(account.created)]
        made = await self._redis().eval(_CREATE, keys=[self._key(account.key)], args=args)
        return made == 1

    async def set_record(self, key: str, record: str) -> bool:
        done = await self._redis().eval(_SET, keys=[self._key(key)], args=[record])
        return done == 1

    async def keep_offline(self, key: str, data: bytes, limit: int) -> bool:
        offline = f"{self.prefix}offline:{key}"
        kept = await self._redis().eval(_KEEP, keys=[offline], args=[data, str(limit)])
        return kept == 1

    async def take_offline(self, key: str) -> list[bytes]:
        offline = f"{self.prefix}offline:{key}"
        found: Any = await self._redis().eval(_TAKE, keys=[offline], args=[])
        return [bytes(item) for item in found or []]

    async def get_room(self, room: str) -> tuple[bytes | None, int]:
        found: Any = await self._redis().hmget(
            f"{self.prefix}roomrecord:{room}", ["data", "version"]
        )
        data, version = found
        return (bytes(data), int(version)) if data is not None else (None, 0)

    async def put_room(self, room: str, data: bytes, version: int) -> bool:
        key = f"{self.prefix}roomrecord:{room}"
        done = await self._redis().eval(_PUT_ROOM, keys=[key], args=[data, str(version)])
        return done == 1

    async def aclose(self) -> None:
        self._client = None
        await self._stack.aclose()
        await trio.lowlevel.checkpoint()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
