"""The history shared by every server of a cluster: Redis Streams, one per room and inbox.

What lives in Redis (``P`` is the hub's prefix, ``triosock:`` by default):

* ``P history:<key>``: a stream of the key's recent lines (``<key>`` is a room's topic,
  ``room:#lobby``, or an inbox, ``inbox:<session>``), entry ids ``0-<id>``, each with
  ``d`` (the line, encoded as the hub delivers it, id and time inside) and ``t`` (its
  time, milliseconds). Trimmed as lines are added, to about ``history`` lines
  (``XADD ... MAXLEN ~``: Redis trims whole nodes, so a few dozen more may stay).
* ``P ids:<key>``: the key's last id given (a counter: ids go on after trimming).
* ``P epoch``: the history's epoch. A Redis that restarted without its data (no
  ``appendonly``, no snapshot) has lost it, and the next script makes a new one: ids of
  the old epoch mean nothing any more, and a resuming client is told so.
* ``P relayed:<origin>``: the last message number each hub relayed (for a day), so that
  a batch sent again after a timeout is not recorded twice.

An inbox's stream and counter expire :data:`INBOX_TTL` seconds after their last line
(rooms keep theirs): a session's direct messages are kept for its resume, and nobody
else reads them.

**Ids atomic with the publish.** A line said goes through :meth:`RedisHub.relay_nowait
<triosock._hub._redis.RedisHub.relay_nowait>`: one Lua script per run of a room's lines
in the hub's batch takes the next ids, stamps each line with its id and Redis's time,
adds it to the stream and ``PUBLISH``\\ es the run, atomically. So every server, this one
too, gets a room's lines in the order of their ids, and the history holds exactly what
was delivered. A hub that missed a stretch (its subscriber connection was down) reads
it back from the stream (:meth:`RedisStore.missed`) before the next line.

Memory: what Redis holds is about ``history`` lines per room and per live inbox (a line
is at most the chat's longest line plus about 150 bytes of JSON and stream overhead);
give Redis a ``maxmemory`` of its own for a bound on the whole.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Final

import trio

from .._redis import redis_client
from .._sansio import chat as proto
from .._sansio.history import DEFAULT_HISTORY, Page, Record
from ._abc import STORED, Store, Stored

if TYPE_CHECKING:
    import coredis

    from .._hub._redis import RedisHub

__all__ = ["INBOX_TTL", "RedisStore"]

#: Seconds an inbox's stream lives after its last line.
INBOX_TTL: Final = 7 * 24 * 3600
#: Seconds a hub's last relayed number is remembered.
_RELAYED_TTL: Final = 86_400
#: What an encoded line begins with before its id is known (the id is its first key).
_HEAD: Final = b'{"id":0,'
_TIME: Final = b'"time":0,'
#: What a relayed message that is no line said begins with (after its number).
_PLAIN: Final = b"\x01"

# KEYS: channel, stream, counter, epoch, the origin's last number.
# ARGV: what the published payload begins with, lines kept (0: none), ttl (0: none), a
# new epoch, then each line: its number (8 bytes), the JSON between the id and the time,
# a NUL, the JSON after the time; or, for an event that is no line said, its number,
# the byte 1 and the event's JSON. (Redis's Lua has the struct library: the numbers are
# read and written by it, in C, rather than a byte at a time.)
_RELAY: Final = """
local keep, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('SET', KEYS[4], ARGV[4]) end
local heard = tonumber(redis.call('GET', KEYS[5]) or '0')
local t = redis.call('TIME')
local ms = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local pack, unpack, sub, find = struct.pack, struct.unpack, string.sub, string.find
local no_id = pack('>I8', 0)
local out = {ARGV[1]}
for i = 5, #ARGV do
  local m = ARGV[i]
  local n = unpack('>I8', m)
  if n > heard then
    heard = n
    local item
    if string.byte(m, 9) == 1 then  -- no line said: published in its place, with id 0
      item = sub(m, 1, 8) .. no_id .. sub(m, 10)
    else
      local cut = find(m, '\\0', 9, true)
      local id = redis.call('INCR', KEYS[3])
      local data = '{"id":' .. id .. ',' .. sub(m, 9, cut - 1) .. '"time":' .. ms
        .. ',' .. sub(m, cut + 1)
      if keep > 0 then
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', keep, '0-' .. id, 'd', data, 't', ms)
      end
      item = sub(m, 1, 8) .. pack('>I8', id) .. data
    end
    out[#out + 1] = pack('>I4', #item) .. item
  end
end
redis.call('SET', KEYS[5], string.format('%.0f', heard), 'EX', RELAYED_TTL)
if ttl > 0 then
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
if #out > 1 then redis.call('PUBLISH', KEYS[1], table.concat(out)) end
return #out - 1
""".replace("RELAYED_TTL", str(_RELAYED_TTL))

# KEYS: stream, counter, epoch. ARGV: 'last', 'after' or 'before'; the id; the most
# lines; a new epoch (used when Redis has none).
_READ: Final = """
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[3], epoch)
end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local first = 0
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #head > 0 then first = tonumber(string.sub(head[1][1], 3)) end
local mode, count, found = ARGV[1], tonumber(ARGV[3]), {}
if count > 0 then
  if mode == 'last' then
    found = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', count)
  elseif mode == 'after' then
    found = redis.call('XRANGE', KEYS[1], '(0-' .. ARGV[2], '+', 'COUNT', count)
  else
    found = redis.call('XREVRANGE', KEYS[1], '(0-' .. ARGV[2], '-', 'COUNT', count)
  end
