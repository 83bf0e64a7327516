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
* A flood cannot starve the server: the receive loop lets the other tasks run after every
  :data:`RECEIVE_BATCH` datagrams, so peers are answered and a stop gets through. A socket
  error that persists is logged and retried with a growing pause (up to 1 s), never in a
  busy loop; ICMP errors for one earlier datagram are skipped.
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
  :data:`REFUSAL_QUIET` episode, never a traceback). Always refused: a source port that
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

import errno
import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
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

#: Seconds without a refused datagram from an address that end its refusal episode: the
#: next refusal from it is logged again. At most :data:`REFUSALS_REMEMBERED` addresses
#: are remembered for this (the least recently refused are forgotten first).
REFUSAL_QUIET: Final = 60.0
REFUSALS_REMEMBERED: Final = 1024

Handler = Callable[[UDPPeer], Awaitable[object]]
_ALL_INTERFACES: Final = frozenset({"0.0.0.0", "::", ""})
#: A service's own loop rule: why a source address cannot be a client, or None.
SourceRule = Callable[[Address], "str | None"]


@dataclass(frozen=True, slots=True)
class UDPServerStatistics:
    """A snapshot of a UDP server's counters.

    Attributes:
      peers: peer addresses known now; peers_total: since the server started.
      datagrams_in, datagrams_out: datagrams received and sent.
      dropped_queue_full: datagrams dropped because their peer's queue was full.
      dropped_peer_limit: datagrams from new addresses refused with ``max_peers`` known.
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
    evicted: int
    expired: int
    handler_errors: int
    refused_source: int

    @property
    def dropped(self) -> int:
        """Every datagram the server dropped, for any of the three reasons."""
        return self.dropped_queue_full + self.dropped_peer_limit + self.dropped_oversize


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
        self._refuse_source = refuse_source
        self._refused_source = 0
        # the address refused -> when it was last refused, least recently refused first
        self._refusals: OrderedDict[Address, float] = OrderedDict()

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
            evicted=self._evicted,
            expired=self._expired,
            handler_errors=self._handler_errors,
            refused_source=self._refused_source,
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

    def _route(
        self, data: bytes, address: Address, nursery: trio.Nursery, handler: Handler, now: float
    ) -> None:
        peer = self._peers.get(address)
        if peer is None:
            if len(self._peers) >= self.max_peers:
                if self.when_full == "refuse":
                    self._dropped_peer_limit += 1
                    return
                _, oldest = self._peers.popitem(last=False)
                self._evicted += 1
                oldest._cancel()
            peer = UDPPeer._create(self, address)
            peer._seen = now
            self._peers[address] = peer
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
                if address not in self._peers and self._refused(address, now):
                    continue
                self._route(data, address, nursery, handler, now)
            else:
                await trio.lowlevel.checkpoint()  # a full batch: let the others run
            # Otherwise no checkpoint here: wait_readable above is one, and a pass per
            # burst is a large part of a UDP round trip.

    def _refused(self, address: Address, now: float) -> bool:
        """The loop rule, for a datagram from an address that is not a peer: True (and
        counted, and logged once an episode) if it cannot be from a client."""
        host, port = self._address
        why: str | None = None
        if address[1] == port and (address[0] == host or host in _ALL_INTERFACES):
            why = f"source port {port} is this server's own port"
        elif self._refuse_source is not None:
            why = self._refuse_source(address)
        if why is None:
            return False
        self._refused_source += 1
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
            refuse_source=refuse_source,
        )

        async def receive(peers: trio.Nursery) -> None:
            server._peer_nursery = peers
            await server._receive_loop(handler, peers)

        try:
            await run_server(server, receive, task_status)
        finally:
            server._closed = True
