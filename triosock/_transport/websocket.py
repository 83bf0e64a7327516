"""WebSocket servers on websockets' trio implementation, in the ``serve_*`` shape.

websockets (>= 17.0.1, < 18) does the protocol: the opening handshake, framing, ping/pong
keepalive, ``max_size`` (a bigger message closes with 1009), UTF-8 checks (1007), the
closing handshake. triosock adds what its other servers have:

* ``handler(peer)`` runs per connection in its own task; ``peer`` is a
  :class:`WebSocketPeer` with the same stop scope and ``stopping`` flag as a
  ``TCPConnection``. A handler's exception is logged and closes that connection only.
* ``Origin`` is checked, so that a page elsewhere cannot drive a user's browser into the
  server. By default a handshake is accepted when it has no ``Origin`` (not a browser),
  or when its ``Origin`` is the page's own: ``http://`` or ``https://`` (the page on a
  TLS server, or behind a proxy that speaks TLS for it) and the request's ``Host``,
  where that host is an IP address, ``localhost``, or the host the server was told to
  bind (a DNS name that only resolves to the server, as in a DNS rebinding attack, is
  not enough). Refused handshakes get 403. ``origins=`` replaces the rule
  with websockets' own: a list of accepted values (strings, regex patterns, None for
  none sent).
* A client has :data:`OPEN_TIMEOUT` seconds (10) to finish its opening handshake, plus up
  to :data:`OPEN_TIMEOUT_JITTER` (2) at random: a thousand connections opened together
  (a slowloris attack) then time out over two seconds, not all in one scheduler pass.
* Keepalive: websockets' pings (every ``ping_interval``; 1011 when no pong comes within
  ``ping_timeout``), except that time the server is not reading the client does not
  count against it: a handler held back by a rate limit leaves messages queued, so
  websockets stops reading, and the client's pong waits behind them. A window in which
  a frame of the client's arrived, or its reading was paused, starts another; a client
  that sends nothing and answers nothing is closed as before.
* ``ssl_context``: TLS (``wss://``, and ``https://`` for what ``process_request``
  answers). Each connection's TLS handshake is done by its first read, in its own task,
  within ``handshake_timeout`` seconds (10 by default; see
  :mod:`~triosock._transport.tls`); a client that fails it is closed with one line at
  DEBUG, and counted in ``tls_handshakes_failed``. The opening handshake's own deadline
  (above) covers the TLS handshake too.
* ``max_per_address``: the most connections one source may hold at once (see
  :mod:`~triosock._transport.peraddress`); a connection past it is answered
  ``429 Too Many Requests`` instead of its handshake, and closed.
* Stop: the listeners close, every stop scope is cancelled so handlers can say goodbye,
  and after ``grace_period`` the connections still open are closed with 1001 (going away).
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import re
import ssl
import traceback
import urllib.parse
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast, final

import trio
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.trio.server import Server, ServerConnection, serve
from websockets.typing import Origin

from .._sansio.addresses import format_address
from .._sansio.http_rules import is_own_host
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
from .outbox import Outbox
from .peraddress import LOCAL_ADDRESSES, PerAddress, check_per_address
from .tcp import open_listeners
from .tls import DEFAULT_HANDSHAKE_TIMEOUT, ServerTLS
from .websocket_stream import WebSocketListener, WebSocketStream

__all__ = [
    "WebSocketPeer",
    "WebSocketServer",
    "WebSocketServerStatistics",
    "WebSocketStream",
    "serve_websocket",
    "text_frame",
]

LOGGER = logging.getLogger("triosock.websocket")

Handler = Callable[["WebSocketPeer"], Awaitable[object]]


class _QuietKeepalive(logging.Filter):
    """Drop websockets' traceback for a keepalive ping to a peer that is gone: the
    session's own ``left`` line says so (websockets' trio keepalive logs it as an error)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "keepalive ping failed" and record.exc_info:
            return not isinstance(record.exc_info[1], ConnectionClosed)
        return True


#: websockets' own log lines (a line per connection at INFO) go here, from WARNING up.
_PROTOCOL_LOGGER = logging.getLogger("triosock.websocket.protocol")
_PROTOCOL_LOGGER.setLevel(logging.WARNING)
_PROTOCOL_LOGGER.addFilter(_QuietKeepalive())

#: How long the closing handshakes of a stop may take, after the grace period.
_CLOSE_TIMEOUT = 2.0
#: Seconds a client has to finish its opening handshake, and the most added at random.
OPEN_TIMEOUT = 10.0
OPEN_TIMEOUT_JITTER = 2.0


