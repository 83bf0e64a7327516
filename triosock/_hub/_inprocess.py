"""The in-process hub: :class:`InProcessHub` fans each published message out to the queues
of the topic's subscribers within one process, with no checkpoint per subscriber. A task
that serves many subscriptions (a fan-out writer) need not park one task per subscription:
a :class:`ReadyQueue` watches in-process subscriptions and hands it, in one wakeup, the list
of those that got a message (or ended) since it last asked, like ``epoll`` for
subscriptions.
"""

from __future__ import annotations

from collections import deque
from contextlib import AbstractAsyncContextManager
from typing import Final, Generic

import trio
from trio.lowlevel import enable_ki_protection

from ._abc import (
    DEFAULT_BUFFER,
    Hub,
    HubStatistics,
    Policy,
    SlowSubscriberError,
    SubscriberStatistics,
    Subscription,
    T,
    check_subscription_args,
)


class _Topic(Generic[T]):
    __slots__ = ("blockers", "subscribers")

    def __init__(self) -> None:
        # dicts as insertion-ordered sets with O(1) removal
        self.subscribers: dict[_LocalSubscription[T], None] = {}
        self.blockers: dict[_LocalSubscription[T], None] = {}


_HUB_CLOSED: Final = 1
_DISCONNECTED: Final = 2
_UNSUBSCRIBED: Final = 3


class _CountedLot:
    """A ParkingLot whose parked tasks are counted in a plain int.

    Testing ``waiting`` costs nothing on the hub's hot path (a ParkingLot's truth test is a
    Python call per delivery). Whoever unparks counts the woken tasks off at once, so a
    burst of publishes does not keep waking an empty lot; a task cancelled while still
    parked counts itself off.
    """

    __slots__ = ("_lot", "waiting")

    def __init__(self) -> None:
        self._lot = trio.lowlevel.ParkingLot()
        self.waiting = 0

    async def park(self) -> None:
        self.waiting += 1
        woken = False
        try:
            await self._lot.park()
            woken = True
        finally:
            if not woken:  # cancelled while parked: nobody counted this task off
                self.waiting -= 1

    def unpark(self) -> None:
        if self._lot.unpark():
            self.waiting -= 1

    def unpark_all(self) -> None:
        self.waiting = 0
        self._lot.unpark_all()


