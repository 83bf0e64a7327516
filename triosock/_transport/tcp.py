"""TCP (and TLS) servers: a task per connection, idle timeouts, graceful stop. (The
clients, :func:`open_tcp_stream` and :func:`open_tcp_channel`, are in
:mod:`~triosock._transport.tcp_client`.)

Server shape (trio's ``serve_listeners`` does the accepting):

* Each connection runs ``handler(conn)`` in its own task, in a connection nursery the
  server owns. ``conn`` is a :class:`TCPConnection`, a ``trio.abc.HalfCloseableStream``
  (wrap it in a :class:`~triosock.FramedChannel` for messages). A handler's exception is
  logged and closes that connection only; the server goes on.
* ``max_connections``: a slot is taken *before* ``accept()``. With every slot in use the
  server accepts nothing: further clients wait in the kernel's listen backlog (their
  ``connect`` succeeds, nothing is read) and are served, in order, as slots free up; once
  the backlog is full too, the kernel drops new connection attempts. Nobody is cut off.
* ``idle_timeout``: each connection runs inside an :class:`~triosock.IdleTimer` whose
  deadline moves forward whenever data arrives. When it fires, the handler's
  :meth:`TCPConnection.stop_scope` is cancelled (if it made one) and
  :attr:`TCPConnection.idle_expired` turns true, so the handler can say goodbye; the
  handler itself is cancelled ``grace_period`` seconds later (at once without a stop
  scope), and the connection closed.
* Stop (cancel ``serve_tcp``'s task, or call :meth:`TCPServer.stop`): (1) the listeners
  close; (2) every connection's :meth:`TCPConnection.stop_scope` is cancelled and
  :attr:`TCPConnection.stopping` becomes true, so handlers can say goodbye and half-close;
  (3) handlers still running after ``grace_period`` seconds are cancelled and their
  connections closed. ``serve_tcp`` returns (or raises ``Cancelled``) when every
  connection task has ended, so no task outlives it.
* Accept errors that mean overload (EMFILE, ENFILE, ENOBUFS, ENOMEM) are retried every
  0.1 s, the connection waiting in the backlog; the log gets one line when such an
  episode begins (``accept() failed (24: Too many open files)``, as nginx says it) and
  one when accepts work again, with how many failed and for how long (see
  :class:`~triosock._transport.rawsocket.AcceptTrouble`). Binding errors become
  :class:`~triosock.BindError`.
* ``max_per_address``: the most connections one source (an IPv4 address, an IPv6 /64)
  may hold at once, so that one host cannot take every slot (see
  :mod:`~triosock._transport.peraddress`: this machine's own addresses are exempt by
  default). A connection past it is accepted, sent ``per_address_refusal`` if the
  socket takes it at once (a line that says why, in the service's protocol), and
  closed; its handler never runs. Counted in ``refused_per_address``; the log gets one
  line when a source's refusals begin, none again until it is under its limit.
* ``ssl_context``: TLS. Each connection's handshake runs in its own task before its
  handler, within ``handshake_timeout`` seconds (10 by default; see
  :mod:`~triosock._transport.tls`): a client that does not finish it in time, or that
  is not speaking TLS, is closed with one line at DEBUG and its handler never runs
  (counted in ``tls_handshakes_failed``).
* :meth:`TCPConnection.reset_on_close`: a peer given up for not reading is closed with a
  reset, which frees what the kernel still holds for it (nginx's
  ``reset_timedout_connection``); every other close is graceful.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import final

import trio

from .._errors import TriosockError
from .._liveness import IdleTimer
from .._sansio.addresses import format_address
from ._lifecycle import (
    ConnectionStatistics,
    ListeningServer,
    NoPublicConstructor,
    binding,
    check_grace,
    check_port,
    check_timeout,
    run_server,
)
from .peraddress import LOCAL_ADDRESSES, PerAddress, check_per_address
from .rawsocket import AcceptTrouble, RawSocketListener, RawSocketStream
from .tcp_client import open_tcp_channel, open_tcp_stream
from .tls import DEFAULT_HANDSHAKE_TIMEOUT, ServerTLS

__all__ = [
    "TCPConnection",
    "TCPServer",
    "TCPServerStatistics",
    "open_listeners",
    "open_tcp_channel",
    "open_tcp_stream",
    "serve_tcp",
]

LOGGER = logging.getLogger("triosock.tcp")

#: How long closing one connection may take (a TLS close_notify to a stuck peer).
_CLOSE_TIMEOUT = 1.0

Handler = Callable[["TCPConnection"], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class TCPServerStatistics(ConnectionStatistics):
    """A snapshot of a TCP server's connections: :class:`ConnectionStatistics`' figures,
    and:

    Attributes:
      idle_timeouts: connections closed by the idle timeout.
    """

    idle_timeouts: int


@final
class TCPServer(ListeningServer, metaclass=NoPublicConstructor):
    """What ``await nursery.start(serve_tcp, ...)`` returns: where it listens, and a stop.

    Made by :func:`serve_tcp` (and :func:`~triosock.serve_http`), not by users.
    """

    def __init__(
        self,
        listeners: list[trio.SocketListener],
        *,
        grace_period: float,
        idle_timeout: float | None,
    ) -> None:
        super().__init__(listeners, grace_period=grace_period, logger=LOGGER)
        self.idle_timeout = idle_timeout
        self._no_idle = IdleTimer(None)  # what connections share when there is no timeout
        self._open = 0
        self._total = 0
        self._idle_timeouts = 0
        self._per_address = PerAddress(None)
        self._per_address_refusal = b""
        self._tls: ServerTLS | None = None

    def statistics(self) -> TCPServerStatistics:
        """A snapshot of the server's connections."""
        return TCPServerStatistics(
            open_connections=self._open,
            total_connections=self._total,
            idle_timeouts=self._idle_timeouts,
            handler_errors=self._handler_errors,
            stopping=self.stopping,
            refused_per_address=self._per_address.refused,
            tls_handshakes_failed=0 if self._tls is None else self._tls.failed,
        )


