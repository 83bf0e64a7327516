"""The Redis hub's wire format: what a ``PUBLISH`` of a :class:`~._redis.RedisHub`
carries after its origin id (16 hex digits).

* ``|`` then one message; ``#`` then several, each after its length (4 bytes,
  big-endian). Each message begins with its number in its origin's sequence (8 bytes,
  big-endian).
* ``*``: relayed messages (for every process, the origin's own too), packed as ``#``;
  each begins with its number, then its id in its topic (8 bytes each, big-endian).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

__all__ = ["LENGTH", "ONE", "PACKED", "RELAYED", "SEQ", "as_bytes", "unpacked"]

#: After the origin id: one message follows, or several, each after its length; each
#: message begins with its number in its origin's sequence (SEQ bytes, big-endian).
ONE: Final = b"|"
PACKED: Final = b"#"
#: Packed as PACKED, relayed (for every process, its own too): each message begins with
#: its number (SEQ bytes), then its id (SEQ bytes), both big-endian.
RELAYED: Final = b"*"
LENGTH: Final = 4  # bytes, big-endian
SEQ: Final = 8


def unpacked(data: bytes, at: int) -> Iterator[bytes]:
    """The messages of a packed payload from ``at`` on, each after its length."""
    view = memoryview(data)
    while at + LENGTH <= len(data):
        length = int.from_bytes(view[at : at + LENGTH], "big")
        at += LENGTH
        yield bytes(view[at : at + length])
        at += length


def as_bytes(value: str | bytes) -> bytes:
    """``value`` as bytes (coredis gives a channel name as text or bytes)."""
    return value.encode("utf-8") if isinstance(value, str) else value
