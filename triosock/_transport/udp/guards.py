"""What a UDP server refuses before a datagram reaches a peer: the per-address limit and
the loop rule (both described in :mod:`.server`'s docstring).

* :class:`AddressLimit` counts the peers of each source (an IPv4 address, or an IPv6
  /64: :func:`~..peraddress.source_key`) and refuses a new peer past
  ``max_peers_per_address``; the refused address is told at most once every
  :data:`ADDRESS_NOTICE_INTERVAL` seconds, and only when the notice is at most three
  times the refused datagram (QUIC's bound for an address that has not proved itself).
* :class:`LoopRule` refuses a datagram that can only be a loop (the server's own port, or
  a service's own rule) and logs it once per address per :data:`REFUSAL_QUIET` episode.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from ..._sansio.addresses import format_address
from ..peraddress import PerAddress, source_key
from .sockets import Address

__all__ = [
    "ADDRESS_NOTICE_INTERVAL",
    "REFUSALS_REMEMBERED",
    "REFUSAL_QUIET",
    "AddressLimit",
    "LoopRule",
    "SourceRule",
]

LOGGER = logging.getLogger("triosock.udp")

#: Seconds between two notices to an address over ``max_peers_per_address``.
ADDRESS_NOTICE_INTERVAL: Final = 10.0
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


class AddressLimit:
    """The peers each source holds (:class:`~..peraddress.PerAddress`), and
    what an address refused one more is told.

    Args:
      limit: the most peers of one source (None: no limit).
      exempt: addresses without a limit.
    """

    __slots__ = ("_told", "peers")

    def __init__(self, limit: int | None, exempt: frozenset[str]) -> None:
        self.peers = PerAddress(limit, exempt)
        self._told: dict[str, float] = {}  # source -> when it was last told

    @property
    def dropped(self) -> int:
        """Datagrams refused for the limit."""
        return self.peers.refused

    def count(self, address: Address) -> None:
        """A peer of ``address`` joined the table: one more for its source."""
        self.peers.count(address[0])

    def uncount(self, address: Address) -> None:
        """A peer of ``address`` left the table: one fewer for its source."""
        self.peers.uncount(address[0])
        if self._told and not self.peers.held(address[0]):
            self._told.pop(source_key(address[0]), None)

    def refusal(self, data: bytes, address: Address, now: float) -> bytes | None:
        """None when a new peer of ``address`` is within its source's limit; otherwise
        the datagram is counted as dropped, and the answer is what to tell the address
        (empty when it is not told: told too recently, or ``data`` too small to earn it).
        """
        peers = self.peers
        if not peers.full(address[0]):
            return None
        peers.refused += 1
        source = source_key(address[0])
        told = self._told.get(source)
        notice = b"refused: %d UDP peers from your address already (the most)\n" % (
            peers.limit or 0
        )
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
