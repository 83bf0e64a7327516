"""WebSocket servers on websockets' trio implementation, in the ``serve_*`` shape.

websockets (>= 17.0.1, < 18) does the protocol: the opening handshake, framing, ping/pong
keepalive, ``max_size`` (a bigger message closes with 1009), UTF-8 checks (1007), the
closing handshake. triosock adds what its other servers have:

* ``handler(peer)`` runs per connection in its own task; ``peer`` is a
  :class:`WebSocketPeer` with the same stop scope and ``stopping`` flag as a
  ``TCPConnection``. A handler's exception is logged and closes that connection only.
* ``Origin`` is checked: by default only the server's own origin
  (``http://HOST:PORT``, with the bound port) and clients that send no ``Origin`` (not
  browsers) are accepted, so a page elsewhere cannot drive a user's browser into the
  server. ``origins=`` widens it (websockets' own rule: strings or regex patterns).
* Stop: the listeners close, every stop scope is cancelled so handlers can say goodbye,
  and after ``grace_period`` the connections still open are closed with 1001 (going away).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.server import ServerConnection, serve
from websockets.typing import Origin

from .._errors import BindError, describe_oserror
from .._sansio.addresses import format_address
from ._lifecycle import ListeningServer
from .tcp import _check_port, connection_ended

__all__ = ["WebSocketPeer", "WebSocketServer", "serve_websocket"]

LOGGER = logging.getLogger("triosock.websocket")

Handler = Callable[["WebSocketPeer"], Awaitable[object]]

#: How long the closing handshakes of a stop may take, after the grace period.
_CLOSE_TIMEOUT = 2.0


class WebSocketServer(ListeningServer):
    """What ``await nursery.start(serve_websocket, ...)`` returns."""

    def __init__(self, listeners: list[trio.SocketListener], *, grace_period: float) -> None:
        super().__init__(listeners, grace_period=grace_period)
        self.handler_errors = 0


class WebSocketPeer:
    """One WebSocket connection: websockets' ``ServerConnection`` and the server's stop.

    ``connection`` is websockets' own object (``recv``, ``send``, ``aclose(code, reason)``,
    ``request``); the rest is what every triosock handler gets.
    """

    __slots__ = ("connection", "server")

    def __init__(self, connection: ServerConnection, server: WebSocketServer) -> None:
        self.connection = connection
        self.server = server

    @property
    def peer(self) -> str:
        return format_address(self.connection.remote_address)

    @property
    def path(self) -> str:
        request = self.connection.request
        return request.path if request is not None else ""

    @property
    def stopping(self) -> bool:
        return self.server.stopping

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
    process_request: Any = None,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` to WebSocket clients on a TCP port until stopped.

    Args:
      handler: ``async def handler(peer: WebSocketPeer)``.
      port, host, grace_period, task_status: as for :func:`~triosock.serve_tcp`.
      origins: the ``Origin`` values accepted; None: the server's own origin, and
        clients that send none.
      max_size: the largest message accepted, in bytes (a bigger one closes with 1009).
      ping_interval, ping_timeout: websockets' keepalive, in seconds (None: off).
      process_request: websockets' hook to answer plain HTTP (serve a page) or refuse.

    Raises:
      BindError: the address could not be bound.
    """
    _check_port(port)
    try:
        listeners = await trio.open_tcp_listeners(port, host=host or None)
    except OSError as exc:
        where = format_address((host or "*", port))
        raise BindError(f"cannot listen on {where}: {describe_oserror(exc)}") from exc
    server = WebSocketServer(listeners, grace_period=grace_period)
    if origins is None:
        shown = f"[{host}]" if ":" in host else host
        origins = [Origin(f"http://{shown}:{server.port}"), None]

    async def run(connection: ServerConnection) -> None:
        peer = WebSocketPeer(connection, server)
        try:
            await handler(peer)
        except ConnectionClosed:
            pass  # the client left or broke the protocol: websockets has closed it
        except Exception as exc:
            if connection_ended(exc):
                LOGGER.debug("websocket %s ended: %r", peer.peer, exc)
            else:
                server.handler_errors += 1
                LOGGER.exception("handler failed on websocket %s; closing it", peer.peer)

    shield = trio.CancelScope(shield=True)

    async def run_server(task_status: trio.TaskStatus[Any]) -> None:
        # Outside cancellation must not cancel websockets' server under its handlers:
        # the graceful stop below ends it.
        with shield:
            await serve(
                run,
                listeners=listeners,
                origins=origins,
                max_size=max_size,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                process_request=process_request,
                task_status=task_status,
            )

    async with trio.open_nursery() as nursery:
        ws_server = await nursery.start(run_server)
        task_status.started(server)
        try:
            await server._stop_requested.wait()
        finally:
            with trio.CancelScope(shield=True):
                await _stop(server, ws_server, grace_period)
            shield.cancel()  # whatever is left (a client that never closes)


async def _stop(server: WebSocketServer, ws_server: Any, grace_period: float) -> None:
    """Stop scopes first (goodbyes), then no new connections, then 1001 after the grace."""
    server._begin_stop()
    async with trio.open_nursery() as closing:
        # no more connections (an opening handshake gets 503); wait for the handlers
        closing.start_soon(ws_server.aclose, False)
        with trio.move_on_after(grace_period):
            await ws_server.handlers_waiter.wait()
        for connection in list(ws_server.all_connections):  # the grace is over
            closing.start_soon(connection.aclose, 1001, "server stopping")
        with trio.move_on_after(_CLOSE_TIMEOUT):
            await ws_server.handlers_waiter.wait()
        closing.cancel_scope.cancel()
