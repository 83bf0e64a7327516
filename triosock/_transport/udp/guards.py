"""What a UDP server refuses before a datagram reaches a peer: the per-address limit and
the loop rule (both described in :mod:`.server`'s docstring).

* :class:`AddressLimit` counts the peers of each source (an IPv4 address, or an IPv6 /64:
  :func:`source_key`) and refuses a new peer past ``max_peers_per_address``; the refused
  address is told at most once every :data:`ADDRESS_NOTICE_INTERVAL` seconds, and only
  when the notice is at most three times the refused datagram (QUIC's bound for an
  address that has not proved itself).
* :class:`LoopRule` refuses a datagram that can only be a loop (the server's own port, or
  a service's own rule) and logs it once per address per :data:`REFUSAL_QUIET` episode.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from ..._sansio.addresses import format_address
from .sockets import Address

__all__ = [
    "ADDRESS_NOTICE_INTERVAL",
    "LOCAL_ADDRESSES",
    "REFUSALS_REMEMBERED",
    "REFUSAL_QUIET",
    "AddressLimit",
    "LoopRule",
    "SourceRule",
    "source_key",
]

LOGGER = logging.getLogger("triosock.udp")

#: Seconds between two notices to an address over ``max_peers_per_address``.
ADDRESS_NOTICE_INTERVAL: Final = 10.0
#: The addresses without a per-address limit unless told otherwise: this machine's own.
LOCAL_ADDRESSES: Final = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
#: A refusal's size over which the refused datagram's own is too small to answer.
_REPLY_FACTOR: Final = 3

#: Seconds without a refused datagram from an address that end its refusal episode: the
#: next refusal from it is logged again. At most :data:`REFUSALS_REMEMBERED` addresses
#: are remembered for this (the least recently refused are forgotten first).
REFUSAL_QUIET: Final = 60.0
REFUSALS_REMEMBERED: Final = 1024

_ALL_INTERFACES: Final = frozenset({"0.0.0.0", "::", ""})
#: A service's own loop rule: why a source address cannot be a client, or None.
SourceRule = Callable[[Address], "str | None"]


def source_key(ip: str) -> str:
    """What ``max_peers_per_address`` counts a peer under: its IPv4 address (an
    IPv4-mapped IPv6 one included), or the /64 of its IPv6 address, as Ergo counts by
    default (a host is often given a whole /64).

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


class AddressLimit:
    """The peers each source holds, and the refusal of one more past ``limit``.

    Args:
      limit: the most peers of one source (None: no limit).
      exempt: addresses without a limit.
    """

    __slots__ = ("_by_ip", "_told", "dropped", "exempt", "limit")

    def __init__(self, limit: int | None, exempt: frozenset[str]) -> None:
        self.limit = limit
        self.exempt = exempt
        #: Datagrams refused for the limit.
        self.dropped = 0
        # Per source with peers: how many, and when it was last told it has too many.
        self._by_ip: dict[str, int] = {}
        self._told: dict[str, float] = {}

    def count(self, address: Address) -> None:
        """A peer of ``address`` joined the table: one more for its source."""
        if self.limit is not None and address[0] not in self.exempt:
            source = source_key(address[0])
            self._by_ip[source] = self._by_ip.get(source, 0) + 1

    def uncount(self, address: Address) -> None:
        """A peer of ``address`` left the table: one fewer for its source."""
        if self.limit is None or address[0] in self.exempt:
            return  # not counted
        source = source_key(address[0])
        held = self._by_ip.get(source)
        if held is None:
            return
        if held > 1:
            self._by_ip[source] = held - 1
        else:
            del self._by_ip[source]
            self._told.pop(source, None)

    def refusal(self, data: bytes, address: Address, now: float) -> bytes | None:
        """None when a new peer of ``address`` is within its source's limit; otherwise
        the datagram is counted as dropped, and the answer is what to tell the address
        (empty when it is not told: told too recently, or ``data`` too small to earn it).
        """
        limit = self.limit
        if limit is None or address[0] in self.exempt:
            return None
        source = source_key(address[0])
        if self._by_ip.get(source, 0) < limit:
            return None
        self.dropped += 1
        told = self._told.get(source)
        notice = b"refused: %d UDP peers from your address already (the most)\n" % limit
        if len(notice) > _REPLY_FACTOR * len(data) or (
            told is not None and now - told < ADDRESS_NOTICE_INTERVAL
        ):
            return b""
        self._told[source] = now
        return notice


class LoopRule:
    """The loop rule of a server bound to ``own``: a datagram from its own port (from its
    own address; any, when it is bound to all interfaces), or one ``rule`` refuses.

    Args:
      own: the server's bound address.
      rule: a service's own rule, or None.
    """

    __slots__ = ("_own", "_refusals", "_rule", "refused")

    def __init__(self, own: Address, rule: SourceRule | None) -> None:
        self._own = own
        self._rule = rule
        #: Datagrams refused.
        self.refused = 0
        # the address refused -> when it was last refused, least recently refused first
        self._refusals: OrderedDict[Address, float] = OrderedDict()

    def refuses(self, address: Address, now: float) -> bool:
        """True (and counted, and logged once an episode) if a datagram from
        ``address`` cannot be from a client."""
        host, port = self._own
        why: str | None = None
        if address[1] == port and (address[0] == host or host in _ALL_INTERFACES):
            why = f"source port {port} is this server's own port"
        elif self._rule is not None:
            why = self._rule(address)
        if why is None:
            return False
        self.refused += 1
        refusals = self._refusals
        last = refusals.pop(address, None)
        if last is None or now - last >= REFUSAL_QUIET:
            LOGGER.warning(
                "UDP port %d: loop request refused from %s: %s (logged once until it has "
                "been quiet for %g s)",
                port,
                format_address(address),
                why,
                REFUSAL_QUIET,
            )
        refusals[address] = now
        if len(refusals) > REFUSALS_REMEMBERED:
            refusals.popitem(last=False)
        return True