@dataclass(frozen=True, slots=True)
class WebSocketServerStatistics(ConnectionStatistics):
    """A snapshot of a WebSocket server's connections (the figures of
    :class:`ConnectionStatistics`; a connection counts once its handshake is done)."""


@final
class WebSocketServer(ListeningServer, metaclass=NoPublicConstructor):
    """What ``await nursery.start(serve_websocket, ...)`` returns. Made by
    :func:`serve_websocket`, not by users."""

    def __init__(
        self,
        listeners: list[trio.SocketListener],
        *,
        grace_period: float,
        run_websockets: Callable[[trio.TaskStatus[Server]], Awaitable[object]],
        per_address: PerAddress,
    ) -> None:
        super().__init__(listeners, grace_period=grace_period, logger=LOGGER)
        self._run_websockets = run_websockets
        self._open = 0
        self._total = 0
        self._per_address = per_address
        self._tls: ServerTLS | None = None

    async def _host_tasks(
        self, *, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """websockets' own server runs the connections' tasks: run it, shielded from
        outside cancellation, until the stop; then stop it gracefully (see :func:`_stop`)."""
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                ws_server: Server = await nursery.start(self._run_websockets)
                task_status.started(nursery)
                await self._stop_requested.wait()
                await _stop(self, ws_server)
                nursery.cancel_scope.cancel()  # whatever is left (a client that never closes)

    def statistics(self) -> WebSocketServerStatistics:
        """A snapshot of the server's connections."""
        return WebSocketServerStatistics(
            open_connections=self._open,
            total_connections=self._total,
            handler_errors=self._handler_errors,
            stopping=self.stopping,
            refused_per_address=self._per_address.refused,
            tls_handshakes_failed=0 if self._tls is None else self._tls.failed,
        )


class _ServerConnection(ServerConnection):
    """websockets' server connection, which tells its :class:`WebSocketStream` the
    protocol before anything is read or written (the stream looks at its state), and
    whose keepalive does not count against the client the time its frames wait for us
    (see :meth:`keepalive`)."""

    def __init__(
        self,
        nursery: trio.Nursery,
        stream: trio.abc.Stream,
        protocol: ServerProtocol,
        server: Server,
        **options: Any,
    ) -> None:
        assert isinstance(stream, WebSocketStream)
        stream.protocol = protocol
        #: Frames received from the client so far (any frame is a sign of life).
        self.frames_received = 0
        super().__init__(nursery, stream, protocol, server, **options)

    def process_event(self, event: Any) -> None:
        self.frames_received += 1
        super().process_event(event)

    async def keepalive(self) -> None:
        """websockets' keepalive (a ping every ``ping_interval``; no pong within
        ``ping_timeout``: closed with 1011 "keepalive ping timeout"), except that a
        client is not found dead while we are the ones not reading it.

        A client held back by its rate limit has more messages queued than its handler
        takes, so websockets stops reading its socket, and its pong waits unread behind
        its own messages. A wait for the pong therefore fails only after a whole
        ``ping_timeout`` in which no frame of the client's arrived and its reading was
        not paused; any other window of that length starts another. A client that is
        really gone sends nothing: once its queued messages are taken, its reading
        resumes, nothing comes, and the next window closes it. (IRC servers do the
        same: a flooding user's lines are delayed, its PINGs still answered.)
        """
        interval, timeout = self.ping_interval, self.ping_timeout
        assert interval is not None
        try:
            while True:
                with trio.move_on_after(interval - self.latency):
                    await self.stream_closed.wait()
                    break
                try:
                    pong = await self.ping(ack_on_close=True)
                except ConnectionClosed:
                    break
                if timeout is not None and not await self._answered(pong):
                    async with self.send_context():
                        self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                    break
        except Exception:
            self.logger.error("keepalive ping failed", exc_info=True)

    async def _answered(self, pong: trio.Event) -> bool:
        """Whether ``pong`` is set before a ``ping_timeout`` without the client's frames
        in which its reading was not paused either (see :meth:`keepalive`)."""
        timeout = self.ping_timeout
        assert timeout is not None
        while True:
            frames = self.frames_received
            with trio.move_on_after(timeout):
                await pong.wait()
                return True
            if self.frames_received == frames and self.recv_flow_control is None:
                return False

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        # websockets' own open_timeout is off: this one is spread (see the module doc).
        with trio.fail_after(OPEN_TIMEOUT + random.random() * OPEN_TIMEOUT_JITTER):
            try:
                await super().handshake(*args, **kwargs)
            except trio.Cancelled as exc:
                # websockets' race_events leaves the Cancelled in reference cycles (its
                # frames hold it, its traceback holds them): about 160 objects a timed-out
                # handshake, for one full collection to find later. 1,000 slowloris
                # connections made that one pause 450 ms. The frames are done with.
                traceback.clear_frames(exc.__traceback__)
                raise


def text_frame(payload: bytes) -> bytes:
    """A whole unmasked text frame carrying ``payload`` (UTF-8), as a server sends it
    without extensions: websockets' own serialisation. The same bytes for every
    connection of a server, so a fan-out makes it once for all."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


@final
class WebSocketPeer(metaclass=NoPublicConstructor):
    """One WebSocket connection: websockets' ``ServerConnection`` and the server's stop.

    ``connection`` is websockets' own object (``recv``, ``send``, ``aclose(code, reason)``,
    ``request``); the rest is what every triosock handler gets. Made by the server for
    its handler, not by users.
    """

    __slots__ = ("connection", "server")

    def __init__(self, connection: ServerConnection, server: WebSocketServer) -> None:
        self.connection = connection
        self.server = server

    @property
    def peer(self) -> str:
        """The client's address, ``host:port``. (websockets' ``remote_address`` knows
        only trio's own streams.)"""
        stream = self.connection.stream
        try:
            if isinstance(stream, WebSocketStream):
                return stream.peer or format_address(stream.socket.getpeername())
            return format_address(self.connection.remote_address)
        except OSError:
            return "(disconnected)"

    @property
    def path(self) -> str:
        """The path of the opening handshake's request (``/ws``)."""
        request = self.connection.request
        return request.path if request is not None else ""

    @property
    def stopping(self) -> bool:
        """True once the server has begun to stop."""
        return self.server.stopping

    @property
    def outbox(self) -> Outbox:
        """The connection's output queue (see :class:`WebSocketStream`): put whole frames
        made by :func:`text_frame` to send without waiting, as the chat's fan-out does.
        ``connection.send`` goes through it too."""
        stream = self.connection.stream
        assert isinstance(stream, WebSocketStream)
        return stream.outbox

    def stop_scope(self) -> trio.CancelScope:
        """A cancel scope the server cancels when it begins to stop."""
        return self.server.stop_scope()


