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
old nick; the scripts are in :mod:`._scripts`): atomic, so of two processes racing for a
nick exactly one gets it. Each claim is stamped with Redis's clock (``ts`` in the
session's hash, and kept by its process). The lease is one per process, not one per
session, written when the directory starts (so a process with no users is known alive
too): every ``lease / 3`` seconds a process renews it with one script of a few O(1)
commands, whatever its number of users (10,000 users on 10 processes cost Redis about
10 scripts a second, not 35,000). A process that dies stops renewing; once its lease
ends (at most ``lease`` seconds after its last renewal: 6 s by default) its users' nicks
are free, ``/who`` and ``/msg`` stop finding them, and the next reaping pass (every
process reaps once a second, :meth:`RedisDirectory.reap`, in one script, so each ghost
goes to one process and its rooms are told once) removes them, and the chat tells their
rooms they left; ``/rooms`` counts them until then. A process that cannot renew for a
whole lease while others can counts as gone the same way.

**A Redis that was away is not a dead process.** When Redis itself was paused or cut
off from everyone past the lease, every lease ran out at once, and none of those
processes died: the scripts note, on Redis's clock, when Redis last heard from anyone
(``P seen``) and when it came back after half a lease of silence (``P back``), and no
one is reaped until a whole lease after that return. Every live process renews within
that lease and nobody's rooms are told anything; a process that really died meanwhile
is reaped a lease later than otherwise.

**A process reaped while it was cut off alone comes back visibly.** Reaping leaves a
tombstone of each session (``P reaped:<origin>``, for an hour); when the process
reaches Redis again, re-asserting finds its tombstones and :meth:`RedisDirectory.repairs`
reports those sessions as :class:`~._abc.Returned`: the chat tells their rooms they
joined, so each room hears "left" then "joined", each once.

When a renewal finds the lease gone (a Redis that restarted empty, or a process that was
cut off so long that others reaped its users), or after a renewal failed, the process
re-asserts everything it holds (lease, nicks, hashes, rooms) in one script, so its users
are back within one renewal of Redis's return (``lease / 3`` when the connection
survived, as through a ``FLUSHALL``; :data:`RETRY_INTERVAL` after a failure). A
registration or a move that finds the lease gone re-asserts everyone at once, rather
than bring the lease back for one session and leave the others out. The log warns of a
lost lease once per loss, and only when a lease this process had written was gone:
never at start, never after an outage that Redis survived with its keys.

**A nick two sessions came to hold keeps the earlier claim.** While Redis has lost a
session (restarted empty, or the lease ran out), its nick looks free, and another
process's user may claim it. When the first session is re-asserted, the script compares
the two claims' stamps: the earlier claim keeps the nick (ties: the smaller session id),
as an IRC network resolves a nick collision after a netsplit by the nick's timestamp,
the older one kept; the other session gets the next guest nick in the same script, so
``/who`` and ``/msg`` never see two owners, and its process learns it at its next
renewal (:class:`~._abc.NickLost`, from :meth:`RedisDirectory.repairs`); the chat tells
that user why at once. A process that found its lease lost renews every
:data:`RETRY_INTERVAL` for a lease afterwards, since that is when the others re-assert
too, so it learns within a quarter of a second; one that lost nothing, within
``lease / 3``. The window in which a nick looks free is kept short as well: the chat
calls :meth:`RedisDirectory.check_soon` when its hub finds Redis back, and the process
re-asserts then rather than at its next renewal.

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
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Final

import coredis
import trio

from .._errors import DirectoryUnavailable
from .._redis import is_redis_failure, redis_client
from .._running import Running
from .._sansio.chat import DEFAULT_ROOM, Presence, default_nick, nick_key
from . import _scripts as lua
from ._abc import Adopted, Directory, HandedOver, NickLost, Repair, Returned

__all__ = ["DirectoryUnavailable", "RedisDirectory"]

LOGGER = logging.getLogger("triosock.directory")

