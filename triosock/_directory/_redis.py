"""A directory shared by processes and machines through Redis (coredis), with leases.

What lives in Redis (``P`` is the prefix, ``triosock:`` by default):

* ``P proc:<origin>``: this process's lease, a key that expires ``lease`` seconds after
  the last renewal; while it lives, the process's sessions are present. ``P procs``: a
  sorted set of the processes, scored by when their lease ends (milliseconds), for the
  reaper, and ``P owned:<origin>``: the set of each process's session ids.
* ``P nick:<key>``: the session id owning the nick (its case-insensitive key). A nick
  whose owner's process has no lease is free.
* ``P session:<id>``: a hash of the session's ``nick``, its key ``nk``, ``room`` and
  ``kind``.
* ``P in:<room>`` and ``P everyone``: sets of session ids, for ``/who``; ``P rooms``: the
  room names ever used; ``P guests``: the counter behind guest nicks, unique across the
  cluster.

Claiming a nick is one Lua script (check the owner and its process's lease, set, drop the
old nick): atomic, so of two processes racing for a nick exactly one gets it. The lease is
one per process, not one per session, written when the directory starts (so a process
with no users is known alive too): every ``lease / 3`` seconds a process renews it with
one ``SET ... PX`` and one ``ZADD``, whatever its number of users (10,000 users on 10
processes cost Redis about 10 commands a second, not 35,000). A process that dies stops
renewing; once its lease ends (at most ``lease`` seconds after its last renewal: 6 s by
default) its users' nicks are free, ``/who`` and ``/msg`` stop finding them, and the next
reaping pass (every process reaps once a second, :meth:`RedisDirectory.reap`, in one
script, so each ghost goes to one process) removes them, and the chat tells their rooms
they left; ``/rooms`` counts them until then. A process that cannot renew for a whole
lease counts as gone the same way.

When a renewal finds the lease gone (a Redis that restarted empty, or a process that was
cut off so long that others reaped its users), or after a renewal failed, the process
re-asserts everything it holds (lease, nicks, hashes, rooms) in one script, so its users
are back within one renewal of Redis's return (``lease / 3`` when the connection
survived, as through a ``FLUSHALL``; :data:`RETRY_INTERVAL` after a failure); a nick
another process took meanwhile stays theirs, and the log says so. A registration or a
move that finds the lease gone re-asserts everyone at once, rather than bring the lease
back for one session and leave the others out. The log warns of a lost lease once per
loss, and only when a lease this process had written was gone: never at start, never
after an outage that Redis survived with its keys.

When Redis cannot be reached, each call raises :class:`DirectoryUnavailable` (the chat
tells the user and goes on); the renewal retries until it can.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import coredis
import trio

from .._errors import DirectoryUnavailable
from .._redis import is_redis_failure, redis_client
from .._running import Running
from .._sansio.chat import DEFAULT_ROOM, Presence, default_nick, nick_key
from ._abc import Directory

__all__ = ["DirectoryUnavailable", "RedisDirectory"]

LOGGER = logging.getLogger("triosock.directory")

#: Seconds a session's entries live without a renewal.
DEFAULT_LEASE: Final = 6.0
#: Seconds between two renewals while Redis cannot be reached.
RETRY_INTERVAL: Final = 0.25

# Whether session id s (``<origin>.<n>``) belongs to a process with a lease; p: prefix.
_ALIVE: Final = """
local function alive(p, s)
  local origin = string.match(s, '^([^.]+)%.')
  return origin ~= nil and redis.call('EXISTS', p .. 'proc:' .. origin) == 1
end
"""
# KEYS: the new nick's key, the old one's (or the same); ARGV: session id, prefix.
_CLAIM: Final = (
    _ALIVE
    + """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] and alive(ARGV[2], owner) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
if KEYS[2] ~= KEYS[1] and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"""
)
# KEYS: a nick's key; ARGV: the session id.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
# Renew this process's lease; 0 if it was gone (the caller re-asserts everything).
# ARGV: lease ms, lease end ms, the prefix, the origin.
_RENEW: Final = """
local p, origin = ARGV[3], ARGV[4]
local held = redis.call('SET', p .. 'proc:' .. origin, '1', 'PX', ARGV[1], 'XX')
redis.call('ZADD', p .. 'procs', ARGV[2], origin)
if held then return 1 end
return 0
"""
# Write the lease and sessions; return whether the lease was there before (1 or 0), and
# the ids whose nick another live session owns now (taken while this process could not
# reach Redis). ARGV: lease ms, lease end ms, the prefix, the origin, then five per
# session: id, nick key, nick, room, kind.
_ASSERT: Final = (
    _ALIVE
    + """