@final
class TCPConnection(trio.abc.HalfCloseableStream, metaclass=NoPublicConstructor):
    """One accepted connection: a byte stream that knows its server.

    Every method of ``trio.abc.HalfCloseableStream`` is delegated to the accepted stream
    (a :class:`~triosock._transport.rawsocket.RawSocketStream`, or a ``trio.SSLStream``
    over one when the server does TLS: its handshake is done by then). Data received
    pushes the connection's idle deadline forward (the socket stream underneath reports
    it, so TLS records that carry no data count as life too). Made by the server for its
    handler, not by users.
    """

    __slots__ = ("_idle", "_raw", "_server", "_stream", "remote_address")

    def __init__(
        self,
        stream: trio.abc.Stream,
        server: TCPServer,
        idle: IdleTimer,
        remote_address: object = None,
    ) -> None:
        self._stream = stream
        self._raw = stream if isinstance(stream, RawSocketStream) else None
        self._server = server
        self._idle = idle
        self.remote_address = remote_address

    @property
    def stream(self) -> trio.abc.Stream:
        """The stream underneath (``SocketStream`` or ``SSLStream``)."""
        return self._stream

    @property
    def server(self) -> TCPServer:
        """The server that accepted this connection."""
        return self._server

    @property
    def direct_stream(self) -> trio.abc.Stream:
        """The stream whose ``receive_some`` and ``send_all`` this connection's are.

        The same as :attr:`stream`: the connection adds nothing to either call (the idle
        timer hears of received data from the socket stream itself), so code that calls
        them in a loop, like :class:`~triosock.FramedChannel`, may call the inner stream's
        directly and save a call layer.
        """
        return self._stream

    def touch(self) -> None:
        """Count this as life from the peer: push the idle deadline forward."""
        self._idle.touch()

    @property
    def idle_expired(self) -> bool:
        """True once the server's ``idle_timeout`` fired for this connection: its stop
        scope was cancelled, or its handler is being cancelled (a ``finally`` block can
        tell why)."""
        return self._idle.expired

    def hold_idle(self) -> contextlib.AbstractContextManager[None]:
        """Stop the idle clock for the body (the server, not the peer, is waiting: a rate
        limit, a full queue); it restarts from the end of the block."""
        return self._idle.held()

    @property
    def peer(self) -> str:
        """The remote address as text, ``host:port``."""
        return format_address(self.remote_address)

    # -- stopping ----------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once the server has begun to stop."""
        return self._server.stopping

    async def wait_stopping(self) -> None:
        """Return when the server begins to stop."""
        await self._server.wait_stopping()

    def stop_scope(self) -> trio.CancelScope:
        """A cancel scope cancelled when the server begins to stop, or when the
        connection has been idle for the server's ``idle_timeout``.

        Put the handler's receive loop inside it; the code after it (a goodbye, a
        half-close) still runs, for at most the server's ``grace_period``, after which
        the handler is cancelled. :attr:`stopping` and :attr:`idle_expired` say why::

            with conn.stop_scope():
                async for data in conn:
                    ...
            if conn.stopping:
                await conn.send_all(b"server going down\n")
            elif conn.idle_expired:
                await conn.send_all(b"closing: you were idle too long\n")

        With an idle timeout, the connection owns the scope's deadline (for a deadline
        of your own, nest a scope of your own). The last stop scope made is the one the
        idle timeout cancels. Without a stop scope, an idle timeout cancels the handler
        at once.
        """
        scope = self._server.stop_scope()
        self._idle.warn(scope)  # nothing to do without an idle timeout
        return scope

    # -- the stream --------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._stream.receive_some(max_bytes)

    async def __anext__(self) -> bytes | bytearray:
        # trio's, minus the call through receive_some: a frame less per waiting connection
        data = await self._stream.receive_some()
        if not data:
            raise StopAsyncIteration
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """Write what the kernel takes now, without waiting; see ``RawSocketStream``.

        Raises:
          trio.WouldBlock: this connection cannot write without waiting (TLS); check
            :attr:`can_try_send` first.
        """
        if self._raw is None:
            raise trio.WouldBlock("a TLS stream cannot write without waiting")
        return self._raw.try_send(data)

    @property
    def can_try_send(self) -> bool:
        """True when :meth:`try_send` works here (a plain TCP connection, not TLS)."""
        return self._raw is not None

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Half-close. Raises :class:`~triosock.TriosockError` over TLS, which cannot."""
        if not isinstance(self._stream, trio.abc.HalfCloseableStream):
            raise TriosockError(f"{type(self._stream).__name__} cannot half-close")
        await self._stream.send_eof()

    def reset_on_close(self) -> None:
        """Close this connection with a reset (``SO_LINGER`` {1, 0}) if the kernel still
        holds bytes the peer has not acknowledged: for a peer given up for not reading,
        whose unread bytes would otherwise pin kernel memory until it closes (see
        :meth:`~triosock._transport.rawsocket.RawSocketStream.reset_on_close`). Under TLS
        the close_notify is still attempted first (bounded). Not a checkpoint."""
        stream = self._stream
        if isinstance(stream, trio.SSLStream):
            stream = stream.transport_stream
        if isinstance(stream, RawSocketStream):
            stream.reset_on_close()

    async def aclose(self) -> None:
        await self._stream.aclose()


class _LimitedListener(trio.abc.Listener[trio.abc.Stream]):
    """Takes a connection slot before each accept, so a full server accepts nothing."""

    def __init__(self, inner: trio.abc.Listener[trio.abc.Stream], slots: trio.Semaphore) -> None:
        self._inner = inner
        self._slots = slots

    async def accept(self) -> trio.abc.Stream:
        await self._slots.acquire()
        try:
            return await self._inner.accept()
        except BaseException:
            self._slots.release()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


async def open_listeners(
    port: int, host: str | None, backlog: int | None = None, *, reuse_port: bool = False
) -> list[trio.SocketListener]:
    """``trio.open_tcp_listeners``, or with ``reuse_port`` the same sockets made with
    ``SO_REUSEPORT`` (which trio's function does not set)."""
    if not reuse_port:
        return await trio.open_tcp_listeners(port, host=host or None, backlog=backlog)
    infos = await trio.socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    listeners: list[trio.SocketListener] = []
    try:
        for family, type_, proto, _, sockaddr in dict.fromkeys(
            (i[0], i[1], i[2], "", i[4]) for i in infos
        ):
            sock = trio.socket.socket(family, type_, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                await sock.bind(sockaddr)
                sock.listen(backlog if backlog is not None else 0xFFFF)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    return listeners


async def serve_tcp(
    handler: Handler,
    port: int,
    *,
    host: str | None = "127.0.0.1",
    backlog: int | None = None,
    max_connections: int | None = None,
    max_per_address: int | None = None,
    per_address_exempt: Collection[str] = LOCAL_ADDRESSES,
    per_address_refusal: bytes = b"",
    idle_timeout: float | None = None,
    grace_period: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[TCPServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` on a TCP port, one task per connection, until stopped.

    Args:
      handler: ``async def handler(conn: TCPConnection)``; the connection is closed when
        it returns.
      port: the port to bind; 0 picks a free one (read it from the returned server).
      host: the address to bind; loopback by default. ``None`` or ``""`` binds every
        interface.
      backlog: the listen backlog (trio's default when None).
      max_connections: how many connections are served at once; see the module notes
        for what the next one gets. None: no limit.
      max_per_address: the most connections one source may hold at once (None: no
        limit); see the module notes for what the next one gets.
      per_address_exempt: addresses (as sockets report them) without that limit.
      per_address_refusal: what a connection refused for that limit is sent before it
        is closed (nothing by default).
      idle_timeout: seconds without received data before a connection is closed.
      grace_period: seconds handlers get to finish after the stop begins.
      ssl_context: serve TLS with this server context (its certificate loaded).
      handshake_timeout: seconds a connection's TLS handshake may take before it is
        closed (:data:`~triosock._transport.tls.DEFAULT_HANDSHAKE_TIMEOUT`, 10; None:
        no deadline); see the module notes.
      reuse_port: let several processes listen on the same port (``SO_REUSEPORT``): the
        kernel spreads new connections over them (``--workers``).
      task_status: ``nursery.start`` receives the :class:`TCPServer` once listening.

    Raises:
      BindError: the address could not be bound (in use, not local, unknown host).
    """
    check_port(port)
    check_timeout("idle_timeout", idle_timeout)
    check_grace(grace_period)
    check_timeout("handshake_timeout", handshake_timeout)
    if max_connections is not None and max_connections < 1:
        raise ValueError(f"max_connections must be at least 1, not {max_connections}")
    check_per_address("max_per_address", max_per_address)
    with binding(host, port):
        listeners = await open_listeners(port, host, backlog, reuse_port=reuse_port)
    server = TCPServer._create(listeners, grace_period=grace_period, idle_timeout=idle_timeout)
    server._per_address = PerAddress(max_per_address, per_address_exempt)
    server._per_address_refusal = per_address_refusal
    trouble = AcceptTrouble(LOGGER)  # one episode for every listener of the server
    served: list[trio.abc.Listener[trio.abc.Stream]] = [
        RawSocketListener(lis, trouble) for lis in listeners
    ]
    if ssl_context is not None:
        # trio's SSLListener only wraps: the handshake is the connection task's.
        served = [trio.SSLListener(lis, ssl_context, https_compatible=False) for lis in served]
        server._tls = ServerTLS(ssl_context, handshake_timeout, server.stop_scope, LOGGER)
    if max_connections is not None:
        slots = trio.Semaphore(max_connections)
        served = [_LimitedListener(lis, slots) for lis in served]
    else:
        slots = None

    run_connection = functools.partial(_run_connection, handler, server, slots)

    async def accept(connections: trio.Nursery) -> None:
        # serve_listeners closes the listeners on its way out.
        await trio.serve_listeners(run_connection, served, handler_nursery=connections)

    await run_server(server, accept, task_status)


async def _run_connection(
    handler: Handler, server: TCPServer, slots: trio.Semaphore | None, stream: trio.abc.Stream
) -> None:
    remote: object = None
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if isinstance(inner, RawSocketStream | trio.SocketStream):
        try:
            remote = inner.socket.getpeername()
        except OSError:
            remote = None
    ip = str(remote[0]) if isinstance(remote, tuple) else None
    limit = server._per_address
    if ip is not None and limit.limit is not None:
        taken = limit.take(ip)
        if not taken:
            if taken is False:  # this source's first refusal since it was under
                LOGGER.warning(
                    "%s holds %d connections, the most one address may: refusing more "
                    "until one closes",
                    ip,
                    limit.limit,
                )
            await _refuse(stream, inner, server._per_address_refusal, slots)
            return
    try:
        tls = server._tls
        if (
            tls is None
            or not isinstance(stream, trio.SSLStream)
            or await tls.handshake(stream, format_address(remote))
        ):
            await _serve_connection(handler, server, stream, inner, remote)
        else:
            await trio.aclose_forcefully(stream)  # broken: no close_notify to send
    finally:
        if ip is not None and limit.limit is not None:
            limit.uncount(ip)
        if slots is not None:
            slots.release()


async def _refuse(
    stream: trio.abc.Stream,
    inner: trio.abc.Stream,
    refusal: bytes,
    slots: trio.Semaphore | None,
) -> None:
    """Close a connection its handler will not see: ``refusal`` first if the socket takes
    it at once (never over TLS, which would need a handshake first)."""
    try:
        if refusal and stream is inner and isinstance(inner, RawSocketStream):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                inner.try_send(refusal)
        with trio.move_on_after(_CLOSE_TIMEOUT) as close_scope:
            close_scope.shield = True
            await stream.aclose()
    finally:
        if slots is not None:
            slots.release()


async def _serve_connection(
    handler: Handler,
    server: TCPServer,
    stream: trio.abc.Stream,
    inner: trio.abc.Stream,
    remote: object,
) -> None:
    server._open += 1
    server._total += 1
    if server.idle_timeout is None:
        idle = server._no_idle  # never entered, never fires: one for all connections
    else:
        idle = IdleTimer(server.idle_timeout, grace=server.grace_period)
        if isinstance(inner, RawSocketStream):
            inner.on_receive = idle.touch
    conn = TCPConnection._create(stream, server, idle, remote)
    verbose = LOGGER.isEnabledFor(logging.DEBUG)
    if verbose:
        LOGGER.debug("%s connected (%d open)", conn.peer, server._open)
        began = trio.current_time()
    try:
        # Without a timeout, no scope to enter: a cancel status is ~400 bytes a connection.
        with idle.scope if server.idle_timeout is not None else contextlib.nullcontext():
            try:
                await handler(conn)
            except Exception as exc:
                server._handler_failed(exc, f"connection {conn.peer}")
        if idle.expired:
            server._idle_timeouts += 1
            LOGGER.info("closing %s after %g s idle", conn.peer, idle.timeout)
    finally:
        try:
            with trio.move_on_after(_CLOSE_TIMEOUT) as close_scope:
                close_scope.shield = True
                await stream.aclose()
        finally:  # the slot frees once the socket is closed (see _run_connection)
            server._open -= 1
            if verbose:
                LOGGER.debug("%s disconnected after %.1f s", conn.peer, trio.current_time() - began)