class _LocalSubscription(Subscription[T]):
    __slots__ = (
        "_buffer",
        "_closed",
        "_delivered",
        "_dropped",
        "_end",
        "_end_event",
        "_hub",
        "_missed",
        "_policy",
        "_queue",
        "_receivers",
        "_room",
        "_topic",
        "_watcher",
    )

    def __init__(self, hub: InProcessHub[T], topic: str, buffer: int, policy: Policy) -> None:
        self._hub: InProcessHub[T] | None = hub
        self._topic = topic
        self._buffer = buffer
        self._policy: Policy = policy
        self._queue: deque[T] = deque()
        # tasks waiting in receive() for a message
        self._receivers = _CountedLot()
        # tasks waiting in publish() for room in this ("block") subscriber's queue
        self._room = _CountedLot()
        self._delivered = 0
        self._dropped = 0
        self._missed = 0
        self._end = 0  # 0, _HUB_CLOSED, _DISCONNECTED or _UNSUBSCRIBED
        self._closed = False
        self._end_event = trio.Event()
        self._watcher: ReadyQueue[T] | None = None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} topic={self._topic!r} policy={self._policy!r} "
            f"queued={len(self._queue)}/{self._buffer}>"
        )

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def buffer(self) -> int:
        return self._buffer

    def _ended(self) -> BaseException:
        if self._end == _DISCONNECTED:
            return SlowSubscriberError(self._topic, self._buffer)
        return trio.EndOfChannel()

    @enable_ki_protection
    def receive_nowait(self) -> T:
        if self._closed:
            raise trio.ClosedResourceError("this subscription was closed")
        queue = self._queue
        if queue:
            message = queue.popleft()
            if self._room.waiting:
                self._room.unpark_all()
            if self._end and not queue:
                self._tell_watcher()  # the end is what there is to receive now
            return message
        if self._end:
            raise self._ended()
        raise trio.WouldBlock

    @enable_ki_protection
    async def receive(self) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            message = self.receive_nowait()
        except trio.WouldBlock:
            pass
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
            await trio.lowlevel.cancel_shielded_checkpoint()
            raise
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return message
        # Parked only while the queue is empty; every message queued wakes one receiver,
        # and ending or closing wakes them all. Another receiver may take the message
        # first, hence the loop.
        while True:
            await self._receivers.park()
            try:
                return self.receive_nowait()
            except trio.WouldBlock:
                pass

    @enable_ki_protection
    def drain_nowait(self, limit: int | None = None) -> list[T]:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1 message, not {limit}")
        if self._closed:
            raise trio.ClosedResourceError("this subscription was closed")
        queue = self._queue
        if queue:
            if limit is None or len(queue) <= limit:
                messages = list(queue)
                queue.clear()
            else:
                messages = [queue.popleft() for _ in range(limit)]
            if self._room.waiting:
                self._room.unpark_all()
            if self._end and not queue:
                self._tell_watcher()  # the end is what there is to receive now
            return messages
        if self._end:
            raise self._ended()
        return []

    def _tell_watcher(self) -> None:
        # Report this subscription to its ReadyQueue, if any. Called at the end, and again
        # once the messages queued before the end are taken.
        if self._watcher is not None:
            self._watcher._notify(self)

    def take_missed(self) -> int:
        missed = self._missed
        self._missed = 0
        return missed

    def statistics(self) -> SubscriberStatistics:
        return SubscriberStatistics(
            topic=self._topic,
            policy=self._policy,
            buffer=self._buffer,
            queued=len(self._queue),
            delivered=self._delivered,
            dropped=self._dropped,
            missed_unreported=self._missed,
            disconnected=self._end == _DISCONNECTED,
        )

    @enable_ki_protection
    def close(self) -> None:
        """Unsubscribe and close, synchronously; what was queued is discarded. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._hub is not None:
            self._hub._detach(self)
        if self._watcher is not None:
            self._watcher.unwatch(self)
        self._queue.clear()
        self._wake_all()
        self._end_event.set()

    @enable_ki_protection
    def unsubscribe(self) -> None:
        if self._closed or self._end:
            return
        if self._hub is not None:
            self._hub._detach(self)
        self._finish(_UNSUBSCRIBED)

    async def wait_ended(self) -> None:
        await self._end_event.wait()

    def _wake_all(self) -> None:
        self._receivers.unpark_all()
        self._room.unpark_all()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def _finish(self, end: int) -> None:
        # The hub has already removed us from the topic.
        self._hub = None
        if not self._end:
            self._end = end
        self._wake_all()
        self._end_event.set()
        self._tell_watcher()


class _Subscribing(Generic[T]):
    """The async context manager returned by :meth:`InProcessHub.subscribe`."""

    __slots__ = ("_buffer", "_hub", "_policy", "_subscription", "_topic")

    def __init__(self, hub: InProcessHub[T], topic: str, buffer: int, policy: Policy) -> None:
        self._hub = hub
        self._topic = topic
        self._buffer = buffer
        self._policy: Policy = policy
        self._subscription: _LocalSubscription[T] | None = None

    async def __aenter__(self) -> Subscription[T]:
        if self._subscription is not None:
            raise RuntimeError("a subscribe() context manager can be entered only once")
        self._subscription = self._hub._attach(self._topic, self._buffer, self._policy)
        return self._subscription

    async def __aexit__(self, *exc_info: object) -> None:
        if self._subscription is not None:
            self._subscription.close()


class InProcessHub(Hub[T]):
    """The embedded hub: fan-out within one process, one Trio run.

    ``publish_nowait`` costs O(subscribers of the topic) plain appends, with no checkpoint and no
    await per subscriber. Use it from Trio tasks of a single run (it is not thread-safe).
    """

    __slots__ = ("_closed", "_delivered", "_dropped", "_published", "_subscribers", "_topics")

    def __init__(self) -> None:
        self._topics: dict[str, _Topic[T]] = {}
        self._subscribers = 0
        self._published = 0
        self._delivered = 0
        self._dropped = 0
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<{type(self).__name__} {state} topics={len(self._topics)} "
            f"subscribers={self._subscribers}>"
        )

    # -- subscribing

    def subscribe(
        self, topic: str, *, buffer: int = DEFAULT_BUFFER, policy: Policy = "drop_oldest"
    ) -> AbstractAsyncContextManager[Subscription[T]]:
        size = check_subscription_args(buffer, policy)
        return _Subscribing(self, topic, size, policy)

    @enable_ki_protection
    def _attach(self, topic: str, buffer: int, policy: Policy) -> _LocalSubscription[T]:
        if self._closed:
            raise trio.ClosedResourceError("the hub is closed")
        subscription = _LocalSubscription(self, topic, buffer, policy)
        record = self._topics.get(topic)
        if record is None:
            record = self._topics[topic] = _Topic()
        record.subscribers[subscription] = None
        if policy == "block":
            record.blockers[subscription] = None
        self._subscribers += 1
        return subscription

    def _detach(self, subscription: _LocalSubscription[T]) -> None:
        subscription._hub = None
        record = self._topics[subscription._topic]
        del record.subscribers[subscription]
        record.blockers.pop(subscription, None)
        if not record.subscribers:
            del self._topics[subscription._topic]
        self._subscribers -= 1

    # -- publishing

    @enable_ki_protection
    def publish_nowait(self, topic: str, message: T) -> int:
        if self._closed:
            raise trio.ClosedResourceError("the hub is closed")
        record = self._topics.get(topic)
        if record is None:
            self._published += 1
            return 0
        if record.blockers and _first_full(record) is not None:
            raise trio.WouldBlock(f"a 'block' subscriber of topic {topic!r} is full")
        return self._deliver(record, message)

    @enable_ki_protection
    async def publish(self, topic: str, message: T) -> int:
        await trio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the hub is closed")
            record = self._topics.get(topic)
            if record is None:
                self._published += 1
                count = 0
                break
            full = _first_full(record)
            if full is None:
                count = self._deliver(record, message)
                break
            # Woken when `full` gets room, is closed or ended; then look at everyone again.
            await full._room.park()
            waited = True
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return count

    def _deliver(self, record: _Topic[T], message: T) -> int:
        delivered = 0
        dropped = 0
        slow: list[_LocalSubscription[T]] = []
        for subscription in record.subscribers:
            queue = subscription._queue
            if len(queue) < subscription._buffer:
                if not queue and subscription._watcher is not None:
                    subscription._watcher._notify(subscription)
                queue.append(message)
                subscription._delivered += 1
                delivered += 1
                if subscription._receivers.waiting:
                    subscription._receivers.unpark()
                continue
            # Full. (A full queue has no parked receivers: they park only when it is empty.)
            policy = subscription._policy
            subscription._dropped += 1
            dropped += 1
            if policy == "drop_oldest":
                queue.popleft()
                queue.append(message)
                subscription._delivered += 1
                subscription._missed += 1
                delivered += 1
            elif policy == "drop_newest":
                subscription._missed += 1
            elif policy == "disconnect":
                slow.append(subscription)
            else:  # pragma: no cover - "block" subscribers were checked for room
                raise AssertionError(f"full {policy!r} subscriber")
        for subscription in slow:
            self._detach(subscription)
            subscription._finish(_DISCONNECTED)
        self._published += 1
        self._delivered += delivered
        self._dropped += dropped
        return delivered

    # -- introspection

    def statistics(self) -> HubStatistics:
        return HubStatistics(
            topics=len(self._topics),
            subscribers=self._subscribers,
            published=self._published,
            delivered=self._delivered,
            dropped=self._dropped,
        )

    def topics(self) -> frozenset[str]:
        return frozenset(self._topics)

    def subscriber_count(self, topic: str) -> int:
        record = self._topics.get(topic)
        return 0 if record is None else len(record.subscribers)

    # -- closing

    @enable_ki_protection
    def close(self) -> None:
        """Close the hub synchronously; see :meth:`Hub.aclose`."""
        if self._closed:
            return
        self._closed = True
        topics, self._topics = self._topics, {}
        self._subscribers = 0
        for record in topics.values():
            for subscription in record.subscribers:
                subscription._finish(_HUB_CLOSED)

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


class ReadyQueue(Generic[T]):
    """Which of many subscriptions have something to take: one wakeup for all of them.

    A task serving many subscriptions ``watch``-es them and loops on :meth:`wait`, which
    returns the subscriptions that got a message while their queue was empty, or whose end
    became the next thing to receive, since the previous call: a publish to a thousand
    watched subscribers costs the waiting task one wakeup, not a thousand. A subscription
    is reported again only after its queue has been emptied (by anyone) and refilled; one
    that was reported and not drained stays quiet, so the caller must drain what it is
    given, or leave it to someone who will.

    Only in-process subscriptions (those of :class:`InProcessHub`, which a broker-backed
    hub reuses for its local fan-out) can be watched; see :meth:`supports`. A subscription
    has at most one watcher, and stops being watched when closed.
    """

    __slots__ = ("_lot", "_ready")

    def __init__(self) -> None:
        self._ready: dict[_LocalSubscription[T], None] = {}
        self._lot = trio.lowlevel.ParkingLot()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ready={len(self._ready)}>"

    @staticmethod
    def supports(subscription: Subscription[T]) -> bool:
        """Whether ``subscription`` can be watched."""
        return isinstance(subscription, _LocalSubscription)

    def watch(self, subscription: Subscription[T]) -> None:
        """Report ``subscription`` from now on (at once, if it already holds something).

        Raises:
          TypeError: it is not an in-process subscription (see :meth:`supports`).
          RuntimeError: another :class:`ReadyQueue` watches it already.
        """
        if not isinstance(subscription, _LocalSubscription):
            raise TypeError(f"cannot watch {subscription!r}: not an in-process subscription")
        if subscription._watcher is not None and subscription._watcher is not self:
            raise RuntimeError(f"{subscription!r} is watched by another ReadyQueue")
        subscription._watcher = self
        if subscription._queue or subscription._end:
            self._notify(subscription)

    def unwatch(self, subscription: Subscription[T]) -> None:
        """Stop reporting ``subscription``. Idempotent."""
        if isinstance(subscription, _LocalSubscription) and subscription._watcher is self:
            subscription._watcher = None
            self._ready.pop(subscription, None)

    def _notify(self, subscription: _LocalSubscription[T]) -> None:
        self._ready[subscription] = None
        if self._lot:
            self._lot.unpark()

    def ready_nowait(self) -> list[Subscription[T]]:
        """The subscriptions reported since the last call, oldest first; maybe none."""
        ready: list[Subscription[T]] = list(self._ready)
        self._ready.clear()
        return ready

    @enable_ki_protection
    async def wait(self) -> list[Subscription[T]]:
        """Wait until some watched subscription is ready and return them all (not empty)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._ready:
            await trio.lowlevel.cancel_shielded_checkpoint()
        while not self._ready:
            await self._lot.park()
        return self.ready_nowait()


def _first_full(record: _Topic[T]) -> _LocalSubscription[T] | None:
    for subscription in record.blockers:
        if len(subscription._queue) >= subscription._buffer:
            return subscription
    return None