local p, origin = ARGV[3], ARGV[4]
local held = redis.call('EXISTS', p .. 'proc:' .. origin)
redis.call('SET', p .. 'proc:' .. origin, '1', 'PX', ARGV[1])
redis.call('ZADD', p .. 'procs', ARGV[2], origin)
local lost = {}
for i = 5, #ARGV, 5 do
  local s, nk, nick, room, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = p .. 'nick:' .. nk
  local owner = redis.call('GET', key)
  if owner and owner ~= s and alive(p, owner) then
    table.insert(lost, s)
  else
    redis.call('SET', key, s)
  end
  redis.call('HSET', p .. 'session:' .. s, 'nick', nick, 'nk', nk, 'room', room, 'kind', kind)
  redis.call('SADD', p .. 'in:' .. room, s)
  redis.call('SADD', p .. 'everyone', s)
  redis.call('SADD', p .. 'rooms', room)
  redis.call('SADD', p .. 'owned:' .. origin, s)
end
return {held, lost}
"""
)
# Take up to 100 sessions of processes whose lease ended out of the directory, atomically
# (so each is reaped by one caller), and return id, nick, room, kind for each.
# ARGV: prefix, now ms.
_REAP: Final = """
local p, now = ARGV[1], ARGV[2]
local dead = redis.call('ZRANGEBYSCORE', p .. 'procs', '-inf', '(' .. now, 'LIMIT', 0, 10)
local out, budget = {}, 100
for _, origin in ipairs(dead) do
  if budget <= 0 then break end
  if redis.call('EXISTS', p .. 'proc:' .. origin) == 0 then
    local ids = redis.call('SPOP', p .. 'owned:' .. origin, budget)
    if #ids < budget then redis.call('ZREM', p .. 'procs', origin) end
    budget = budget - #ids
    for _, s in ipairs(ids) do
      local sk = p .. 'session:' .. s
      local h = redis.call('HMGET', sk, 'nick', 'room', 'kind', 'nk')
      redis.call('SREM', p .. 'everyone', s)
      if h[1] and h[2] then
        redis.call('SREM', p .. 'in:' .. h[2], s)
        table.insert(out, s)
        table.insert(out, h[1])
        table.insert(out, h[2])
        table.insert(out, h[3] or '')
      end
      if h[4] then
        local key = p .. 'nick:' .. h[4]
        if redis.call('GET', key) == s then redis.call('DEL', key) end
      end
      redis.call('DEL', sk)
    end
  end
