"""The broadcast hub: topics, bounded per-subscriber queues and slow-subscriber policies.

:class:`Hub` is the interface; :class:`InProcessHub` is the embedded implementation, and a
broker-backed hub (Redis pub/sub, ...) is meant to implement the same interface, for
instance by forwarding what it receives from the broker into an :class:`InProcessHub` of its
own, which then does the local fan-out.

How a message travels: :meth:`Hub.publish_nowait` places it in the queue of every subscriber of the
topic, synchronously and without a checkpoint, waking a waiting receiver if there is one.
Each subscriber owns a bounded queue (``buffer`` messages) and picks a :data:`Policy` for
when its queue is full:

``"drop_oldest"`` (the default)
    The oldest queued message is discarded to make room; the subscriber learns how many
    messages it missed from :meth:`Subscription.take_missed`.
``"drop_newest"``
    The new message is not queued for this subscriber; also counted in ``take_missed``.
``"disconnect"``
    The subscriber is removed from the topic. It can still receive what was queued, then
    :meth:`~Subscription.receive` raises :class:`SlowSubscriberError`.
``"block"``
    Lossless backpressure. :meth:`Hub.publish_nowait` is all-or-nothing: if any ``block``
    subscriber of the topic is full it raises :class:`trio.WouldBlock` *before* delivering
    to anyone, and the caller can fall back to ``await hub.publish(topic, message)``,
    which waits until every ``block`` subscriber of the topic has room and then delivers to
    every subscriber at once.

Other subscribers carry on unaffected in every case.

What holds for every hub, and what only the in-process one guarantees:

* Every hub: per-publisher order within a topic; each subscriber gets a message at most
  once (a broker-backed hub never delivers a process's own publish twice, locally and
  again from the broker); the policies and bounded queues, for the subscribers of the
  process.
* Local-only (:class:`InProcessHub`): ``block`` is all-or-nothing and ``publish``
  waits for room in *every* subscriber's queue; ``publish_nowait`` returns the exact number of
  subscribers that had the message queued; a message published is delivered,
  synchronously.
* What a broker-backed hub promises instead: ``block`` and ``publish`` concern the
  subscribers of this process (remote processes apply their own policies); ``publish_nowait``
  returns the local count; a message is delivered to other processes once the broker has
  it, and what is published while the broker is unreachable follows the implementation's
  documented buffering.
"""

from __future__ import annotations

import abc
import operator
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeAlias, TypeVar, get_args

import trio

from .._errors import TriosockError

T = TypeVar("T")

#: What happens to a subscriber whose queue is full when a message is published.
Policy: TypeAlias = Literal["block", "drop_newest", "drop_oldest", "disconnect"]

_POLICIES: Final[tuple[str, ...]] = get_args(Policy)

#: The default size of a subscriber's queue, in messages.
DEFAULT_BUFFER: Final = 256


class SlowSubscriberError(trio.BrokenResourceError, TriosockError):
    """A ``"disconnect"``-policy subscriber was dropped because its queue was full.

    Raised by :meth:`Subscription.receive` (and the other receive methods) once the messages
    queued before the disconnection have been received.

    Attributes:
      topic: the topic the subscriber was subscribed to.
      buffer: the size of its queue, in messages.
    """

    def __init__(self, topic: str, buffer: int) -> None:
        super().__init__(
            f"slow subscriber of topic {topic!r} was disconnected: "
            f"its buffer of {buffer} message(s) was full"
        )
        self.topic = topic
        self.buffer = buffer

    def __reduce__(self) -> tuple[type[SlowSubscriberError], tuple[str, int]]:
        return (type(self), (self.topic, self.buffer))


@dataclass(frozen=True, slots=True)
class HubStatistics:
    """A snapshot of a hub's counters.

    Attributes:
      topics: topics that currently have at least one subscriber.
      subscribers: current subscribers, over all topics.
      published: successful ``publish_nowait``/``publish`` calls, including those to a topic
        without subscribers (a call that raised counts nothing).
      delivered: messages placed in a subscriber's queue, summed over subscribers.
      dropped: messages a subscriber lost to its policy: the new message for
        ``"drop_newest"`` and ``"disconnect"``, the evicted one for ``"drop_oldest"``.
    """

    topics: int
    subscribers: int
    published: int
    delivered: int
    dropped: int


@dataclass(frozen=True, slots=True)
class SubscriberStatistics:
    """A snapshot of one subscription's counters.

    Attributes:
      topic, policy, buffer: as given to :meth:`Hub.subscribe`.
      queued: messages waiting to be received.
      delivered: messages placed in this subscriber's queue.
      dropped: messages this subscriber lost to its policy (see :class:`HubStatistics`).
      missed_unreported: dropped messages not yet reported by
        :meth:`Subscription.take_missed`.
      disconnected: whether the ``"disconnect"`` policy removed this subscriber.
    """

    topic: str
    policy: Policy
    buffer: int
    queued: int
    delivered: int
    dropped: int
    missed_unreported: int
    disconnected: bool


def check_subscription_args(buffer: int, policy: str) -> int:
    """Validate ``subscribe()`` arguments for a hub implementation; return the buffer size."""
    size = operator.index(buffer)
    if size < 1:
        raise ValueError(f"buffer must be at least 1 message, not {size}")
    if policy not in _POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(_POLICIES)}")
    return size