async def serve_websocket(
    handler: Handler,
    port: int,
    *,
    host: str = "127.0.0.1",
    origins: Sequence[Origin | re.Pattern[str] | None] | None = None,
    max_size: int = 64 * 1024,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    grace_period: float = 5.0,
    max_connections: int | None = None,
    max_per_address: int | None = None,
    per_address_exempt: Collection[str] = LOCAL_ADDRESSES,
    reuse_port: bool = False,
    process_request: Any = None,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` to WebSocket clients on a TCP port until stopped.

    Args:
      handler: ``async def handler(peer: WebSocketPeer)``.
      port, host, grace_period, task_status: as for :func:`~triosock.serve_tcp`.
      origins: the ``Origin`` values accepted (strings, regex patterns; None in the list
        accepts clients that send none); None (the default): the page's own origin, and
        clients that send none (see the module docstring).
      max_size: the largest message accepted, in bytes (a bigger one closes with 1009).
      ping_interval, ping_timeout: websockets' keepalive, in seconds (None: off).
      max_connections: connections served at once; the next wait in the listen backlog
        (None: no limit).
      max_per_address, per_address_exempt: the most connections one source may hold
        at once (None: no limit), and the addresses without that limit, as for
        :func:`~triosock.serve_tcp`; a connection past it gets ``429 Too Many
        Requests`` instead of its handshake.
      reuse_port: as for :func:`~triosock.serve_tcp`.
      process_request: websockets' hook to answer plain HTTP (serve a page) or refuse:
        ``(connection, request) -> Response | None``, maybe async; None goes on with the
        handshake (and the ``Origin`` check).
      ssl_context: serve ``wss://`` (and ``https://``) with this server context.
      handshake_timeout: seconds a connection's TLS handshake may take
        (:data:`~triosock._transport.tls.DEFAULT_HANDSHAKE_TIMEOUT`, 10; None: no
        deadline of its own, the opening handshake's still holds).

    Raises:
      BindError: the address could not be bound.
    """
    check_port(port)
    check_grace(grace_period)
    check_timeout("ping_interval", ping_interval)
    check_timeout("ping_timeout", ping_timeout)
    check_timeout("handshake_timeout", handshake_timeout)
    if max_connections is not None and max_connections < 1:
        raise ValueError(f"max_connections must be at least 1, not {max_connections}")
    limiter = None if max_connections is None else trio.CapacityLimiter(max_connections)
    check_per_address("max_per_address", max_per_address)
    per_address = PerAddress(max_per_address, per_address_exempt)
    with binding(host, port):
        listeners = await open_listeners(port, host, reuse_port=reuse_port)
    tls = None
    if ssl_context is not None:
        tls = ServerTLS(ssl_context, handshake_timeout, lambda: server.stop_scope(), LOGGER)
    check = None
    if origins is None:
        check = functools.partial(_same_origin, bound=host.lower())
    answer = process_request

    async def on_request(connection: ServerConnection, request: Request) -> Response | None:
        stream = connection.stream
        if isinstance(stream, WebSocketStream) and stream.refused_per_address:
            return connection.respond(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"{max_per_address} connections from your address already (the most)\n",
            )
        if answer is not None:
            response = answer(connection, request)
            if inspect.isawaitable(response):
                response = await response
            if response is not None:
                return cast(Response, response)
        if check is not None and not check(request):
            origin = ", ".join(request.headers.get_all("Origin"))
            LOGGER.info("refused a WebSocket from %r: not this server's page", origin)
            return connection.respond(HTTPStatus.FORBIDDEN, "Origin not allowed\n")
        return None

    async def run(connection: ServerConnection) -> None:
        stream = connection.stream
        assert isinstance(stream, WebSocketStream)
        peer = WebSocketPeer._create(connection, server)
        server._open += 1
        server._total += 1
        LOGGER.debug("websocket %s connected (%d open)", peer.peer, server._open)
        stream.handler_started()  # from now on the client's frames reach websockets
        try:
            await handler(peer)
        except ConnectionClosed:
            pass  # the client left or broke the protocol: websockets has closed it
        except Exception as exc:
            server._handler_failed(exc, f"websocket {peer.peer}")
        finally:
            server._open -= 1
            LOGGER.debug("websocket %s disconnected", peer.peer)

    ws_listeners = [WebSocketListener(lis, limiter, per_address, tls) for lis in listeners]

    async def run_websockets(task_status: trio.TaskStatus[Server]) -> None:
        # (Started in the server's shielded host: only its graceful stop ends it.)
        await serve(
            run,
            # websockets asks for trio.SocketListener; it uses only accept, aclose
            # and socket, which ours have.
            listeners=cast(list[trio.SocketListener], ws_listeners),
            origins=origins,
            # No permessage-deflate: a fan-out's frames are the same bytes for every
            # connection, and deflate's state costs each connection ~100 KiB.
            compression=None,
            create_connection=_ServerConnection,
            open_timeout=None,  # _ServerConnection.handshake has its own
            logger=_PROTOCOL_LOGGER,
            max_size=max_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            process_request=on_request,
            task_status=task_status,
        )

    server = WebSocketServer._create(
        listeners,
        grace_period=grace_period,
        run_websockets=run_websockets,
        per_address=per_address,
    )
    server._tls = tls
    await run_server(server, _wait_for_the_stop, task_status)


async def _wait_for_the_stop(_: trio.Nursery) -> None:
    """A WebSocket server's intake: nothing to accept here (websockets' own server
    accepts, in the host), so it only waits until the stop cancels it."""
    await trio.sleep_forever()


def _same_origin(request: Request, *, bound: str) -> bool:
    """The default ``Origin`` rule (see the module docstring)."""
    origins = request.headers.get_all("Origin")
    if not origins:
        return True
    hosts = request.headers.get_all("Host")
    if len(origins) != 1 or len(hosts) != 1:
        return False
    origin, host = origins[0], hosts[0]
    if origin.lower() not in (f"http://{host}".lower(), f"https://{host}".lower()):
        return False
    return is_own_host(urllib.parse.urlsplit(origin).hostname or "", bound)


async def _stop(server: WebSocketServer, ws_server: Server) -> None:
    """Stop scopes first (goodbyes), then no new connections, then 1001 after the grace."""
    server._begin_stop()
    async with trio.open_nursery() as closing:
        # no more connections (an opening handshake gets 503); wait for the handlers
        closing.start_soon(ws_server.aclose, False)
        with trio.move_on_after(server.grace_period):
            await ws_server.handlers_waiter.wait()
        for connection in list(ws_server.all_connections):  # the grace is over
            closing.start_soon(connection.aclose, 1001, "server stopping")
        with trio.move_on_after(_CLOSE_TIMEOUT):
            await ws_server.handlers_waiter.wait()
        closing.cancel_scope.cancel()
