"""The status port of a server process: its figures as JSON, on ``GET /status``.

A server started from the command line also listens on a status port (loopback by
default; ``--status none`` turns it off). With ``--workers N`` the supervisor holds the
status port and answers every worker's figures and their sum (:mod:`._status_sum`);
each worker has one of its own on a free loopback port, which only the supervisor
knows. ``python -m triosock SERVICE status`` reads them (:mod:`._status_ask`).

Only for its own ``Host`` (an IP address, ``localhost``, or the host it was bound to): any
other name gets ``421 Misdirected Request`` and no figures, so that a page on a name
pointed at this machine (DNS rebinding) cannot read them. The same rule as the chat
page's (:mod:`triosock._sansio.http_rules`).

The JSON (documented in the README, "Status"):

* ``service``, ``version``, ``pid``, ``worker`` (its number, or null), ``started``
  (Unix time), ``uptime`` (seconds).
* ``listeners``: one object per listening socket with ``name``, ``transport`` (``tcp``,
  ``udp`` or ``web``) and ``address``; TCP and web listeners add ``connections`` (now)
  and ``connections_total``; UDP listeners add ``peers``, ``peers_total``,
  ``datagrams_in``, ``datagrams_out``, ``dropped`` (by the server: full queues, the peer
  limit, oversize), ``refused_source`` (by the loop rule), ``receive_buffer`` (bytes, as
  the kernel reports it) and
  ``kernel_drops`` (datagrams the kernel dropped on a full receive buffer before the
  server saw them; null where the system does not say); all add ``errors`` (handler
  failures).
* ``chat`` (chat only): ``users``, ``users_by_transport``, ``sessions_total``,
  ``rooms`` (name to users, as the directory knows them: every server's with
  ``--redis``), ``lines_in``, ``lines_out``, ``paced``, ``dropped``,
  ``disconnected_slow``.
* With workers: ``workers`` (each worker's object as above, or ``{"worker": I,
  "error": ...}`` for one that did not answer) and ``total`` (the sums), beside
  ``service``, ``version``, ``pid`` and ``uptime`` of the supervisor.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .. import __version__
from .._errors import BindError
from .._sansio.addresses import format_address
from .._sansio.http_rules import host_refusal_untrusted
from .._transport.http import Request, Response, serve_http
from .._transport.tcp import TCPServer
from .._transport.udp import UDPServer
from .._transport.websocket import WebSocketServer
from ._values import Address
from ._workerenv import worker_index

__all__ = ["AnyServer", "Figures", "Status", "start_status"]

Figures = dict[str, Any]
AnyServer = TCPServer | UDPServer | WebSocketServer
LOGGER = logging.getLogger("triosock.status")


class Status:
    """What one server process reports, and where.

    Args:
      service: the service's name, the JSON's ``service``.
      where: the status port's address (None: no status port).
      given: the user chose ``where``: when it is taken, that is an error; a default one
        that is taken (a second server of the same kind) is skipped with a warning.
      prog: how the program was called, for the start-up line's command.

    Attributes:
      extra: the service's own figures (the chat's), under the service's name.
    """

    def __init__(self, service: str, where: Address | None, *, given: bool, prog: str) -> None:
        self.service = service
        self.where = where
        self.given = given
        self.prog = prog
        self.started = time.time()
        self._clock = time.monotonic()
        self._listeners: list[tuple[str, str, AnyServer]] = []
        self.extra: Callable[[], Awaitable[Figures]] | None = None

    def add(self, name: str, transport: str, server: AnyServer) -> None:
        """Report ``server``'s figures as listener ``name`` over ``transport``."""
        self._listeners.append((name, transport, server))

    async def figures(self) -> Figures:
        """This process's figures, as the status port answers them."""
        result: Figures = {
            "service": self.service,
            "version": __version__,
            "pid": os.getpid(),
            "worker": worker_index(),
            "started": round(self.started, 3),
            "uptime": round(time.monotonic() - self._clock, 3),
            "listeners": [_listener(*entry) for entry in self._listeners],
        }
        if self.extra is not None:
            result[self.service] = await self.extra()
        else:
            await trio.lowlevel.checkpoint()
        return result


def _listener(name: str, transport: str, server: AnyServer) -> Figures:
    if isinstance(server, UDPServer):
        udp = server.statistics()
        return {
            "name": name,
            "transport": transport,
            "address": format_address(server.address),
            "peers": udp.peers,
            "peers_total": udp.peers_total,
            "datagrams_in": udp.datagrams_in,
            "datagrams_out": udp.datagrams_out,
            "dropped": udp.dropped,
            "expired": udp.expired,
            "refused_source": udp.refused_source,
            "errors": udp.handler_errors,
            "receive_buffer": server.receive_buffer,
            "kernel_drops": server.kernel_drops(),
        }
    figures: Figures = {
        "name": name,
        "transport": transport,
        "address": format_address(server.addresses[0]),
    }
    if isinstance(server, WebSocketServer):
        ws = server.statistics()
        figures.update(
            connections=ws.open_connections,
            connections_total=ws.total_connections,
            errors=ws.handler_errors,
        )
    else:
        tcp = server.statistics()
        figures.update(
            connections=tcp.open_connections,
            connections_total=tcp.total_connections,
            idle_timeouts=tcp.idle_timeouts,
            errors=tcp.handler_errors,
        )
    return figures


def _handler(
    figures: Callable[[], Awaitable[Figures]], bound: str
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        hosts = [value for name, value in request.headers if name == "host"]
        misdirected = host_refusal_untrusted(hosts, bound)
        if misdirected is not None:
            await trio.lowlevel.checkpoint()
            LOGGER.info("status: refused %s: %s", request.client, misdirected)
            return Response.text(421, "not this server's host\n")
        if request.path not in ("/status", "/status.json"):
            await trio.lowlevel.checkpoint()
            return Response.text(404, "only /status here\n")
        if request.method not in ("GET", "HEAD"):
            await trio.lowlevel.checkpoint()
            return Response(405, [("allow", "GET, HEAD")])
        body = json.dumps(await figures(), indent=1).encode() + b"\n"
        return Response(200, [("content-type", "application/json")], body)

    return handle


async def start_status(
    nursery: trio.Nursery,
    status: Status,
    figures: Callable[[], Awaitable[Figures]] | None = None,
) -> str | None:
    """Start ``status``'s listener in ``nursery``, answering ``figures()`` (by default
    ``status.figures()``); the start-up line to print (or a warning's), or None when
    there is no status port.

    Raises:
      BindError: the address the user gave cannot be bound.
    """
    if status.where is None:
        await trio.lowlevel.checkpoint()
        return None
    host, port = status.where
    try:
        server: TCPServer = await nursery.start(
            lambda task_status: serve_http(
                _handler(figures or status.figures, host),
                port,
                host=host,
                max_connections=16,
                grace_period=0.5,
                task_status=task_status,
            )
        )
    except BindError as exc:
        if status.given:
            raise
        return f"no status port: {exc} (another {status.service} server? give --status HOST:PORT)"
    address = format_address(server.addresses[0])
    return f"status (http) listening on {address}: {status.prog} {status.service} status {address}"