#: Seconds a session's entries live without a renewal.
DEFAULT_LEASE: Final = 6.0
#: Seconds between two renewals while Redis cannot be reached.
RETRY_INTERVAL: Final = 0.25
#: The most repairs kept for :meth:`RedisDirectory.repairs` (the chat takes them every
#: reaping pass); the oldest go first.
MAX_REPAIRS: Final = 10_000


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
        self._stamps: dict[str, str] = {}  # session -> when Redis saw its nick claimed
        self._tokens: dict[str, str] = {}  # session -> its token's digest (hex)
        self._repairs: deque[Repair] = deque(maxlen=MAX_REPAIRS)
        self._client: coredis.Redis[bytes] | None = None
        self._leased = False  # this process's lease was written at least once
        self._check = trio.Event()  # set: re-assert now (see check_soon)
        self._repaired = trio.Event()  # set: repairs wait
        self._watchful_until = -math.inf  # renewing every RETRY_INTERVAL until then

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
        return self._mine[session]  # (renamed, if an earlier claim on its nick came back)

    async def _claim(self, session: str, nick: str, old: str) -> bool:
        """Claim ``nick`` for ``session`` (dropping ``old``); keep the claim's stamp."""
        keys = [self._nick_key(nick), self._nick_key(old)]
        stamp = await self._redis().eval(lua.CLAIM, keys=keys, args=[session, self.prefix])
        if not isinstance(stamp, bytes | str):
            return False
        self._stamps[session] = _text(stamp)
        return True

    async def rename(self, session: str, nick: str) -> bool:
        presence = self._mine[session]
        with self._unavailable():
            if not await self._claim(session, nick, presence.nick):
                return False
            self._mine[session] = Presence(session, nick, presence.room, presence.kind)
            fields = {"nick": nick, "nk": nick_key(nick), "ts": self._stamps[session]}
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

    async def unregister(self, session: str) -> bool:
        presence = self._mine.pop(session, None)
        self._stamps.pop(session, None)
        self._tokens.pop(session, None)
        if presence is None:
            await trio.lowlevel.checkpoint()
            return False  # not this process's (any more)
        client = self._redis()
        with self._unavailable():  # if it fails, the lease runs out: nobody renews it
            args = [self.prefix, session, self.origin, presence.room]
            keys = [self._nick_key(presence.nick)]
            return bool(await client.eval(lua.UNREGISTER, keys=keys, args=args))

    async def lookup(self, nick: str) -> Presence | None:
        client = self._redis()
        with self._unavailable():
            owner = await client.get(self._nick_key(nick))
            if owner is None:
                return None
            session = owner.decode()
            fields = await client.hgetall(self._key("session", session))
            values = {_text(k): _text(v) for k, v in fields.items()}
            home = values.get("home") or _origin(session)
            leased = await client.exists([self._key("proc", home)])
        if not leased or "nick" not in values:
            return None  # its process is gone, and it is not reaped (or adopted) yet
        return Presence(session, values["nick"], values["room"], values["kind"])

    async def nicks(self, room: str | None = None) -> list[str]:
        client = self._redis()
        index = self._key("everyone") if room is None else self._key("in", room)
        with self._unavailable():
            ids = [_text(i) for i in await client.smembers(index)]
            if not ids:
                return []
            async with client.pipeline(transaction=False) as pipe:
                asked = [pipe.hmget(self._key("session", i), ["nick", "home"]) for i in ids]
            found = [(i, await fields) for i, fields in zip(ids, asked, strict=True)]
            homes = {i: _text(home) if home else _origin(i) for i, (_, home) in found}
            origins = sorted(set(homes.values()))
            async with client.pipeline(transaction=False) as pipe:
                leases = [pipe.exists([self._key("proc", o)]) for o in origins]
            alive = {o for o, lease in zip(origins, leases, strict=True) if await lease}
        return sorted(
            _text(nick) for i, (nick, _) in found if nick is not None and homes[i] in alive
        )

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

    async def reap(self, *, adopt: bool = False) -> list[Presence]:
        with self._unavailable():
            args = [self.prefix, str(_wall_ms()), str(int(self.lease * 1000))]
            args.append(self.origin if adopt else "")
            found = await self._redis().eval(lua.REAP, keys=[], args=args)
        items = [_text(item) for item in found] if isinstance(found, list) else []
        reaped = []
        for i in range(0, len(items) - 5, 6):
            presence = Presence(items[i], items[i + 1], items[i + 2], items[i + 3])
            if items[i + 4] == "a":  # in this process's care now
                self._mine[presence.session] = presence
                self._tokens[presence.session] = items[i + 5]
                self._repairs.append(Adopted(presence, bytes.fromhex(items[i + 5])))
                self._repaired.set()
            else:
                reaped.append(presence)
        return reaped

    async def keep_token(self, session: str, digest: bytes) -> None:
        self._tokens[session] = digest.hex()
        with self._unavailable():
            args = [self.prefix, session, digest.hex()]
            await self._redis().eval(lua.KEEP_TOKEN, keys=[], args=args)

    async def take_session(self, digest: bytes) -> Presence | None:
        with self._unavailable():
            args = [self.prefix, digest.hex(), self.origin]
            found = await self._redis().eval(lua.TAKE, keys=[], args=args)
        if not isinstance(found, list):
            return None
        session, nick, room, kind, stamp, came_from = (_text(item) for item in found)
        presence = Presence(session, nick, room, kind)
        self._mine[session] = presence
        self._tokens.pop(session, None)  # used up: the taker keeps a new one
        if stamp:
            self._stamps[session] = stamp
        if came_from != self.origin:
            LOGGER.info("session %s (%s) taken over from process %s", session, nick, came_from)
        return presence

    async def take_own(self, session: str) -> bool:
        digest = self._tokens.get(session)
        if session not in self._mine or digest is None:
            await trio.lowlevel.checkpoint()  # handed over, or never shared
            return session in self._mine
        # by the token Redis knows (the client may have shown the one before it)
        taken = await self.take_session(bytes.fromhex(digest))
        return taken is not None and taken.session == session

    # -- leases -------------------------------------------------------------------------

    def _lease_args(self) -> list[str]:
        lease_ms = int(self.lease * 1000)
        return [str(lease_ms), str(_wall_ms() + lease_ms), self.prefix, self.origin]

    def check_soon(self) -> None:
        """Re-assert this process's lease and sessions now, rather than at the next
        renewal (the chat calls it when its hub finds Redis back after losing it: a
        Redis that restarted empty has lost them, and until they are back their nicks
        look free to other processes)."""
        self._check.set()

    async def repairs(self) -> list[Repair]:
        """Wait for renames and returns (see :meth:`_apply`); those made since the last
        call."""
        while not self._repairs:
            await self._repaired.wait()
            self._repaired = trio.Event()
        taken = list(self._repairs)
        self._repairs.clear()
        return taken

    async def _assert(
        self, client: coredis.Redis[bytes], presences: list[Presence] | None = None
    ) -> None:
        """Write what Redis holds of ``presences`` (None: of every session here) and renew
        the lease, in one script.

        A lease this process had written and found gone means Redis lost what it held of
        this process (it restarted empty, or others reaped this process): that is
        logged, and every session here is written again; the lease back with one session
        would keep the renewal from noticing that the others are missing.

        Raises:
          What coredis raises when Redis cannot be reached (see ``is_redis_failure``).
        """
        mine = list(self._mine.values())
        held = await self._write(client, mine if presences is None else presences)
        if not held and self._leased:
            self._watchful_until = trio.current_time() + self.lease
            LOGGER.warning(
                "the directory had lost this process's lease; re-asserting its users "
                "(%d, process %s)",
                len(self._mine),
                self.origin,
            )
            if presences is not None:
                await self._write(client, list(self._mine.values()))
        self._leased = True

    async def _write(self, client: coredis.Redis[bytes], presences: list[Presence]) -> bool:
        """Run the assert script and apply what it says; whether the lease was there."""
        args = self._lease_args()
        for p in presences:
            stamp = self._stamps.get(p.session, "")  # (none: the newest claim of all)
            token = self._tokens.get(p.session, "")
            args += [p.session, nick_key(p.nick), p.nick, p.room, p.kind, stamp, token]
        reply = await client.eval(lua.ASSERT, keys=[], args=args)
        held, evicted, back, handed = reply if isinstance(reply, list) else (0, [], [], [])
        self._apply(evicted, back, handed)
        return bool(held)

    def _apply(self, evicted: object, back: object = (), handed: object = ()) -> None:
        """Take in the renames Redis queued for this process (``<id> <guest> <stamp>``:
        an earlier claim on the session's nick won), the sessions that had been reaped
        and those other processes took, and queue them for :meth:`repairs`."""
        for item in handed if isinstance(handed, list) else []:
            session = _text(item)
            if self._mine.pop(session, None) is not None:
                self._stamps.pop(session, None)
                self._tokens.pop(session, None)
                self._repairs.append(HandedOver(session))
                self._repaired.set()
        for entry in evicted if isinstance(evicted, list) else []:
            session, guest, stamp = _text(entry).split(" ")
            presence = self._mine.get(session)
            if presence is None or presence.nick == guest:
                continue
            LOGGER.warning(
                "%s lost its nick %r to an earlier claim of another session, taken while "
                "the directory had lost one of them; it is %s now",
                session,
                presence.nick,
                guest,
            )
            self._mine[session] = Presence(session, guest, presence.room, presence.kind)
            self._stamps[session] = stamp
            self._repairs.append(NickLost(session, presence.nick, guest))
            self._repaired.set()
        returned = [self._mine.get(_text(item)) for item in back] if isinstance(back, list) else []
        for presence in returned:
            if presence is not None:
                self._repairs.append(Returned(presence))
                self._repaired.set()
        if returned:
            LOGGER.warning(
                "users of this process reaped while it was cut off from the directory past "
                "its lease, now back: %d (process %s)",
                len(returned),
                self.origin,
            )

    async def _renew(self, client: coredis.Redis[bytes], reassert: bool) -> None:
        """Renew the lease (O(1)); re-assert every session when asked, or when the lease
        was gone."""
        if not reassert:
            reply = await client.eval(lua.RENEW, keys=[], args=self._lease_args())
            held, evicted, handed = reply if isinstance(reply, list) else (0, [], [])
            self._apply(evicted, (), handed)
            if held:
                return
        await self._assert(client)

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
            # back within RETRY_INTERVAL of its return. Sooner still when told that
            # Redis is back (check_soon): a connection lost while idle shows only then.
            # And for a lease after a loss: what the others re-assert meanwhile may take
            # a nick from a session here, which the renewal is how this process learns.
            soon = reassert or trio.current_time() < self._watchful_until
            with trio.move_on_after(RETRY_INTERVAL if soon else self.lease / 3):
                await self._check.wait()
            if self._check.is_set():
                self._check, reassert = trio.Event(), True
            reassert = await self._renew_once(client, reassert)

    async def _renew_once(self, client: coredis.Redis[bytes], reassert: bool) -> bool:
        """One renewal; whether the next must re-assert (this one failed)."""
        try:
            await self._renew(client, reassert=reassert)
        except BaseException as exc:
            if not is_redis_failure(exc):
                raise
            LOGGER.debug("lease renewal failed: %r", exc)
            return True
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
