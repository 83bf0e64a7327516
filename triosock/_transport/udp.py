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
* Stopping works as for TCP: the socket stops being read, stop scopes are cancelled
  (handlers may send goodbyes), and the rest is cancelled after ``grace_period``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import outcome
import trio

from .._errors import (
    BindError,
    ConnectError,
    MessageTooLargeError,
    TriosockError,
    describe_oserror,
)
from .._liveness import IdleTimer
from ._lifecycle import ServerLifecycle
from .tcp import _check_port, connection_ended, format_address

__all__ = [
    "DatagramTooLargeError",
    "PeerUnreachableError",
    "UDPChannel",
    "UDPPeer",
    "UDPServer",
    "UDPServerStatistics",
    "open_udp_channel",
    "serve_udp",
]

LOGGER = logging.getLogger("triosock.udp")

#: The largest payload a UDP datagram over IPv4 can carry.
MAX_UDP_PAYLOAD = 65507
#: The most datagrams the receive loop takes before it lets other tasks run.
RECEIVE_BATCH = 64
#: Bytes asked of the kernel for a server socket's receive buffer (SO_RCVBUF).
DEFAULT_RECEIVE_BUFFER = 4 * 1024 * 1024
#: Errors recvfrom reports for one earlier datagram (ICMP), not for the socket.
_PEER_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.EMSGSIZE,
        errno.ETIMEDOUT,
        errno.EPROTO,
    }
)

Address = tuple[str, int]
Handler = Callable[["UDPPeer"], Awaitable[object]]


class PeerUnreachableError(trio.BrokenResourceError, TriosockError):
    """The peer's host reported (through ICMP) that nothing listens on its port.

    A :class:`trio.BrokenResourceError`, so code written against trio's channel contract
    handles it without knowing triosock.
    """


@dataclass(frozen=True)
class UDPServerStatistics:
    """A snapshot of a UDP server's counters."""

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

    @property
    def dropped(self) -> int:
        return self.dropped_queue_full + self.dropped_peer_limit + self.dropped_oversize


