"""A directory shared by processes and machines through Redis (coredis), with leases.

What lives in Redis (``P`` is the prefix, ``triosock:`` by default):

* ``P nick:<key>``: the session id owning the nick (its case-insensitive key), with a
  lease;
* ``P session:<id>``: a hash of the session's ``nick``, ``room`` and ``kind``, kept a
  minute past the lease (for :meth:`RedisDirectory.reap`);
* ``P members:<room>`` and ``P sessions``: sorted sets of session ids scored by when
  their lease ends (milliseconds), for ``/who``; ``P rooms``: the room names ever used;
  ``P guests``: the counter behind guest nicks, unique across the cluster.

Claiming a nick is one Lua script (check the owner, set, drop the old nick): atomic, so
of two processes racing for a nick exactly one gets it. Each process keeps its own
sessions in memory and renews their leases every ``lease / 3`` seconds in one script;
a process that dies stops renewing, and its users' nicks are free, and gone from
``/who``, once the lease ends (``lease`` seconds after its last renewal: at most 6 s by
default). Every process reaps such ghosts once a second (:meth:`RedisDirectory.reap`,
one script, so each ghost goes to one process) and the chat tells their rooms they
left. A process that cannot renew for a whole lease counts as gone the same way. The
renewal re-asserts everything (nick, hash, room), so a Redis that restarted empty gets
this process's users back within one renewal; a nick another process took meanwhile
stays theirs, and the log says so.

When Redis cannot be reached, each call raises :class:`DirectoryUnavailable` (the chat
tells the user and goes on); the renewal retries until it can.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Final

import coredis
import trio
from coredis.tokens import PureToken

from .._errors import DirectoryUnavailable
from .._hub._redis import is_redis_failure, redis_client
from .._sansio.chat import DEFAULT_ROOM, Presence, default_nick, nick_key
from ._abc import Directory

__all__ = ["DirectoryUnavailable", "RedisDirectory"]

LOGGER = logging.getLogger("triosock.directory")

#: Seconds a session's entries live without a renewal.
DEFAULT_LEASE: Final = 6.0
#: Seconds between two renewals while Redis cannot be reached.
RETRY_INTERVAL: Final = 0.25

# KEYS: the new nick's key, the old one's (or the same); ARGV: session id, lease in ms.
_CLAIM: Final = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if KEYS[2] ~= KEYS[1] and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"""
# KEYS: a nick's key; ARGV: the session id.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
# Write or renew sessions for one more lease; return the ids whose nick another session
# owns now (taken while this process could not reach Redis). ARGV: lease ms, lease end
# ms, the prefix, then five per session: id, nick key, nick, room, kind.
_ASSERT: Final = """
local lease, until_, p = ARGV[1], ARGV[2], ARGV[3]
local lost = {}
for i = 4, #ARGV, 5 do
  local s, nk, nick, room, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = p .. 'nick:' .. nk
  local owner = redis.call('GET', key)
  if owner and owner ~= s then
    table.insert(lost, s)
  else
    redis.call('SET', key, s, 'PX', lease)
  end
  local sk = p .. 'session:' .. s
  redis.call('HSET', sk, 'nick', nick, 'room', room, 'kind', kind)
  redis.call('PEXPIRE', sk, lease + 60000)  -- kept a minute longer, for the reaper
  redis.call('ZADD', p .. 'members:' .. room, until_, s)
  redis.call('ZADD', p .. 'sessions', until_, s)
  redis.call('SADD', p .. 'rooms', room)
end
return lost
"""
# Take up to 100 sessions whose lease ended out of the directory, atomically (so each is
# reaped by one caller), and return id, nick, room, kind for each. ARGV: prefix, now ms.
_REAP: Final = """
local p, now = ARGV[1], ARGV[2]
local ids = redis.call('ZRANGEBYSCORE', p .. 'sessions', '-inf', '(' .. now, 'LIMIT', 0, 100)
local out = {}
for _, s in ipairs(ids) do
  redis.call('ZREM', p .. 'sessions', s)
  local h = redis.call('HMGET', p .. 'session:' .. s, 'nick', 'room', 'kind')
  if h[1] and h[2] then
    redis.call('ZREM', p .. 'members:' .. h[2], s)
    table.insert(out, s)
    table.insert(out, h[1])
    table.insert(out, h[2])
    table.insert(out, h[3] or '')
  end
  redis.call('DEL', p .. 'session:' .. s)
end
return out
"""