end
return {epoch, last, first, found}
"""


class RedisStore(Store):
    """Room and inbox history in Redis Streams, shared by every server of a cluster; see
    the module docstring.

    Use it as an async context manager (``async with RedisStore(hub) as store:``), within
    the hub's block: it opens its own connection for reading, and learns the epoch.

    Args:
      hub: the cluster's hub: lines said are published through it, with their ids.
      history: lines kept per room (and per inbox); 0 keeps none (ids are still given).

    Raises:
      ValueError: a negative ``history``.
    """

    __slots__ = ("_client", "_epoch", "_stack", "hub", "per_key", "prefix")

    delivers = True

    def __init__(self, hub: RedisHub, history: int = DEFAULT_HISTORY) -> None:
        if history < 0:
            raise ValueError(f"history must be 0 or more lines, not {history}")
        self.hub = hub
        self.per_key = history
        self.prefix = hub.prefix
        self._epoch = ""
        self._client: coredis.Redis[bytes] | None = None
        self._stack = AsyncExitStack()
        hub.relay = self

    def __repr__(self) -> str:
        return f"<RedisStore {self.hub.url} per_key={self.per_key}>"

    async def __aenter__(self) -> RedisStore:
        self._client = await self._stack.enter_async_context(redis_client(self.hub.url))
        await self.refresh_epoch()
        return self

    async def aclose(self) -> None:
        """Close the reading connection."""
        self._client = None
        await self._stack.aclose()
        await trio.lowlevel.checkpoint()

    @property
    def epoch(self) -> str:
        """The epoch last read from Redis (by every read, and :meth:`refresh_epoch`)."""
        return self._epoch

    async def refresh_epoch(self) -> str:
        """Read the epoch (making one if Redis has none: it restarted empty)."""
        await self.last("room:", 0)
        return self._epoch

    # -- writing ------------------------------------------------------------------------

    def append_nowait(self, key: str, event: Stored) -> bytes:
        """The line as it goes to Redis; the id and time are Redis's to give, and only
        :meth:`deliver_nowait` records it."""
        return proto.encode_event(dataclasses.replace(event, id=0, time=0))

    def deliver_nowait(self, key: str, event: proto.Event) -> None:
        """Publish ``event`` through the hub, in Redis's order on its topic; a line
        said (:data:`~._abc.STORED`) is recorded too, Redis giving it its id and time
        (see the module docstring). Never blocks; not a checkpoint."""
        if not isinstance(event, STORED):  # a join, a leave...: no id, its place kept
            self.hub.relay_nowait(key, _PLAIN + proto.encode_event(event), self)
            return
        data = self.append_nowait(key, event)
        cut = data.rindex(_TIME)
        if not data.startswith(_HEAD):  # pragma: no cover - the encoder's key order
            raise AssertionError(f"an encoded line begins with its id: {data!r}")
        self.hub.relay_nowait(key, data[len(_HEAD) : cut] + b"\0" + data[cut + len(_TIME) :], self)

    def queue(
        self, pipe: Any, channel: bytes, topic: str, prefix: bytes, items: list[bytes]
    ) -> None:
        """The hub's :class:`~triosock._hub._redis.Relay`: one script per run of lines."""
        ttl = INBOX_TTL if topic.startswith("inbox:") else 0
        keys = [channel, *self._keys(topic), self._key("relayed:", prefix[:-1].decode())]
        args = [prefix, str(self.per_key), str(ttl), _new_epoch(), *items]
        pipe.eval(_RELAY, keys=keys, args=args)

    # -- reading ------------------------------------------------------------------------

    def _key(self, kind: str, key: str) -> str:
        return f"{self.prefix}{kind}{key}"

    def _keys(self, key: str) -> list[str]:
        return [self._key("history:", key), self._key("ids:", key), self._key("", "epoch")]

    async def _read(self, key: str, mode: str, line_id: int, count: int) -> Page:
        client = self._client
        if client is None:
            raise trio.ClosedResourceError("the RedisStore is not open: use `async with`")
        reply: Any = await client.eval(
            _READ, keys=self._keys(key), args=[mode, str(line_id), str(count), _new_epoch()]
        )
        epoch, last, first, found = reply
        self._epoch = _text(epoch)
        records = [_record(entry) for entry in found]
        if mode != "after":
            records.reverse()
        return Page(self._epoch, tuple(records), int(first), int(last))

    async def last(self, key: str, count: int) -> Page:
        return await self._read(key, "last", 0, max(count, 0))

    async def after(self, key: str, after: int, limit: int) -> Page:
        return await self._read(key, "after", max(after, 0), max(limit, 0))

    async def before(self, key: str, before: int, limit: int) -> Page:
        return await self._read(key, "before", before, max(limit, 0) if before > 1 else 0)

    async def missed(self, topic: str, after: int, before: int) -> list[tuple[int, bytes]]:
        """The hub's :class:`~triosock._hub._redis.Relay`: lines between two ids."""
        page = await self.after(topic, after, before - after - 1)
        return [(r.id, r.data) for r in page.records if r.id < before]

    def forget(self, key: str) -> None:
        """Drop an inbox nobody will read (in the background; its expiry is the
        fallback)."""
        nursery, client = self.hub._nursery, self._client
        if nursery is not None and client is not None:
            nursery.start_soon(self._delete, client, key)

    async def _delete(self, client: coredis.Redis[bytes], key: str) -> None:
        try:
            with trio.fail_after(5):
                await client.delete(self._keys(key)[:2])
        except Exception:
            return


def _new_epoch() -> str:
    return secrets.token_hex(8)


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _record(entry: Sequence[Any]) -> Record:
    entry_id, fields = entry
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    line_id = int(_text(entry_id).partition("-")[2])
    return Record(line_id, int(values[b"t"]), bytes(values[b"d"]))