class UDPPeer(trio.abc.Channel[bytes]):
    """One remote address of a UDP server, as a message channel.

    ``receive()`` gives this peer's datagrams in arrival order (what the queue could
    hold); ``send(data)`` sends one datagram to it from the server's socket. Once the
    server begins to stop, ``receive()`` raises :class:`trio.EndOfChannel` after the
    datagrams already queued: no more will come. ``aclose()`` ends the peer: its queue is
    dropped and a later datagram from the same address starts a new handler.

    One task receives at a time (a second gets :class:`trio.BusyResourceError`). A
    datagram for a task waiting in ``receive()`` is handed to it directly; the queue, made
    on first need, holds only the datagrams that arrive while the task is busy.
    """

    __slots__ = (
        "_closed",
        "_ended",
        "_idle",
        "_lapsed",
        "_lifetime",
        "_queue",
        "_scope",
        "_seen",
        "_waiter",
        "address",
        "dropped",
        "server",
    )

    def __init__(self, server: UDPServer, address: Address) -> None:
        self.server = server
        self.address = address
        self.dropped = 0
        self._queue: deque[bytes] | None = None
        self._waiter: trio.lowlevel.Task | None = None
        self._closed = False
        self._ended = False  # the server stopped reading: nothing more will be queued
        # cancelled to end the peer (evicted, lifetime over); with a peer_idle_timeout,
        # the idle timer's scope is this scope
        self._scope: trio.CancelScope | None = None
        self._idle: IdleTimer | None = None
        self._seen = 0.0  # when its last datagram arrived (per receive batch)
        self._lifetime: float | None = None  # see limit_idle
        self._lapsed = False  # ended by limit_idle's sweep

    @property
    def peer(self) -> str:
        """The address as text, ``ip:port``."""
        return format_address(self.address)

    @property
    def stopping(self) -> bool:
        return self.server.stopping

    def stop_scope(self) -> trio.CancelScope:
        """A cancel scope cancelled when the server begins to stop (see serve_udp)."""
        return self.server.stop_scope()

    def touch(self) -> None:
        """Count this as life from the peer (the server does it for every datagram)."""
        if self._idle is not None:
            self._idle.touch()

    def limit_idle(self, seconds: float) -> None:
        """End this peer after about ``seconds`` of silence, unless the server's own
        ``peer_idle_timeout`` is shorter: for handlers that know their peers go quiet (a
        request/reply service).

        Unlike ``peer_idle_timeout`` (exact, a cancel scope deadline moved by every
        datagram), this costs nothing per datagram: the server looks for such peers
        every quarter of the time, so one ends between ``seconds`` and 1.25 times that
        after its last datagram.
        """
        if not seconds > 0:
            raise ValueError(f"idle time must be a positive number of seconds: {seconds}")
        if self._idle is not None and self._idle.timeout <= seconds:
            return  # the server's own, shorter timeout ends it first
        self._lifetime = seconds
        self.server._sweep_for(seconds)

    @property
    def idle_expired(self) -> bool:
        """True once the peer was ended for its silence (the server's
        ``peer_idle_timeout``, or :meth:`limit_idle`): its handler is being cancelled."""
        return self._lapsed or (self._idle is not None and self._idle.expired)

    def hold_idle(self) -> contextlib.AbstractContextManager[None]:
        """Stop the peer's idle clock for the body; it restarts from the end of the block."""
        return self._idle.held() if self._idle is not None else contextlib.nullcontext()

    async def receive(self) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._queue:
            data = self._take()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        self._check_receivable()
        if self._waiter is not None:
            raise trio.BusyResourceError("another task is receiving from this peer")
        self._waiter = trio.lowlevel.current_task()
        data = await trio.lowlevel.wait_task_rescheduled(self._abort_receive)
        assert isinstance(data, bytes)
        return data

    def _abort_receive(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED

    def receive_nowait(self) -> bytes:
        """The next queued datagram, or :class:`trio.WouldBlock` when none is queued."""
        if self._queue:
            return self._take()
        self._check_receivable()
        raise trio.WouldBlock

    @property
    def pending(self) -> int:
        """How many datagrams are queued: ``receive_nowait`` succeeds while this is not 0."""
        return len(self._queue) if self._queue is not None else 0

    def _take(self) -> bytes:
        queue = self._queue
        assert queue
        data = queue.popleft()
        if not queue:  # an empty deque is over half a KiB: a waiting peer holds none
            self._queue = None
        return data

    def _check_receivable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the peer was closed")
        if self._ended:
            raise trio.EndOfChannel

    async def send(self, value: bytes) -> None:
        await self.server.sendto(value, self.address)

    def send_nowait(self, value: bytes) -> None:
        """Send now if the socket's buffer has room, else :class:`trio.WouldBlock`."""
        self.server.sendto_nowait(value, self.address)

    async def wait_writable(self) -> None:
        """Return when the server's socket may take a datagram (any number may wait)."""
        await self.server.wait_writable()

    async def aclose(self) -> None:
        self._close()
        await trio.lowlevel.checkpoint()

    def _close(self) -> None:
        self._closed = True
        self._queue = None
        self._wake(outcome.Error(trio.ClosedResourceError("the peer was closed")))
        self.server._forget(self)

    def _cancel(self) -> None:
        """End the peer's task (evicted, lifetime over), even one that has not begun."""
        if self._scope is None:
            self._scope = trio.CancelScope()
        self._scope.cancel()

    def _end(self) -> None:
        """The server stopped reading: a waiting (or the next) receive sees the end."""
        self._ended = True
        if not self._queue:
            self._wake(outcome.Error(trio.EndOfChannel()))

    def _wake(self, result: outcome.Outcome[bytes]) -> None:
        task = self._waiter
        if task is not None:
            self._waiter = None
            trio.lowlevel.reschedule(task, result)

    def _deliver(self, data: bytes) -> bool:
        if self._waiter is not None:  # the handler waits for it: straight in its hands
            task, self._waiter = self._waiter, None
            trio.lowlevel.reschedule(task, outcome.Value(data))
            return True
        queue = self._queue
        if queue is None:
            if self._closed:
                self.dropped += 1
                return False
            queue = self._queue = deque()
        if len(queue) >= self.server.queue_size:
            self.dropped += 1
            return False
        queue.append(data)
        return True


class UDPServer(ServerLifecycle):
    """What ``await nursery.start(serve_udp, ...)`` returns."""

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
    ) -> None:
        super().__init__(grace_period=grace_period)
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
        self._handler_errors = 0
        self._peer_nursery: trio.Nursery | None = None
        self._sweep_period: float | None = None

    @property
    def address(self) -> Address:
        return self._address

    @property
    def port(self) -> int:
        return self._address[1]

    def peers(self) -> list[UDPPeer]:
        """The peers known now, least recently active first."""
        return list(self._peers.values())

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped for this socket because its receive buffer was
        full (they never reached the server, so :meth:`statistics` cannot count them);
        None where the system does not say (Linux's ``/proc/net/udp`` does)."""
        try:
            inode = os.fstat(self._sock.fileno()).st_ino
        except OSError:
            return None
        wanted = f" {inode} "
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            try:
                with open(table, encoding="ascii") as lines:
                    for line in lines:
                        if wanted in line:
                            return int(line.split()[-1])
            except (OSError, ValueError):
                continue
        return None

    def statistics(self) -> UDPServerStatistics:
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

    def _begin_stop(self) -> None:
        first = not self.stopping
        super()._begin_stop()
        if first:  # the socket is read no more: each peer's receive() sees the end
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
            peer = UDPPeer(self, address)
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
                    if connection_ended(exc):  # also from inside a handler's nursery
                        LOGGER.debug("peer %s ended: %r", peer.peer, exc)
                    else:
                        self._handler_errors += 1
                        LOGGER.exception("handler failed for UDP peer %s; dropping it", peer.peer)
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
                    if exc.errno in _PEER_ERRNOS:
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
                self._route(data, address[:2], nursery, handler, now)
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
    receive_buffer: int | None = DEFAULT_RECEIVE_BUFFER,
    grace_period: float = 5.0,
    reuse_port: bool = False,
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
      task_status: ``nursery.start`` receives the :class:`UDPServer` once bound.

    Raises:
      BindError: the address could not be bound.
    """
    _check_port(port)
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
    sock = await _bind_udp(host, port, reuse_port)
    with sock:
        if receive_buffer is not None:
            set_receive_buffer(sock, receive_buffer)
        server = UDPServer(
            sock,
            grace_period=grace_period,
            max_peers=max_peers,
            when_full=when_full,
            queue_size=queue_size,
            peer_idle_timeout=peer_idle_timeout,
            max_datagram=max_datagram,
        )
        async with trio.open_nursery() as nursery:
            peers = await nursery.start(server._host_tasks)
            server._peer_nursery = peers
            task_status.started(server)
            try:
                async with trio.open_nursery() as receiving:
                    receiving.start_soon(server._cancel_when_stop_requested, receiving.cancel_scope)
                    await server._receive_loop(handler, peers)
            finally:
                server._begin_stop()
        server._closed = True


async def _bind_udp(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    try:
        infos = await trio.socket.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM)
        family, type_, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, type_, proto)
    except OSError as exc:
        where = format_address((host or "*", port))
        raise BindError(f"cannot listen on {where} (udp): {describe_oserror(exc)}") from exc
    try:
        sock.setblocking(False)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        where = format_address((host or "*", port))
        raise BindError(f"cannot listen on {where} (udp): {describe_oserror(exc)}") from exc
    return sock


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a receive buffer of ``size`` bytes, past ``net.core.rmem_max`` when the
    process may (``SO_RCVBUFFORCE``); return what the kernel reports."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if force is not None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < size:
        with contextlib.suppress(OSError):  # EPERM without CAP_NET_ADMIN: the cap stays
            sock.setsockopt(socket.SOL_SOCKET, force, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


class DatagramTooLargeError(MessageTooLargeError):
    """A datagram to send is longer than UDP carries (65,507 bytes over IPv4)."""

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(limit, size)
        self.args = (f"a datagram of {size} bytes is over UDP's limit of {limit} bytes",)


class UDPChannel(trio.abc.Channel[bytes]):
    """A connected UDP socket as a ``trio.abc.Channel[bytes]``: one datagram a message.

    ``receive()`` returns the next datagram from the connected peer (others are filtered
    by the kernel). When the peer's host answers with ICMP port-unreachable, the next
    ``send`` or ``receive`` raises :class:`PeerUnreachableError`.
    """

    def __init__(self, sock: trio.socket.SocketType, max_datagram: int = MAX_UDP_PAYLOAD) -> None:
        self._sock = sock
        self._size = max_datagram + 1

    @property
    def socket(self) -> trio.socket.SocketType:
        return self._sock

    async def send(self, value: bytes) -> None:
        """Send ``value`` as one datagram.

        Raises:
          DatagramTooLargeError: longer than a UDP datagram can carry (or than the path
            allows, as the kernel says); nothing is sent, and the channel stays usable.
        """
        with self._translate_errors("send"):
            try:
                await self._sock.send(value)
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    raise DatagramTooLargeError(MAX_UDP_PAYLOAD, len(value)) from exc
                raise

    async def receive(self) -> bytes:
        with self._translate_errors("receive"):
            return await self._sock.recv(self._size)
        raise AssertionError("unreachable")  # pragma: no cover - for type checkers

    @contextmanager
    def _translate_errors(self, what: str) -> Iterator[None]:
        """OSError at this edge becomes trio's stream errors or PeerUnreachableError."""
        try:
            yield
        except ConnectionRefusedError as exc:
            raise PeerUnreachableError(f"nothing listens at {self._peer()}") from exc
        except OSError as exc:
            if self._sock.fileno() == -1:
                raise trio.ClosedResourceError("the channel was closed") from exc
            raise trio.BrokenResourceError(f"{what} failed: {describe_oserror(exc)}") from exc

    def _peer(self) -> str:
        try:
            return format_address(self._sock.getpeername())
        except OSError:
            return "the peer"

    async def aclose(self) -> None:
        self._sock.close()
        await trio.lowlevel.checkpoint()


async def open_udp_channel(
    host: str, port: int, *, max_datagram: int = MAX_UDP_PAYLOAD
) -> UDPChannel:
    """A UDP socket connected to ``host:port``, as a :class:`UDPChannel`.

    Raises:
      ConnectError: the host does not resolve or the address cannot be reached.
    """
    _check_port(port)
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, type_, proto, _, sockaddr = infos[0]
        sock = trio.socket.socket(family, type_, proto)
    except OSError as exc:
        where = format_address((host, port))
        raise ConnectError(f"cannot reach {where} (udp): {describe_oserror(exc)}") from exc
    try:
        await sock.connect(sockaddr)
    except OSError as exc:
        sock.close()
        where = format_address((host, port))
        raise ConnectError(f"cannot reach {where} (udp): {describe_oserror(exc)}") from exc
    return UDPChannel(sock, max_datagram)