class RedisDirectory(Directory):
    """Nicks, rooms and sessions shared through Redis; see the module docstring.

    Use it as an async context manager, which connects and runs the lease renewal.

    Args:
      url: ``redis://HOST:PORT/DB`` or ``unix://PATH``.
      prefix: put before every key.
      lease: seconds a session's entries live without a renewal.
      origin: the prefix of session ids; random by default.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "triosock:",
        lease: float = DEFAULT_LEASE,
        origin: str | None = None,
    ) -> None:
        if not lease > 0:
            raise ValueError(f"lease must be a positive number of seconds, not {lease}")
        self.url = url
        self.prefix = prefix
        self.lease = lease
        self.origin = origin or os.urandom(8).hex()
        self._ids = itertools.count(1)
        self._mine: dict[str, Presence] = {}  # this process's sessions
        self._client: coredis.Redis[bytes] | None = None
        self._running: contextlib.AbstractAsyncContextManager[None] | None = None
        #: Renewals that could not reach Redis.
        self.failed_renewals = 0

    def __repr__(self) -> str:
        return f"<RedisDirectory {self.url} sessions={len(self._mine)}>"

    # -- running -----------------------------------------------------------------------

    async def __aenter__(self) -> RedisDirectory:
        self._running = self._run()
        await self._running.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._running is not None
        await self._running.__aexit__(exc_type, exc_value, traceback)

    @contextlib.asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        async with redis_client(self.url) as client, trio.open_nursery() as nursery:
            self._client = client
            nursery.start_soon(self._renew_forever)
            try:
                yield
            finally:
                self._client = None
                nursery.cancel_scope.cancel()

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _nick_key(self, nick: str) -> str:
        return self._key("nick", nick_key(nick))

    def _redis(self) -> coredis.Redis[bytes]:
        if self._client is None:
            raise RuntimeError("the RedisDirectory is not running: use `async with directory:`")
        return self._client

    @staticmethod
    def _now_ms() -> int:
        return _wall_ms()

    @contextlib.contextmanager
    def _unavailable(self) -> Any:
        try:
            yield
        except BaseException as exc:
            if not is_redis_failure(exc):
                raise
            raise DirectoryUnavailable(
                f"the directory at {self.url} is unreachable: {exc}"
            ) from exc

    # -- the Directory interface ----------------------------------------------------------

    async def register(
        self, kind: str, nick: str | None = None, room: str = DEFAULT_ROOM
    ) -> Presence:
        session = f"{self.origin}.{next(self._ids)}"
        client = self._redis()
        with self._unavailable():
            owned = nick if nick is not None and await self._claim(session, nick, nick) else None
            while owned is None:
                number = int(await client.incr(self._key("guests")))
                guest = default_nick(number)
                if await self._claim(session, guest, guest):
                    owned = guest
            presence = Presence(session, owned, room, kind)
            self._mine[session] = presence
            await self._assert(client, [presence])
        return presence

    async def _claim(self, session: str, nick: str, old: str) -> bool:
        keys = [self._nick_key(nick), self._nick_key(old)]
        args = [session, str(int(self.lease * 1000))]
        return bool(await self._redis().eval(_CLAIM, keys=keys, args=args))

    async def rename(self, session: str, nick: str) -> bool:
        presence = self._mine[session]
        with self._unavailable():
            if not await self._claim(session, nick, presence.nick):
                return False
            self._mine[session] = Presence(session, nick, presence.room, presence.kind)
            await self._redis().hset(self._key("session", session), {"nick": nick})
        return True

    async def move(self, session: str, room: str) -> Presence:
        presence = self._mine[session]
        moved = Presence(session, presence.nick, room, presence.kind)
        with self._unavailable():
            await self._redis().zrem(self._key("members", presence.room), [session])
            self._mine[session] = moved
            await self._assert(self._redis(), [moved])
        return moved

    async def unregister(self, session: str) -> None:
        presence = self._mine.pop(session, None)
        if presence is None:
            await trio.lowlevel.checkpoint()
            return
        client = self._redis()
        with self._unavailable():  # if it fails, the lease runs out: nobody renews it
            await client.eval(_RELEASE, keys=[self._nick_key(presence.nick)], args=[session])
            async with client.pipeline(transaction=False) as pipe:
                pipe.delete([self._key("session", session)])
                pipe.zrem(self._key("members", presence.room), [session])
                pipe.zrem(self._key("sessions"), [session])

    async def lookup(self, nick: str) -> Presence | None:
        client = self._redis()
        with self._unavailable():
            owner = await client.get(self._nick_key(nick))
            if owner is None:
                return None
            session = owner.decode()
            fields = await client.hgetall(self._key("session", session))
        if not fields:
            return None
        values = {k.decode(): v.decode() for k, v in fields.items()}
        return Presence(session, values["nick"], values["room"], values["kind"])

    async def nicks(self, room: str | None = None) -> list[str]:
        client = self._redis()
        index = self._key("sessions") if room is None else self._key("members", room)
        with self._unavailable():
            ids = await client.zrange(index, self._now_ms(), "+inf", sortby=PureToken.BYSCORE)
            if not ids:
                return []
            async with client.pipeline(transaction=False) as pipe:
                asked = [pipe.hget(self._key("session", _text(i)), "nick") for i in ids]
            found = [await nick for nick in asked]
        return sorted(n.decode() for n in found if n is not None)

    async def rooms(self) -> dict[str, int]:
        client = self._redis()
        with self._unavailable():
            names = sorted(n.decode() for n in await client.smembers(self._key("rooms")))
            if not names:
                return {}
            now = self._now_ms()
            async with client.pipeline(transaction=False) as pipe:
                counts = [pipe.zcount(self._key("members", n), now, math.inf) for n in names]
            found = [int(await count) for count in counts]
        return {name: count for name, count in zip(names, found, strict=True) if count}

    reap_interval = 1.0

    async def reap(self) -> list[Presence]:
        with self._unavailable():
            found = await self._redis().eval(_REAP, keys=[], args=[self.prefix, str(_wall_ms())])
        items = [_text(item) for item in found] if isinstance(found, list) else []
        return [
            Presence(items[i], items[i + 1], items[i + 2], items[i + 3])
            for i in range(0, len(items) - 3, 4)
        ]

    # -- leases -------------------------------------------------------------------------

    async def _assert(self, client: coredis.Redis[bytes], presences: list[Presence]) -> list[str]:
        """Write (or renew) what Redis holds of ``presences`` for one more lease, in one
        script; return the sessions whose nick another session owns now."""
        lease_ms = int(self.lease * 1000)
        args: list[str] = [str(lease_ms), str(_wall_ms() + lease_ms), self.prefix]
        for p in presences:
            args += [p.session, nick_key(p.nick), p.nick, p.room, p.kind]
        lost = await client.eval(_ASSERT, keys=[], args=args)
        return [_text(item) for item in lost] if isinstance(lost, list) else []

    async def _renew_forever(self) -> None:
        """Every lease / 3: renew (after a Redis restart: re-assert) this process's
        sessions."""
        failed = False
        while True:
            # After a failure, again soon: a Redis that restarted empty gets our users
            # back within RETRY_INTERVAL of its return.
            await trio.sleep(RETRY_INTERVAL if failed else self.lease / 3)
            client = self._client
            if client is None or not self._mine:
                continue
            try:
                lost = await self._assert(client, list(self._mine.values()))
            except BaseException as exc:
                if not is_redis_failure(exc):
                    raise
                self.failed_renewals += 1
                failed = True
                LOGGER.debug("lease renewal failed: %r", exc)
                continue
            failed = False
            for session in lost:
                presence = self._mine.get(session)
                LOGGER.warning(
                    "%s lost its nick %r to another process while the directory was unreachable",
                    session,
                    presence.nick if presence else "?",
                )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wall_ms() -> int:
    """Now, in wall-clock milliseconds: lease ends are compared by every process (and by
    Redis, whose expiry is real time: leases do not run on trio's clock)."""
    return int(time.time() * 1000)
