"""The broadcast hub: topics, subscriptions with bounded queues and policies.

``hub.publish_nowait(topic, message)`` puts a message in the queue of every subscriber of
the topic without waiting (it raises :class:`trio.WouldBlock` when a ``"block"``
subscriber is full, and delivers to nobody); ``await hub.publish(topic, message)`` waits
for room. Subscribers take what they are sent from a :class:`Subscription`, a
:class:`trio.abc.ReceiveChannel`; a task serving many subscriptions waits on a
:class:`ReadyQueue` instead of one task per subscription.

:class:`InProcessHub` is the embedded implementation; :class:`RedisHub` shares topics
between processes and machines through Redis (it needs coredis, the ``redis`` extra, and
is imported on first use, as is its :class:`RedisHubStatistics`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._hub import (
    DEFAULT_BUFFER,
    Hub,
    HubStatistics,
    InProcessHub,
    Policy,
    ReadyQueue,
    SlowSubscriberError,
    SubscriberStatistics,
    Subscription,
)

if TYPE_CHECKING:  # imported on first use at run time: see __getattr__ below
    from ._hub._redis import RedisHub as RedisHub
    from ._hub._redis import RedisHubStatistics as RedisHubStatistics

__all__ = [
    "DEFAULT_BUFFER",
    "Hub",
    "HubStatistics",
    "InProcessHub",
    "Policy",
    "ReadyQueue",
    "RedisHub",
    "RedisHubStatistics",
    "SlowSubscriberError",
    "SubscriberStatistics",
    "Subscription",
]


def __getattr__(name: str) -> object:
    """``RedisHub`` and its ``RedisHubStatistics`` on first use: the module needs coredis,
    which costs half a second to import."""
    if name in ("RedisHub", "RedisHubStatistics"):
        from ._hub import _redis

        return getattr(_redis, name)
    raise AttributeError(f"module 'triosock.hub' has no attribute {name!r}")
