"""What a :class:`~triosock._hub._redis.RedisHub` asks of the owner of relayed messages
(the chat's history store in Redis): how they go to Redis, and how missed ones are read
back. See :meth:`RedisHub.relay_nowait <triosock._hub._redis.RedisHub.relay_nowait>`."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Relay"]


class Relay(Protocol):
    """How relayed messages go to Redis and how missed ones are read back: see
    :meth:`RedisHub.relay_nowait`."""

    def queue(
        self, pipe: Any, channel: bytes, topic: str, prefix: bytes, items: list[bytes]
    ) -> None:
        """Add to ``pipe`` (a coredis pipeline) what publishes ``items`` on ``channel``.

        Each item is a message after its number in the hub's sequence (8 bytes,
        big-endian). The commands must, atomically, give each message its id (increasing
        by one per topic, from 1) and ``PUBLISH`` on ``channel``: ``prefix`` (the hub's
        origin and ``b"*"``), then for each message its length (4 bytes), its
        number, its id (8 bytes each) and the message; and never publish a number of this
        origin twice (a batch sent again after a timeout).
        """

    async def missed(self, topic: str, after: int, before: int) -> list[tuple[int, bytes]]:
        """The messages of ``topic`` with ids between ``after`` and ``before`` (both
        excluded), oldest first, as delivered; those no longer kept are left out.

        Raises:
          What coredis raises when Redis fails: the hub then delivers without them.
        """
