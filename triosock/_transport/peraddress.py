"""The per-address limit every listener shares: the most connections (or UDP peers) one
source may hold at once, so that one host cannot take a server's every slot.

A *source* is an IPv4 address, or the /64 of an IPv6 one (:func:`source_key`), as Ergo
(an IRC server) counts by default, and limits to 16 by default; a host is often given a
whole /64. The addresses in ``exempt`` have no limit: by default this machine's own
(``127.0.0.1``, ``::1``), as Ergo's default configuration exempts localhost, for on a
loopback listener every user, test and benchmark is one of them; other 127/8 addresses
count as hosts of their own.

What a refused client gets is its server's to say (a TCP line, an HTTP status, a paced
UDP notice); :class:`PerAddress` counts, and says when a source's refusals begin, so that
a server logs one line per episode rather than one per refused client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from typing import Final

__all__ = ["LOCAL_ADDRESSES", "PerAddress", "check_per_address", "source_key"]

#: The addresses without a per-address limit unless told otherwise: this machine's own.
LOCAL_ADDRESSES: Final = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


def source_key(ip: str) -> str:
    """What a per-address limit counts a client under: its IPv4 address (an IPv4-mapped
    IPv6 one included), or the /64 of its IPv6 address.

    Args:
      ip: the address as the socket reports it.
    """
    if ":" not in ip:
        return ip
    try:
        address = ipaddress.IPv6Address(ip.partition("%")[0])
    except ValueError:
        return ip
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


def check_per_address(name: str, limit: int | None) -> None:
    """Refuse a limit below 1 when the server starts (None: no limit).

    Raises:
      ValueError: ``limit`` is below 1.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"{name} must be at least 1, not {limit}")


class PerAddress:
    """How many clients each source holds, against ``limit``.

    Args:
      limit: the most clients of one source (None: no limit, nothing counted).
      exempt: addresses (as sockets report them) without a limit.
    """

    __slots__ = ("_held", "_refusing", "exempt", "limit", "refused")

    def __init__(self, limit: int | None, exempt: Collection[str] = LOCAL_ADDRESSES) -> None:
        self.limit = limit
        self.exempt = frozenset(exempt)
        #: Clients refused for the limit.
        self.refused = 0
        self._held: dict[str, int] = {}  # per source with clients: how many
        self._refusing: set[str] = set()  # sources refused since they were last under

    def _source(self, ip: str) -> str | None:
        if self.limit is None or ip in self.exempt:
            return None
        return source_key(ip)

    def full(self, ip: str) -> bool:
        """Whether one more client of ``ip`` would pass its source's limit."""
        source = self._source(ip)
        return source is not None and self._held.get(source, 0) >= (self.limit or 0)

    def held(self, ip: str) -> int:
        """How many clients ``ip``'s source holds (0 when exempt or without a limit)."""
        source = self._source(ip)
        return 0 if source is None else self._held.get(source, 0)

    def count(self, ip: str) -> None:
        """A client of ``ip`` is served: one more for its source."""
        source = self._source(ip)
        if source is not None:
            self._held[source] = self._held.get(source, 0) + 1

    def uncount(self, ip: str) -> None:
        """A client of ``ip`` is gone: one fewer for its source (whose refusals, if it
        had any, end: the next is news again)."""
        source = self._source(ip)
        held = None if source is None else self._held.get(source)
        if source is None or held is None:
            return
        if held > 1:
            self._held[source] = held - 1
        else:
            del self._held[source]
        self._refusing.discard(source)

    def take(self, ip: str) -> bool | None:
        """Count a new client of ``ip`` if its source is under the limit.

        Returns:
          True: counted (give it back with :meth:`uncount`). False: refused, its
          source's first refusal since it was last under the limit (log it). None:
          refused again in the same episode.
        """
        if not self.full(ip):
            self.count(ip)
            return True
        self.refused += 1
        source = source_key(ip)
        if source in self._refusing:
            return None
        self._refusing.add(source)
        return False
