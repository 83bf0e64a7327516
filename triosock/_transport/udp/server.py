"""UDP with a task per peer: one socket, one receive loop, a bounded queue per address.

Server shape (trio's ``DTLSEndpoint.serve`` is the precedent):

* One socket and one receive loop. Each wakeup takes every datagram the kernel already
  holds (non-blocking ``recvfrom`` until EAGAIN) before it yields, so a burst costs one
  wakeup.
* Datagrams are routed by source address into that peer's bounded queue. The first
  datagram from a new address starts ``handler(peer)`` in its own task; ``peer`` is a
  :class:`UDPPeer`, a ``trio.abc.Channel[bytes]`` whose ``receive`` gives that peer's
  datagrams and whose ``send`` sends one datagram back to it.
* A full queue drops the datagram and counts it; the loop never waits on a peer, so a
  peer whose handler never reads slows nobody else.
* ``max_peers``: with the table full, a datagram from a new address either is dropped
  and counted (``when_full="refuse"``, the default: the peers already known keep their
  service) or evicts the least recently active peer, whose task is cancelled
  (``when_full="evict"``). A handler that never returns holds its entry until the peer's
  idle timeout; ``reply_each`` (echo, time; :mod:`triosock.services`) frees it
  10-12.5 s after the peer's last datagram, and the command line's echo and time
  servers evict, so a flood of new addresses never locks new clients out.
* ``max_peers_per_address``: the most peers one source may hold, ports aside (an IP
  address; for IPv6 its /64, see :func:`~..peraddress.source_key`), so that one host cannot
  take the whole table (Ergo, an IRC server, allows 16 connections per IP by default).
  A datagram that would start one more is dropped and counted
  (``dropped_address_limit``); the address is told at most once every
  :data:`~.guards.ADDRESS_NOTICE_INTERVAL` seconds, and only when the notice is at most
  three times the datagram's size (QUIC's bound for an address that has not proved
  itself). The addresses in ``per_address_exempt`` (by default this machine's own,
  ``127.0.0.1`` and ``::1``, as Ergo's default configuration exempts localhost) have no
  such limit.
* ``peer_idle_timeout``: a peer silent that long has its task cancelled through its
  cancel scope and its entry freed; if the address comes back, a fresh task starts.
* ``receive_buffer``: the bytes the kernel may hold for the socket while the server is
  busy (``SO_RCVBUF``, 4 MiB by default). What arrives past it is dropped by the kernel
  before the server can see or count it; Linux's default (about 208 KiB, a few hundred
  small datagrams) is a fraction of a second of a busy chat room. The kernel caps the
  size at ``net.core.rmem_max``; a process with ``CAP_NET_ADMIN`` (root) passes that cap
  (``SO_RCVBUFFORCE``). :attr:`UDPServer.receive_buffer` is what the kernel granted.
* Datagrams larger than ``max_datagram`` are dropped and counted; empty datagrams are
  delivered like any other. A handler's exception is logged and ends that peer only.
* The loop rule: a datagram that can only be a loop is refused before it reaches a
  handler (dropped, counted in ``refused_source``, logged once per address per
  :data:`~.guards.REFUSAL_QUIET` episode, never a traceback). Always refused: a source port that
  is the server's own port, from its own address (any address when bound to all
  interfaces): no client sends from the server's port, and an answer to it would be a
  datagram to ourselves, answered again forever. ``refuse_source`` adds a service's own
  rule (for the request/reply services: source ports that only servers use, see
  :func:`triosock.services.refuse_server_ports`). This is the BSD inetd's
  ``check_loop`` ("loop request REFUSED"), which compares the source port, whatever
  the host, with the ports of its built-in datagram services. Known peers are not
  checked again: an address refused never becomes one.
* Stopping works as for TCP: the socket stops being read, stop scopes are cancelled
  (handlers may send goodbyes), and the rest is cancelled after ``grace_period``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Final, Literal, final

import trio

from ..._liveness import IdleTimer
from ..._sansio.addresses import format_address
from .._lifecycle import (
    NoPublicConstructor,
    ServerLifecycle,
    check_grace,
    check_port,
    check_timeout,
    run_server,
)
from ..peraddress import LOCAL_ADDRESSES, check_per_address
from .guards import AddressLimit, LoopRule, SourceRule
from .peer import UDPPeer
from .sockets import (
    DEFAULT_RECEIVE_BUFFER,
    MAX_UDP_PAYLOAD,
    PEER_ERRNOS,
    Address,
    bind_udp,
    kernel_drops,
    set_receive_buffer,
)

__all__ = ["UDPServer", "UDPServerStatistics", "serve_udp"]

LOGGER = logging.getLogger("triosock.udp")

#: The most datagrams the receive loop takes before it lets other tasks run.
RECEIVE_BATCH: Final = 64
Handler = Callable[[UDPPeer], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class UDPServerStatistics:
    """A snapshot of a UDP server's counters.

    Attributes:
      peers: peer addresses known now; peers_total: since the server started.
      datagrams_in, datagrams_out: datagrams received and sent.
      dropped_queue_full: datagrams dropped because their peer's queue was full.
      dropped_peer_limit: datagrams from new addresses refused with ``max_peers`` known.
      dropped_address_limit: datagrams from new ports of an IP address that held
        ``max_peers_per_address`` peers already.
      dropped_oversize: datagrams over ``max_datagram``.
      evicted: peers ended to make room (``when_full="evict"``).
      expired: peers ended for their silence.
      handler_errors: handlers that raised (each ended its peer only).
      refused_source: datagrams refused by the loop rule (see the module docstring);
        not counted in :attr:`dropped`.
    """

    peers: int
    peers_total: int
    datagrams_in: int
    datagrams_out: int
    dropped_queue_full: int
    dropped_peer_limit: int
    dropped_oversize: int
    dropped_address_limit: int
    evicted: int
    expired: int
    handler_errors: int
    refused_source: int

    @property
    def dropped(self) -> int:
        """Every datagram the server dropped, for any of the four reasons."""
        limits = self.dropped_peer_limit + self.dropped_address_limit
        return self.dropped_queue_full + limits + self.dropped_oversize


@final
class UDPServer(ServerLifecycle, metaclass=NoPublicConstructor):
    """What ``await nursery.start(serve_udp, ...)`` returns. Made by :func:`serve_udp`,
    not by users."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        grace_period: float,
        max_peers: int,
        when_full: Literal["refuse", "evict"],
        queue_size: int,
        peer_idle_timeout: float | None,
        max_datagram: int,
        max_peers_per_address: int | None,
        per_address_exempt: frozenset[str],
        refuse_source: SourceRule | None,
    ) -> None:
        super().__init__(grace_period=grace_period, logger=LOGGER)
        self._sock = sock
        name = sock.getsockname()
        self._address: Address = (str(name[0]), int(name[1]))
        self.max_peers = max_peers
        self.when_full = when_full
        self.queue_size = queue_size
        self.peer_idle_timeout = peer_idle_timeout
        self.max_datagram = max_datagram
        self._address_limit = AddressLimit(max_peers_per_address, per_address_exempt)
        #: The socket's receive buffer as the kernel reports it (Linux counts its own
        #: bookkeeping in it: about twice what was asked).
        self.receive_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        # Least recently active first: routing moves a peer to the end.
        self._peers: OrderedDict[Address, UDPPeer] = OrderedDict()
        self._closed = False
        # trio lets one task at a time wait for a socket to be writable: the rest queue here
        self._write_waiters = trio.Lock()
        self._peers_total = 0
        self._in = 0
        self._out = 0
        self._dropped_peer_limit = 0
        self._dropped_oversize = 0
        self._dropped_queue_full = 0
        self._evicted = 0
        self._expired = 0
        self._peer_nursery: trio.Nursery | None = None
        self._sweep_period: float | None = None
        self._loop_rule = LoopRule(self._address, refuse_source)

    @property
    def address(self) -> Address:
        """The bound (host, port)."""
        return self._address

    @property
    def port(self) -> int:
        """The bound port."""
        return self._address[1]

    def peers(self) -> list[UDPPeer]:
        """The peers known now, least recently active first."""
        return list(self._peers.values())

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped for this socket because its receive buffer was
        full (they never reached the server, so :meth:`statistics` cannot count them);
        None where the system does not say (Linux's ``/proc/net/udp`` does)."""
        return kernel_drops(self._sock)

    def statistics(self) -> UDPServerStatistics:
        """A snapshot of the server's counters."""
        return UDPServerStatistics(
            peers=len(self._peers),
            peers_total=self._peers_total,
            datagrams_in=self._in,
            datagrams_out=self._out,
            dropped_queue_full=self._dropped_queue_full,
            dropped_peer_limit=self._dropped_peer_limit,
            dropped_oversize=self._dropped_oversize,
            dropped_address_limit=self._address_limit.dropped,
            evicted=self._evicted,
            expired=self._expired,
            handler_errors=self._handler_errors,
            refused_source=self._loop_rule.refused,
        )

    # -- sending -----------------------------------------------------------------------

    def sendto_nowait(self, data: bytes, address: Address) -> None:
        """Send one datagram now, or raise :class:`trio.WouldBlock` if the buffer is full.

        ``address`` must be numeric (as received); nothing is resolved here.
        """
        if self._closed:
            raise trio.ClosedResourceError("the UDP server's socket is closed")
        try:
            self._sock.sendto(data, address)
        except BlockingIOError:
            raise trio.WouldBlock from None
        except OSError as exc:
            # ICMP errors from earlier datagrams may surface here; a datagram to one
            # peer failing must not break the others.
            LOGGER.debug("sendto %s failed: %s", format_address(address), exc)
        else:
            self._out += 1

    async def sendto(self, data: bytes, address: Address) -> None:
        """Send one datagram, waiting for buffer space if the kernel has none."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                self.sendto_nowait(data, address)
            except trio.WouldBlock:
                await self.wait_writable()
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return

    async def wait_writable(self) -> None:
        """Return when the socket may take a datagram. Any number of tasks may wait."""
        async with self._write_waiters:
            await trio.lowlevel.wait_writable(self._sock)

    def _stop_begun(self) -> None:
        # The socket is read no more: each peer's receive() sees the end.
        for peer in list(self._peers.values()):
            peer._end()

    # -- routing -----------------------------------------------------------------------

    def _forget(self, peer: UDPPeer) -> None:
        if self._peers.get(peer.address) is peer:
            del self._peers[peer.address]
            self._address_limit.uncount(peer.address)

    def _over_address_limit(self, data: bytes, address: Address, now: float) -> bool:
        """Whether a new peer of ``address`` would pass its source's limit (if so, it
        is told when it may be)."""
        notice = self._address_limit.refusal(data, address, now)
        if notice is None:
            return False
        if notice:
            with contextlib.suppress(trio.WouldBlock):
                self.sendto_nowait(notice, address)
        return True

    def _route(
        self, data: bytes, address: Address, nursery: trio.Nursery, handler: Handler, now: float
    ) -> None:
        peer = self._peers.get(address)
        if peer is None:
            if self._over_address_limit(data, address, now):
                return
            if len(self._peers) >= self.max_peers:
                if self.when_full == "refuse":
                    self._dropped_peer_limit += 1
                    return
                gone, oldest = self._peers.popitem(last=False)
                self._address_limit.uncount(gone)
                self._evicted += 1
                oldest._cancel()
            peer = UDPPeer._create(self, address)
            peer._seen = now
            self._peers[address] = peer
            self._address_limit.count(address)
            self._peers_total += 1
            nursery.start_soon(self._run_peer, handler, peer, name=f"udp peer {peer.peer}")
        else:
            self._peers.move_to_end(address)
            peer._seen = now
            peer.touch()
        if not peer._deliver(data):
            self._dropped_queue_full += 1

    async def _run_peer(self, handler: Handler, peer: UDPPeer) -> None:
        # One cancel scope a peer: the idle timer's when there is a timeout.
        if self.peer_idle_timeout is not None:
            idle = peer._idle = IdleTimer(self.peer_idle_timeout)
            scope = idle.scope
        else:
            idle = None
            scope = trio.CancelScope()
        if peer._scope is not None and peer._scope.cancel_called:  # ended before it began
            scope.cancel()
        peer._scope = scope
        verbose = LOGGER.isEnabledFor(logging.DEBUG)
        if verbose:
            LOGGER.debug("UDP peer %s arrived (%d peers)", peer.peer, len(self._peers))
            began = trio.current_time()
        try:
            with scope:
                try:
                    await handler(peer)
                except Exception as exc:
                    self._handler_failed(exc, f"UDP peer {peer.peer}")
            if idle is not None and idle.expired:
                self._expired += 1
                LOGGER.info("UDP peer %s expired after %g s of silence", peer.peer, idle.timeout)
        finally:
            peer._close()
            if verbose:
                LOGGER.debug(
                    "UDP peer %s gone after %.1f s", peer.peer, trio.current_time() - began
                )

    async def _receive_loop(self, handler: Handler, nursery: trio.Nursery) -> None:
        sock = self._sock
        size = self.max_datagram + 1
        failures = 0  # socket errors in a row that no datagram came between
        while True:
            await trio.lowlevel.wait_readable(sock)
            now = trio.current_time()
            # Take what the kernel holds before yielding again, but never more than a
            # batch: under a flood the peer tasks must run, and a stop must get through.
            for _ in range(RECEIVE_BATCH):
                try:
                    data, address = sock.recvfrom(size)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in PEER_ERRNOS:
                        # An ICMP error for an earlier send, dequeued by this call: it
                        # concerns one peer, never the server.
                        LOGGER.debug("recvfrom: %s", exc)
                        continue
                    failures += 1
                    await self._back_off(exc, failures)
                    break
                failures = 0
                self._in += 1
                if len(data) > self.max_datagram:
                    self._dropped_oversize += 1
                    continue
                address = address[:2]
                if address not in self._peers and self._loop_rule.refuses(address, now):
                    continue
                self._route(data, address, nursery, handler, now)
            else:
                await trio.lowlevel.checkpoint()  # a full batch: let the others run
            # Otherwise no checkpoint here: wait_readable above is one, and a pass per
            # burst is a large part of a UDP round trip.

    def _sweep_for(self, lifetime: float) -> None:
        """Make sure peers with a ``limit_idle`` lifetime this short are looked for."""
        period = lifetime / 4
        if self._sweep_period is None:
            assert self._peer_nursery is not None
            self._peer_nursery.start_soon(self._sweep, name="udp peer lifetimes")
        if self._sweep_period is None or period < self._sweep_period:
            self._sweep_period = period

    async def _sweep(self) -> None:
        """End the peers whose ``limit_idle`` lifetime has passed, every so often."""
        with self.stop_scope():  # a stop must not wait for this loop
            while True:
                assert self._sweep_period is not None
                await trio.sleep(self._sweep_period)
                now = trio.current_time()
                for peer in list(self._peers.values()):  # least recently active first
                    lifetime = peer._lifetime
                    if lifetime is not None and now - peer._seen >= lifetime:
                        self._expired += 1
                        LOGGER.debug("UDP peer %s done after %g s of silence", peer.peer, lifetime)
                        self._forget(peer)
                        peer._lapsed = True
                        peer._cancel()

    async def _back_off(self, exc: OSError, failures: int) -> None:
        """A socket error that does not go away: log it and wait before trying again,
        longer each time (up to a second), instead of spinning on it."""
        if exc.errno == errno.EBADF:
            raise trio.ClosedResourceError("the UDP server's socket was closed") from exc
        delay = min(1.0, 0.001 * 2 ** min(failures, 10))
        log = LOGGER.warning if failures == 1 or failures % 100 == 0 else LOGGER.debug
        log("recvfrom failed (%d in a row), retrying in %g s: %s", failures, delay, exc)
        await trio.sleep(delay)


async def serve_udp(
    handler: Handler,
    port: int,
    *,
    host: str = "127.0.0.1",
    max_peers: int = 1024,
    when_full: Literal["refuse", "evict"] = "refuse",
    queue_size: int = 64,
    peer_idle_timeout: float | None = None,
    max_datagram: int = MAX_UDP_PAYLOAD,
    max_peers_per_address: int | None = None,
    per_address_exempt: Collection[str] = LOCAL_ADDRESSES,
    receive_buffer: int | None = DEFAULT_RECEIVE_BUFFER,
    grace_period: float = 5.0,
    reuse_port: bool = False,
    refuse_source: SourceRule | None = None,
    task_status: trio.TaskStatus[UDPServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on a UDP port with one task per peer address, until stopped.

    With ``reuse_port``, several processes may serve the same port (``SO_REUSEPORT``):
    the kernel keeps each peer address on one of them.

    Args:
      handler: ``async def handler(peer: UDPPeer)``; runs while the peer is known.
      port: the port to bind; 0 picks a free one.
      host: the address to bind; loopback by default (``""`` or ``"0.0.0.0"`` for all
        IPv4 interfaces; an IPv6 literal binds IPv6).
      max_peers: the most peers known at once; see ``when_full``.
      when_full: ``"refuse"`` drops datagrams from new addresses while the table is
        full; ``"evict"`` cancels the least recently active peer to make room.
      queue_size: datagrams buffered per peer before new ones are dropped.
      peer_idle_timeout: seconds of silence after which a peer's task is cancelled.
      max_datagram: larger datagrams are dropped and counted.
      max_peers_per_address: the most peers one IP address may hold (None: no limit);
        see the module docstring.
      per_address_exempt: IP addresses (as the socket reports them) without that limit.
      receive_buffer: bytes the kernel may hold for the socket while the server is busy
        (see the module docstring); None keeps the system's default.
      grace_period: seconds handlers get to finish once the stop begins.
      refuse_source: the service's own loop rule, on top of the server's (see the module
        docstring): called with the address of each datagram from an address that is
        not a peer, it returns why such a source cannot be a client (the datagram is
        refused), or None.
      task_status: ``nursery.start`` receives the :class:`UDPServer` once bound.

    Raises:
      BindError: the address could not be bound.
    """
    check_port(port)
    check_timeout("peer_idle_timeout", peer_idle_timeout)
    check_grace(grace_period)
    if max_peers < 1:
        raise ValueError(f"max_peers must be at least 1, not {max_peers}")
    if queue_size < 1:
        raise ValueError(f"queue_size must be at least 1, not {queue_size}")
    if when_full not in ("refuse", "evict"):
        raise ValueError(f"when_full must be 'refuse' or 'evict', not {when_full!r}")
    if not 0 < max_datagram <= MAX_UDP_PAYLOAD:
        raise ValueError(f"max_datagram must be from 1 to {MAX_UDP_PAYLOAD}: {max_datagram}")
    check_per_address("max_peers_per_address", max_peers_per_address)
    if receive_buffer is not None and receive_buffer < 1:
        raise ValueError(f"receive_buffer must be at least 1 byte, not {receive_buffer}")
    sock = await bind_udp(host, port, reuse_port)
    with sock:
        if receive_buffer is not None:
            set_receive_buffer(sock, receive_buffer)
        server = UDPServer._create(
            sock,
            grace_period=grace_period,
            max_peers=max_peers,
            when_full=when_full,
            queue_size=queue_size,
            peer_idle_timeout=peer_idle_timeout,
            max_datagram=max_datagram,
            max_peers_per_address=max_peers_per_address,
            per_address_exempt=frozenset(per_address_exempt),
            refuse_source=refuse_source,
        )

        async def receive(peers: trio.Nursery) -> None:
            server._peer_nursery = peers
            await server._receive_loop(handler, peers)

        try:
            await run_server(server, receive, task_status)
        finally:
            server._closed = True
