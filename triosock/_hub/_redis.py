"""A hub shared by processes and machines through Redis pub/sub (coredis).

:class:`RedisHub` is an :class:`~triosock.hub.InProcessHub` for this process's subscribers
plus Redis for everyone else's:

* **Publishing** delivers to this process's subscribers at once (as the in-process hub
  does) and queues the message for Redis; one task sends the queue in order, in
  pipelined batches, on one connection. Messages for one topic that follow each other in
  the queue go in one ``PUBLISH`` (packed, each with its length). So a process sends at
  most one Redis ``PUBLISH`` per message whatever its number of subscribers (under load
  far fewer: a chat pass's lines for a room travel together), and each process's
  messages keep their order. Each ``PUBLISH`` carries the hub's random origin id; a
  process skips its own when Redis echoes them, so nobody gets a message twice. Each
  message carries its number in its origin's sequence, and a receiver skips a number
  it has had (counted in :attr:`RedisHubStatistics.duplicates`): a batch whose
  ``PUBLISH`` timed out is sent again, and when Redis was only slow (paused past the
  commands' timeout), it runs both the first sending and the second.
* **Subscribing** to a topic subscribes this process to its Redis channel
  (``<prefix><topic>``) once, for all its local subscribers, and waits for Redis to
  confirm, so that what another process publishes after ``subscribe`` returns arrives.
  The last local subscriber leaving unsubscribes the channel.
* **Receiving**: one task reads every channel and hands each message to the local hub,
  without waiting, so coredis's own buffer (which is unbounded) stays near empty. When a
  ``block`` subscriber is full, messages wait in this hub's queue of ``max_pending``
  messages (in order) while a task waits for room; past that, the oldest are dropped and
  counted (:attr:`RedisHubStatistics.dropped_remote`) and a warning is logged.
* **Faults**: a lost connection (Redis stopped, restarted, unreachable) makes the hub
  *degraded*: local delivery goes on, messages for Redis wait in a queue of
  ``max_pending`` (the oldest dropped past it, counted in
  :attr:`RedisHubStatistics.dropped_outgoing`), and the hub reconnects every
  ``retry_interval`` seconds, resubscribes every channel it needs, and sends what waited.
  Listeners added with :meth:`RedisHub.add_health_listener` hear of each change. What
  other processes published while this one was cut off is lost (Redis pub/sub keeps
  nothing); a Redis that is only paused (``SIGSTOP``) keeps the subscribers'
  connections, and then nothing is lost or duplicated, as long as the pause ends before
  coredis's pub/sub keepalive gives up (a ``PING`` after 15 s without a message, then the
  5 s timeout): past that, the subscriber reconnects as after a lost connection.
* **Relayed messages** (:meth:`RedisHub.relay_nowait`): a message that Redis must see
  first, because a script of the caller's there gives it something (the chat's history
  store gives each line said its id in the room's stream, atomically with the
  ``PUBLISH``), goes to Redis only, through the caller's :class:`Relay`, and comes back
  to this process's subscribers as to every other's: in Redis's order, the same order
  everywhere. Relayed messages carry their id; a receiver that finds ids missing on a
  topic (a stretch it missed while its subscriber connection was down) asks the relay
  for them and delivers them first, in order (counted in
  :attr:`RedisHubStatistics.repaired`). While Redis is unreachable they wait, as
  everything for Redis does: late, never out of order.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Final

import coredis
import trio
from coredis.retry import NoRetryPolicy

from .._redis import COMMAND_TIMEOUT, REDIS_ERRORS, describe_failure, is_redis_failure, redis_client
from .._running import Running
from ._abc import DEFAULT_BUFFER, Hub, HubStatistics, Policy, Subscription
from ._inprocess import InProcessHub
from ._relay import Relay
from ._wire import LENGTH, ONE, PACKED, RELAYED, SEQ, as_bytes, unpacked

__all__ = ["RedisHub", "RedisHubStatistics", "Relay"]

LOGGER = logging.getLogger("triosock.hub")

#: Messages a hub holds for Redis, or from it for a full subscriber, before dropping.
DEFAULT_MAX_PENDING: Final = 10_000
#: Seconds between two attempts to reach Redis while it is unreachable.
DEFAULT_RETRY_INTERVAL: Final = 0.25
#: The most origins whose last message number a hub remembers (the oldest go first).
_MAX_ORIGINS: Final = 10_000
#: How many queued messages one pipelined batch sends at most.
_BATCH: Final = 512

HealthListener = Callable[[bool, str], object]


@dataclass(frozen=True, slots=True)
class RedisHubStatistics(HubStatistics):
    """A snapshot of a :class:`RedisHub`'s counters: this process's subscribers, as
    :class:`HubStatistics` counts them, and the traffic with Redis.

    Attributes:
      topics, subscribers, published, delivered, dropped: this process's subscribers,
        as for :class:`HubStatistics`; ``published`` counts the messages handed to them,
        this process's own and those from Redis.
      healthy: whether Redis is reachable (see :attr:`RedisHub.healthy`).
      sent: messages this process sent to Redis (counted once Redis took their batch).
      received: messages that came from other processes through Redis, dropped or not.
      dropped_remote: messages from Redis lost because ``block`` subscribers here fell
        ``max_pending`` messages behind (the oldest go).
      dropped_outgoing: messages for Redis lost because it was unreachable while
        ``max_pending`` waited (the oldest go).
      duplicates: messages from Redis skipped because they had come already (a batch
        sent again after its ``PUBLISH`` timed out, which Redis had run after all).
      repaired: relayed messages this process had missed (its subscriber connection was
        down) and read back from their relay, delivered in order.
      unrepaired: relayed messages missed and no longer kept (or unreadable) when asked.
    """

    healthy: bool
    sent: int
    received: int
    dropped_remote: int
    dropped_outgoing: int
    duplicates: int = 0
    repaired: int = 0
    unrepaired: int = 0


class RedisHub(Running, Hub[bytes]):
    """Topics shared through Redis; see the module docstring.

    Use it as an async context manager (``async with RedisHub(url) as hub:``), which
    runs its tasks; ``subscribe`` and the publishing methods need it running.

    Args:
      url: where Redis is: ``redis://HOST:PORT/DB`` or ``unix://PATH``.
      prefix: put before every topic to make its channel name.
      max_pending: messages held for Redis while it is unreachable, and from Redis for
        full subscribers, each; past it the oldest are dropped (and counted).
      retry_interval: seconds between two attempts to reach Redis.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "triosock:",
        max_pending: int = DEFAULT_MAX_PENDING,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1 message, not {max_pending}")
        self.url = url
        self.prefix = prefix
        self.max_pending = max_pending
        self.retry_interval = retry_interval
        #: This hub's id in every message it sends.
        self.origin = os.urandom(8).hex().encode("ascii")
        self._local: InProcessHub[bytes] = InProcessHub()
        # channel, numbered message, and the relay of a relayed one
        self._outgoing: deque[tuple[bytes, bytes, Relay | None]] = deque()
        self._numbers = itertools.count(1)  # this hub's message sequence
        self._heard: dict[bytes, int] = {}  # origin -> the last number it sent here
        self._outgoing_lot = trio.lowlevel.ParkingLot()
        # waiting for full subscribers, or behind a gap being repaired: topic, message;
        # a gap is (topic, None, relay, after, before), delivered by the deliverer
        self._incoming: deque[tuple[str, bytes | None, Relay | None, int, int]] = deque()
        self._ids: dict[str, int] = {}  # topic -> the last relayed id heard
        self._incoming_lot = trio.lowlevel.ParkingLot()
        self._channels: dict[str, int] = {}  # topic -> local subscriptions
        self._pubsub: Any = None  # coredis's PubSub while connected
        self._healthy = False
        self._listeners: list[HealthListener] = []
        self._nursery: trio.Nursery | None = None
        self._connected = trio.Event()  # set once: the first connection was made
        self._reading = trio.CancelScope()  # around the subscriber's reads; cancelled to stop
        self._stopping = False
        # The figures of statistics(); see RedisHubStatistics.
        self._sent = 0
        self._received = 0
        self._dropped_remote = 0
        self._dropped_outgoing = 0
        self._duplicates = 0
        self._repaired = 0
        self._unrepaired = 0
        #: What reads back the relayed messages this process missed (the last relay
        #: given to :meth:`relay_nowait`, or set by its owner, such as the chat's store).
        self.relay: Relay | None = None

    # -- running ---------------------------------------------------------------------

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            subscriber_done = trio.Event()

            async def subscriber() -> None:
                try:
                    await self._subscriber()
                finally:
                    subscriber_done.set()

            nursery.start_soon(subscriber)
            nursery.start_soon(self._publisher)
            nursery.start_soon(self._deliverer)
            try:
                yield
            finally:
                self._local.close()
                # Leave coredis's pub/sub block normally: cancelled, it unsubscribes on a
                # connection it has closed already, and raises.
                self._stopping = True
                self._reading.cancel()
                with trio.move_on_after(COMMAND_TIMEOUT) as waited:
                    waited.shield = True
                    await subscriber_done.wait()
                nursery.cancel_scope.cancel()

    @property
    def healthy(self) -> bool:
        """True while Redis is reachable (the subscriber connection is up)."""
        return self._healthy

    def add_health_listener(self, listener: HealthListener) -> None:
        """Call ``listener(healthy, detail)`` on each change of :attr:`healthy`."""
        self._listeners.append(listener)

    def _set_health(self, healthy: bool, detail: str) -> None:
        if healthy == self._healthy:
            return
        self._healthy = healthy
        if healthy:
            self._outgoing_lot.unpark_all()  # relayed messages may go now
            LOGGER.info("redis at %s: connected (%s)", self.url, detail)
        else:
            LOGGER.warning("redis at %s: unreachable (%s); retrying", self.url, detail)
        for listener in list(self._listeners):
            listener(healthy, detail)

    async def wait_connected(self) -> None:
        """Return once the hub has reached Redis for the first time."""
        await self._connected.wait()

    # -- the Hub interface ------------------------------------------------------------

    def subscribe(
        self, topic: str, *, buffer: int = DEFAULT_BUFFER, policy: Policy = "drop_oldest"
    ) -> AbstractAsyncContextManager[Subscription[bytes]]:
        return self._subscribing(topic, buffer, policy)

    @asynccontextmanager
    async def _subscribing(
        self, topic: str, buffer: int, policy: Policy
    ) -> AsyncIterator[Subscription[bytes]]:
        if self._nursery is None:
            raise RuntimeError("the RedisHub is not running: use `async with hub:`")
        local = self._local.subscribe(topic, buffer=buffer, policy=policy)
        count = self._channels.get(topic, 0)
        self._channels[topic] = count + 1
        if not count:
            self._ids.pop(topic, None)  # what came before is not ours to repair
        try:
            if count == 0:
                await self._redis_subscribe(topic)
            async with local as subscription:
                yield subscription
        finally:
            self._channels[topic] -= 1
            if not self._channels[topic]:
                del self._channels[topic]
                self._ids.pop(topic, None)  # nobody here to repair it for
                if self._pubsub is not None and self._nursery is not None:
                    self._nursery.start_soon(self._redis_unsubscribe, topic)

    async def _redis_unsubscribe(self, topic: str) -> None:
        # coredis writes the command before its first await, so the wire keeps the order
        # of calls: a subscribe of the same topic made after this check goes out after.
        pubsub = self._pubsub
        if pubsub is None or topic in self._channels:
            await trio.lowlevel.checkpoint()
            return
        # On failure, a reconnection subscribes only what is still needed.
        with trio.move_on_after(COMMAND_TIMEOUT), suppress(*REDIS_ERRORS):
            await pubsub.unsubscribe(self._channel(topic))

    async def _redis_subscribe(self, topic: str) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            await trio.lowlevel.checkpoint()
            return  # degraded: the reconnection subscribes it
        # On failure, the subscriber task notices the lost connection and resubscribes.
        with trio.move_on_after(COMMAND_TIMEOUT), suppress(*REDIS_ERRORS):
            await pubsub.subscribe(self._channel(topic))

    def publish_nowait(self, topic: str, message: bytes) -> int:
        count = self._local.publish_nowait(topic, message)  # WouldBlock: nothing delivered
        self._send(topic, message)
        return count

    async def publish(self, topic: str, message: bytes) -> int:
        count = await self._local.publish(topic, message)
        self._send(topic, message)
        return count

    def relay_nowait(self, topic: str, message: bytes, relay: Relay) -> None:
        """Publish ``message`` through Redis only, by ``relay``'s commands, which give it
        an id there; it reaches this process's subscribers as every other's do, from
        Redis, in Redis's order (see the module docstring). Never blocks: it waits in
        the queue for Redis (``max_pending``) like any message while Redis is away.
        Not a checkpoint.
        """
        self.relay = relay
        self._send(topic, message, relay)

    def statistics(self) -> RedisHubStatistics:
        """A snapshot of this process's hub and its traffic with Redis."""
        local = self._local.statistics()
        return RedisHubStatistics(
            topics=local.topics,
            subscribers=local.subscribers,
            published=local.published,
            delivered=local.delivered,
            dropped=local.dropped,
            healthy=self._healthy,
            sent=self._sent,
            received=self._received,
            dropped_remote=self._dropped_remote,
            dropped_outgoing=self._dropped_outgoing,
            duplicates=self._duplicates,
            repaired=self._repaired,
            unrepaired=self._unrepaired,
        )

    def topics(self) -> frozenset[str]:
        return self._local.topics()

    def subscriber_count(self, topic: str) -> int:
        return self._local.subscriber_count(topic)

    async def aclose(self) -> None:
        self._local.close()
        await trio.lowlevel.checkpoint()

    # -- to Redis ---------------------------------------------------------------------

    def _channel(self, topic: str) -> bytes:
        return (self.prefix + topic).encode("utf-8")

    def _send(self, topic: str, message: bytes, relay: Relay | None = None) -> None:
        outgoing = self._outgoing
        if len(outgoing) >= self.max_pending:
            outgoing.popleft()
            self._dropped_outgoing += 1
            if self._dropped_outgoing in (1, 10, 100) or not self._dropped_outgoing % 1000:
                LOGGER.warning(
                    "%d messages for redis dropped: it is unreachable and %d wait",
                    self._dropped_outgoing,
                    self.max_pending,
                )
        number = next(self._numbers).to_bytes(SEQ, "big")
        outgoing.append((self._channel(topic), number + message, relay))
        if len(outgoing) == 1:
            self._outgoing_lot.unpark_all()

    async def _publisher(self) -> None:
        """Send the outgoing queue in order, in batches; on failure put the batch back and
        reconnect."""
        while True:
            try:
                async with redis_client(self.url) as client:
                    await self._publish_batches(client)
            except BaseException as exc:
                if not is_redis_failure(exc):
                    raise
                LOGGER.debug("publishing to redis failed: %r", exc)
            await trio.sleep(self.retry_interval)

    async def _publish_batches(self, client: coredis.Redis[bytes]) -> None:
        outgoing = self._outgoing
        while True:
            # Relayed messages reach this process's own subscribers from Redis too:
            # they go once this process is subscribed again (after a lost connection).
            while not outgoing or (self.relay is not None and not self._healthy):
                await self._outgoing_lot.park()
            batch = [outgoing.popleft() for _ in range(min(len(outgoing), _BATCH))]
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for channel, data, relay in self._pack(batch):
                        if relay is None:
                            pipe.publish(channel, data)
                        else:
                            topic = channel.decode("utf-8", "replace").removeprefix(self.prefix)
                            relay.queue(pipe, channel, topic, self.origin + RELAYED, data)
            except BaseException:
                # In order, before what was queued meanwhile; the oldest go past the bound.
                outgoing.extendleft(reversed(batch))
                while len(outgoing) > self.max_pending:
                    outgoing.popleft()
                    self._dropped_outgoing += 1
                raise
            self._sent += len(batch)

    def _pack(
        self, batch: Sequence[tuple[bytes, bytes, Relay | None]]
    ) -> list[tuple[bytes, Any, Relay | None]]:
        """One ``PUBLISH`` per run of messages for one channel: order is kept, also
        across channels (Redis delivers one connection's publishes in order). A run of
        relayed messages goes to its relay, as a list."""
        origin = self.origin
        packed: list[tuple[bytes, Any, Relay | None]] = []
        start = 0
        while start < len(batch):
            channel, _, relay = batch[start]
            end = start + 1
            while end < len(batch) and batch[end][0] == channel and batch[end][2] is relay:
                end += 1
            if relay is not None:
                packed.append((channel, [item for _, item, _ in batch[start:end]], relay))
            elif end - start == 1:
                packed.append((channel, origin + ONE + batch[start][1], None))
            else:
                parts = [origin, PACKED]
                for _, message, _ in batch[start:end]:
                    parts += (len(message).to_bytes(LENGTH, "big"), message)
                packed.append((channel, b"".join(parts), None))
            start = end
        return packed

    # -- from Redis -------------------------------------------------------------------

    async def _subscriber(self) -> None:
        """Keep one pub/sub connection with every needed channel; read it."""
        first = True
        while not self._stopping:
            try:
                async with (
                    redis_client(self.url) as client,
                    client.pubsub(
                        ignore_subscribe_messages=True, retry_policy=NoRetryPolicy()
                    ) as pubsub,
                ):
                    if self._channels:
                        await pubsub.subscribe(*(self._channel(t) for t in self._channels))
                    self._pubsub = pubsub
                    self._set_health(True, "subscribed" if first else "reconnected")
                    first = False
                    self._connected.set()
                    self._reading = trio.CancelScope()
                    if self._stopped():  # while we connected
                        return
                    with self._reading:
                        await self._read(pubsub)
                    return  # stopping
            except BaseException as exc:
                if not is_redis_failure(exc):
                    raise
                self._pubsub = None
                self._set_health(False, describe_failure(exc))
            finally:
                self._pubsub = None
            await trio.sleep(self.retry_interval)

    def _stopped(self) -> bool:
        return self._stopping

    async def _read(self, pubsub: Any) -> None:
        while True:  # (its async iterator stops while nothing is subscribed)
            message = await pubsub.get_message()
            if message is None or message["type"] != "message":
                continue
            data = message["data"]
            if isinstance(data, bytes):
                self._arrived(as_bytes(message["channel"]), data)

    def _arrived(self, channel: bytes, data: bytes) -> None:
        size = len(self.origin)  # every hub's origin id has the same length
        origin, kind = data[:size], data[size : size + 1]
        if origin == self.origin and kind != RELAYED:
            return  # our own, delivered locally already
        topic = channel.decode("utf-8", "replace").removeprefix(self.prefix)
        if kind == RELAYED:
            for item in unpacked(data, size + 1):
                if self._fresh(origin, item):
                    self._relayed(topic, int.from_bytes(item[SEQ : 2 * SEQ], "big"), item)
        elif kind == ONE:
            self._numbered(origin, topic, data[size + 1 :])
        elif kind == PACKED:
            for item in unpacked(data, size + 1):
                self._numbered(origin, topic, item)
        else:
            LOGGER.warning("skipped a message on %r that no triosock hub sent", channel)

    def _numbered(self, origin: bytes, topic: str, item: bytes) -> None:
        """Hand on a message (after its number) unless its origin sent that number here
        already."""
        if self._fresh(origin, item):
            self._received_one(topic, item[SEQ:])

    def _fresh(self, origin: bytes, item: bytes) -> bool:
        """Whether ``item``'s number is new from its origin: one origin's messages come
        in order, on one connection or, after a timeout, a second one whose batch may
        repeat the first's."""
        number = int.from_bytes(item[:SEQ], "big")
        heard = self._heard
        if number <= heard.get(origin, 0):
            self._duplicates += 1
            return False
        if origin not in heard and len(heard) >= _MAX_ORIGINS:
            del heard[next(iter(heard))]
        heard[origin] = number
        return True

    def _relayed(self, topic: str, line_id: int, item: bytes) -> None:
        """A relayed message arrived: after the ones its topic missed, if any."""
        if topic not in self._channels:
            return  # nobody here any more (it was in flight)
        if not line_id:  # (no id: a message that only keeps its place)
            self._received_one(topic, item[2 * SEQ :])
            return
        last = self._ids.get(topic, 0)
        self._ids[topic] = line_id
        relay = self.relay
        if 0 < last < line_id - 1 and relay is not None:  # a stretch this process missed
            self._queue_incoming((topic, None, relay, last, line_id))
        # (line_id <= last: the ids began again, a Redis that lost its keys: no repair)
        self._received_one(topic, item[2 * SEQ :])

    def _received_one(self, topic: str, message: bytes) -> None:
        self._received += 1
        incoming = self._incoming
        if not incoming:
            try:
                self._local.publish_nowait(topic, message)
                return
            except trio.WouldBlock:
                pass  # a "block" subscriber is full: queue, in order
        self._queue_incoming((topic, message, None, 0, 0))

    def _queue_incoming(self, entry: tuple[str, bytes | None, Relay | None, int, int]) -> None:
        incoming = self._incoming
        if len(incoming) >= self.max_pending:
            incoming.popleft()
            self._dropped_remote += 1
            if self._dropped_remote in (1, 10, 100) or not self._dropped_remote % 1000:
                LOGGER.warning(
                    "%d messages from redis dropped: subscribers here fell %d behind",
                    self._dropped_remote,
                    self.max_pending,
                )
        incoming.append(entry)
        if len(incoming) == 1:
            self._incoming_lot.unpark_all()

    async def _deliverer(self) -> None:
        """Deliver what waits for full subscribers, in order, waiting for room only when
        there is none: what fits goes in the same pass (the subscribers' next pass takes
        it as one batch, not a message a pass)."""
        incoming, local = self._incoming, self._local
        while True:
            while not incoming:
                await self._incoming_lot.park()
            entry = incoming[0]
            topic, message, relay, after, before = entry
            try:
                if message is not None:
                    try:
                        local.publish_nowait(topic, message)
                    except trio.WouldBlock:
                        await local.publish(topic, message)
                elif relay is not None:
                    await self._repair(topic, relay, after, before)
            except trio.ClosedResourceError:
                return
            if incoming and incoming[0] is entry:
                incoming.popleft()

    async def _repair(self, topic: str, relay: Relay, after: int, before: int) -> None:
        """Deliver what ``topic`` missed between two ids, read back from its relay."""
        try:
            with trio.fail_after(COMMAND_TIMEOUT):
                found = await relay.missed(topic, after, before)
        except BaseException as exc:
            if not (is_redis_failure(exc) or isinstance(exc, trio.TooSlowError)):
                raise
            LOGGER.warning("could not read back what %r missed: %s", topic, exc)
            found = []
        self._unrepaired += before - after - 1 - len(found)
        for _, message in found:
            await self._local.publish(topic, message)
            self._repaired += 1