class Subscription(trio.abc.ReceiveChannel[T]):
    """One subscriber's end of a topic: a :class:`trio.abc.ReceiveChannel` with extras.

    Obtained from ``async with hub.subscribe(topic) as subscription:``; leaving the block
    unsubscribes (and closes it). Several tasks may receive from one subscription at once;
    each message goes to one of them.

    ``receive()`` waits while the queue is empty. Once the subscription has ended, what was
    queued can still be received, and then the receive methods raise
    :class:`trio.EndOfChannel` (the hub was closed, or :meth:`unsubscribe` was called) or
    :class:`SlowSubscriberError` (the ``"disconnect"`` policy removed it). After the
    subscription's own :meth:`aclose` they raise :class:`trio.ClosedResourceError`, and its
    queue is discarded.
    """

    __slots__ = ()

    @property
    @abc.abstractmethod
    def topic(self) -> str:
        """The topic subscribed to."""

    @property
    @abc.abstractmethod
    def policy(self) -> Policy:
        """What happens when this subscriber's queue is full."""

    @property
    @abc.abstractmethod
    def buffer(self) -> int:
        """The size of this subscriber's queue, in messages."""

    @abc.abstractmethod
    def receive_nowait(self) -> T:
        """Take the next queued message, or raise :class:`trio.WouldBlock` if none is queued."""

    @abc.abstractmethod
    def drain_nowait(self, limit: int | None = None) -> list[T]:
        """Take every queued message (at most ``limit``), oldest first; ``[]`` if none is
        queued.

        A writer coalesces with it: drain, write the batch in one go, and ``await receive()``
        only when the drain came back empty. Raises like :meth:`receive_nowait` once the
        subscription has ended and nothing is left. With a ``limit`` the rest stays queued
        for the next call (a writer that shares its time among many takes a slice each).
        """

    @abc.abstractmethod
    def take_missed(self) -> int:
        """Return how many messages this subscriber missed since the last call, and reset it.

        Counts the messages evicted by ``"drop_oldest"`` and refused by ``"drop_newest"``.
        """

    @abc.abstractmethod
    def statistics(self) -> SubscriberStatistics:
        """A snapshot of this subscription's counters."""

    @abc.abstractmethod
    def unsubscribe(self) -> None:
        """Leave the topic now, keeping what is queued: it can still be received, and then
        the receive methods raise :class:`trio.EndOfChannel`.

        For a subscriber that must finish what it was sent before it goes (a chat session
        ending), where closing would discard it. Idempotent; does nothing once the
        subscription has ended or was closed.
        """

    @abc.abstractmethod
    async def wait_ended(self) -> None:
        """Return once the subscription has ended: hub closed, disconnected, or closed.

        A writer blocked on a slow socket cannot see its subscription being disconnected;
        a task waiting here can, and can cancel the writer.
        """


class Hub(trio.abc.AsyncResource, Generic[T]):
    """The broadcast hub interface: publish messages of type ``T`` to named topics.

    A hub is a :class:`trio.abc.AsyncResource`: ``async with hub:`` closes it on exit
    (see :meth:`aclose`).
    """

    __slots__ = ()

    @abc.abstractmethod
    def subscribe(
        self, topic: str, *, buffer: int = DEFAULT_BUFFER, policy: Policy = "drop_oldest"
    ) -> AbstractAsyncContextManager[Subscription[T]]:
        """Subscribe to ``topic`` for the duration of an ``async with`` block.

        Args:
          topic: the topic (room) name.
          buffer: how many messages the subscriber's queue holds, at least 1.
          policy: what happens when the queue is full; see :data:`Policy`.

        Raises:
          ValueError: for a buffer below 1 or an unknown policy (when called).
          trio.ClosedResourceError: if the hub is closed (when entered).
        """

    @abc.abstractmethod
    def publish_nowait(self, topic: str, message: T) -> int:
        """Deliver ``message`` to every subscriber of ``topic`` without waiting.

        Returns how many subscribers had it queued (0 for a topic without subscribers).

        Raises:
          trio.WouldBlock: a ``"block"`` subscriber of the topic is full; nothing was
            delivered to anyone. ``await publish(topic, message)`` waits for room.
          trio.ClosedResourceError: the hub is closed.
        """

    @abc.abstractmethod
    async def publish(self, topic: str, message: T) -> int:
        """Wait until every ``"block"`` subscriber of ``topic`` has room, then deliver.

        The message goes to every subscriber at once, after the wait; if the call is
        cancelled, nobody got it. Subscribers that join or leave while it waits are taken
        into account. Returns like :meth:`publish_nowait`.

        Raises:
          trio.ClosedResourceError: the hub is closed, or was closed while waiting.
        """

    @abc.abstractmethod
    def statistics(self) -> HubStatistics:
        """A snapshot of the hub's counters."""

    @abc.abstractmethod
    def topics(self) -> frozenset[str]:
        """The topics that currently have subscribers."""

    @abc.abstractmethod
    def subscriber_count(self, topic: str) -> int:
        """How many subscribers ``topic`` currently has (0 for an unknown topic)."""

    def add_health_listener(self, listener: Callable[[bool, str], object]) -> None:
        """Call ``listener(healthy, detail)`` whenever the hub loses or regains what it
        needs to reach other processes (a broker). The in-process hub never does."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the hub: end every subscription once its queue is drained.

        Receivers get what was queued, then :class:`trio.EndOfChannel`. Publishing and
        subscribing afterwards raise :class:`trio.ClosedResourceError`. Idempotent.
        """
