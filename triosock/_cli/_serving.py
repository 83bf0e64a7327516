"""Running a serve command: as one process, or as its workers' supervisor.

:func:`run_serve` takes the command's settings record and runs it to its end: it sets
up the log, then either supervises ``--workers`` processes (:mod:`._supervisor`) or
has the record build its service and serve here. A service's ``serve`` starts its
listeners through :func:`run_servers`, which prints where each listens, starts the
status port, and serves until a stop signal.

Stopping: SIGINT, SIGTERM or SIGHUP (a closed terminal: a server started by hand stops
the same way) stop every server gracefully and the process exits 0. A second one during
that stop ends the process at once with status 130.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence

import trio

from .._sansio.addresses import format_address
from .._transport.tcp import TCPServer
from .._transport.udp import UDPServer
from ._console import STOP_SIGNALS, configure_logging, say, stop_at_second_signal
from ._serve_settings import Served
from ._status_serve import Status, start_status
from ._supervisor import supervise
from ._workerenv import worker_index

__all__ = ["ServerStarter", "run_serve", "run_servers", "tcp_line", "udp_line"]

LOGGER = logging.getLogger("triosock.serve")

#: Starts one server in the nursery and returns the line that says where it listens.
ServerStarter = Callable[[trio.Nursery], Awaitable[str]]


async def run_serve(settings: Served) -> None:
    """Run the serve command ``settings`` until a stop signal (see the module notes).

    Raises:
      TriosockError: what the user can cause: a port in use, a Redis not there...
    """
    common = settings.common
    worker = worker_index()
    configure_logging(common.log_level, worker)
    if common.workers > 1:
        async with contextlib.AsyncExitStack() as stack:
            await supervise(await settings.prepare(stack))
        return
    status = Status(common.service, common.status, given=common.status_given, prog=common.prog)
    await settings.serve(status)


async def run_servers(starters: Sequence[ServerStarter], status: Status) -> None:
    """Start every server and the status port, print where each listens, and serve
    until a stop signal (see the module notes).

    Args:
      starters: each starts one server in the nursery and returns a line describing it.
      status: the process's figures, and where to serve them.
    """
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as guard:
            async with trio.open_nursery() as nursery:
                for start in starters:
                    say(await start(nursery))
                line = await start_status(nursery, status)
                if line is not None:
                    say(line)
                async for signum in signals:
                    _said_stop(signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()  # every server's graceful stop
                    guard.start_soon(stop_at_second_signal, signals)
                    break
            guard.cancel_scope.cancel()  # the stop is over: no more waiting for signals


def _said_stop(name: str) -> None:
    if worker_index() is None:
        say(f"{name} received, shutting down")
    else:  # the supervisor that sent it has said so, once for every worker
        LOGGER.debug("%s received, shutting down", name)


def tcp_line(name: str, server: TCPServer, note: str = "") -> str:
    """The startup line for a TCP server (tests and scripts read the port from it);
    ``note`` follows the address in brackets (``TLS``, ``plaintext``)."""
    where = ", ".join(format_address(a) for a in server.addresses)
    return f"{name} (tcp) listening on {where}" + (f" ({note})" if note else "")


def udp_line(name: str, server: UDPServer) -> str:
    """The startup line for a UDP server."""
    return f"{name} (udp) listening on {format_address(server.address)}"