end
return out
"""


class RedisDirectory(Running, Directory):
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
        self._leased = False  # this process's lease was written at least once

    def __repr__(self) -> str:
        return f"<RedisDirectory {self.url} sessions={len(self._mine)}>"

    # -- running -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        async with redis_client(self.url) as client, trio.open_nursery() as nursery:
            self._client = client
            await nursery.start(self._renew_forever, client)  # the lease written first
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
            if not self._leased:  # a claim holds only while this process has a lease
                await self._assert(client, [])  # (its first writing failed)
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
        return bool(await self._redis().eval(_CLAIM, keys=keys, args=[session, self.prefix]))

    async def rename(self, session: str, nick: str) -> bool:
        presence = self._mine[session]
        with self._unavailable():
            if not await self._claim(session, nick, presence.nick):
                return False
            self._mine[session] = Presence(session, nick, presence.room, presence.kind)
            fields = {"nick": nick, "nk": nick_key(nick)}
            await self._redis().hset(self._key("session", session), fields)
        return True

    async def move(self, session: str, room: str) -> Presence:
        presence = self._mine[session]
        moved = Presence(session, presence.nick, room, presence.kind)
        with self._unavailable():
            await self._redis().srem(self._key("in", presence.room), [session])
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
                pipe.srem(self._key("in", presence.room), [session])
                pipe.srem(self._key("everyone"), [session])
                pipe.srem(self._key("owned", self.origin), [session])

    async def lookup(self, nick: str) -> Presence | None:
        client = self._redis()
        with self._unavailable():
            owner = await client.get(self._nick_key(nick))
            if owner is None:
                return None
            session = owner.decode()
            async with client.pipeline(transaction=False) as pipe:
                alive = pipe.exists([self._key("proc", _origin(session))])
                hash_ = pipe.hgetall(self._key("session", session))
            leased, fields = await alive, await hash_
        if not leased:
            return None  # its process is gone, and it is not reaped yet
        if not fields:
            return None
        values = {k.decode(): v.decode() for k, v in fields.items()}
        return Presence(session, values["nick"], values["room"], values["kind"])

    async def nicks(self, room: str | None = None) -> list[str]:
        client = self._redis()
        index = self._key("everyone") if room is None else self._key("in", room)
        with self._unavailable():
            ids = [_text(i) for i in await client.smembers(index)]
            if not ids:
                return []
            origins = sorted({_origin(i) for i in ids})
            async with client.pipeline(transaction=False) as pipe:
                leases = [pipe.exists([self._key("proc", o)]) for o in origins]
                asked = [pipe.hget(self._key("session", i), "nick") for i in ids]
            alive = {o for o, lease in zip(origins, leases, strict=True) if await lease}
            found = [(i, await nick) for i, nick in zip(ids, asked, strict=True)]
        return sorted(n.decode() for i, n in found if n is not None and _origin(i) in alive)

    async def rooms(self) -> dict[str, int]:
        client = self._redis()
        with self._unavailable():
            names = sorted(n.decode() for n in await client.smembers(self._key("rooms")))
            if not names:
                return {}
            async with client.pipeline(transaction=False) as pipe:
                counts = [pipe.scard(self._key("in", n)) for n in names]
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

    def _lease_args(self) -> list[str]:
        lease_ms = int(self.lease * 1000)
        return [str(lease_ms), str(_wall_ms() + lease_ms), self.prefix, self.origin]

    async def _assert(
        self, client: coredis.Redis[bytes], presences: list[Presence] | None = None
    ) -> list[str]:
        """Write what Redis holds of ``presences`` (None: of every session here) and renew
        the lease, in one script.

        A lease this process had written and found gone means Redis lost what it held of
        this process (it restarted empty, or others reaped this process): that is
        logged, and every session here is written again; the lease back with one session
        would keep the renewal from noticing that the others are missing.

        Returns:
          The sessions whose nick another session owns now.

        Raises:
          What coredis raises when Redis cannot be reached (see ``is_redis_failure``).
        """
        mine = list(self._mine.values())
        held, lost = await self._write(client, mine if presences is None else presences)
        if not held and self._leased:
            LOGGER.warning(
                "the directory had lost this process's lease; re-asserting its users "
                "(%d, process %s)",
                len(self._mine),
                self.origin,
            )
            if presences is not None:
                _, lost = await self._write(client, list(self._mine.values()))
        self._leased = True
        return lost

    async def _write(
        self, client: coredis.Redis[bytes], presences: list[Presence]
    ) -> tuple[bool, list[str]]:
        """Run the assert script: whether the lease was there, and the lost nicks' sessions."""
        args = self._lease_args()
        for p in presences:
            args += [p.session, nick_key(p.nick), p.nick, p.room, p.kind]
        reply = await client.eval(_ASSERT, keys=[], args=args)
        held, lost = reply if isinstance(reply, list) else (0, [])
        return bool(held), [_text(item) for item in lost] if isinstance(lost, list) else []

    async def _renew(self, client: coredis.Redis[bytes], reassert: bool) -> list[str]:
        """Renew the lease (O(1)); re-assert every session when asked, or when the lease
        was gone. The sessions whose nick another session owns now."""
        if not reassert and await client.eval(_RENEW, keys=[], args=self._lease_args()):
            return []
        return await self._assert(client)

    async def _renew_forever(
        self,
        client: coredis.Redis[bytes],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Write this process's lease and report started (written, or failed once: the
        retries go on), then every lease / 3 renew it (after a failure, or when it was
        gone: re-assert its sessions)."""
        reassert = await self._renew_once(client, reassert=True)  # the first writing
        task_status.started()
        while True:
            # After a failure, again soon: a Redis that restarted empty gets our users
            # back within RETRY_INTERVAL of its return.
            await trio.sleep(RETRY_INTERVAL if reassert else self.lease / 3)
            reassert = await self._renew_once(client, reassert)

    async def _renew_once(self, client: coredis.Redis[bytes], reassert: bool) -> bool:
        """One renewal; whether the next must re-assert (this one failed)."""
        try:
            lost = await self._renew(client, reassert=reassert)
        except BaseException as exc:
            if not is_redis_failure(exc):
                raise
            LOGGER.debug("lease renewal failed: %r", exc)
            return True
        for session in lost:
            presence = self._mine.get(session)
            LOGGER.warning(
                "%s lost its nick %r to another process while the directory was unreachable",
                session,
                presence.nick if presence else "?",
            )
        return False


def _origin(session: str) -> str:
    """The process part of a session id (``<origin>.<n>``)."""
    return session.partition(".")[0]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _wall_ms() -> int:
    """Now, in wall-clock milliseconds: lease ends are compared by every process (and by
    Redis, whose expiry is real time: leases do not run on trio's clock)."""
    return int(time.time() * 1000)
