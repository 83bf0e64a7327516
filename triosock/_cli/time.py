"""``python -m triosock time serve|query|status``: the time services and a strftime
client."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from .._services.timeservice import (
    UDP_PEER_IDLE_TIMEOUT,
    daytime_tcp_handler,
    daytime_udp_handler,
    rfc868_tcp_handler,
    rfc868_udp_handler,
    sntp_udp_handler,
    strftime_tcp_handler,
    strftime_udp_handler,
)
from .._transport.tcp import TCPConnection, TCPServer, serve_tcp
from .._transport.udp import UDPPeer, UDPServer, open_udp_channel, serve_udp
from ._console import CLIError, UsageError
from ._parser import Parser, record
from ._ports import DAYTIME_PORT, RFC868_PORT, SNTP_PORT, STRFTIME_PORT, loop_rule
from ._run import Job
from ._serve_settings import PortSlot, ServeSettings, add_serve_options, serve_common
from ._serving import ServerStarter, run_serve, run_servers, tcp_line, udp_line
from ._status_ask import register_status
from ._status_serve import Status
from ._values import Address, address_help, parse_hostport, parse_port, positive
from ._workerenv import worker_index

STATUS_PORT = 7039

#: Seconds a strftime TCP connection may stay silent before it is closed (unless
#: --idle-timeout says otherwise).
STRFTIME_TCP_IDLE_TIMEOUT = 300.0

_OFF = ("none", "off")


def _port_or_none(text: str) -> int | None:
    """A port, or None for ``none``/``off`` (the service is not started)."""
    if text.lower() in _OFF:
        return None
    return parse_port(text)


TCPHandler = Callable[[TCPConnection], Awaitable[None]]
UDPHandler = Callable[[UDPPeer], Awaitable[None]]


@dataclass(frozen=True)
class TimeSettings(ServeSettings):
    """What ``time serve`` was asked for: a port per service (None: not served)."""

    host: str = "127.0.0.1"
    rfc868_port: int | None = RFC868_PORT
    daytime_port: int | None = DAYTIME_PORT
    sntp_port: int | None = SNTP_PORT
    strftime_port: int | None = STRFTIME_PORT

    def port_slots(self) -> list[PortSlot]:
        slots = [
            ("rfc868_port", self.rfc868_port, ("tcp", "udp")),
            ("daytime_port", self.daytime_port, ("tcp", "udp")),
            ("sntp_port", self.sntp_port, ("udp",)),
            ("strftime_port", self.strftime_port, ("tcp", "udp")),
        ]
        return [PortSlot(f, self.host, p, k, False) for f, p, k in slots if p is not None]

    async def serve(self, status: Status) -> None:
        tcp = functools.partial(self._tcp, status)
        # The loop rule of the services that answer every datagram. SNTP refuses only its
        # own port: it answers client requests (mode 3) alone, with server replies (mode
        # 4) that no NTP server answers, so it cannot loop; and ntpd sends its requests
        # from port 123, which ntpd and chronyd, as servers, answer too.
        udp = functools.partial(
            self._udp,
            status,
            rule=loop_rule(self.rfc868_port, self.daytime_port, self.sntp_port, self.strftime_port),
        )
        starters: list[ServerStarter] = []
        if self.rfc868_port is not None:
            starters.append(tcp("rfc868-time", rfc868_tcp_handler, self.rfc868_port))
            starters.append(udp("rfc868-time", rfc868_udp_handler, self.rfc868_port))
        if self.daytime_port is not None:
            starters.append(tcp("daytime", daytime_tcp_handler, self.daytime_port))
            starters.append(udp("daytime", daytime_udp_handler, self.daytime_port))
        if self.sntp_port is not None:
            starters.append(udp("sntp", sntp_udp_handler, self.sntp_port, rule=None))
        if self.strftime_port is not None:
            starters.append(udp("strftime", strftime_udp_handler, self.strftime_port))
            starters.append(
                tcp("strftime", strftime_tcp_handler, self.strftime_port, STRFTIME_TCP_IDLE_TIMEOUT)
            )
        await run_servers(starters, status)

    def _tcp(
        self, status: Status, name: str, handler: TCPHandler, port: int, idle: float | None = None
    ) -> ServerStarter:
        async def start(nursery: trio.Nursery) -> str:
            server: TCPServer = await nursery.start(
                functools.partial(
                    serve_tcp,
                    handler,
                    port,
                    host=self.host,
                    max_connections=self.common.max_connections,
                    idle_timeout=self.common.idle_or(idle),
                    grace_period=self.common.grace,
                    reuse_port=worker_index() is not None,
                )
            )
            status.add(name, "tcp", server)
            return tcp_line(name, server)

        return start

    def _udp(
        self,
        status: Status,
        name: str,
        handler: UDPHandler,
        port: int,
        *,
        rule: Callable[[tuple[str, int]], str | None] | None,
    ) -> ServerStarter:
        async def start(nursery: trio.Nursery) -> str:
            # Time clients ask once and go: forget them soon, and let a new address push
            # out the least recently active one rather than be refused.
            server: UDPServer = await nursery.start(
                functools.partial(
                    serve_udp,
                    handler,
                    port,
                    host=self.host,
                    when_full="evict",
                    peer_idle_timeout=UDP_PEER_IDLE_TIMEOUT,
                    grace_period=self.common.grace,
                    reuse_port=worker_index() is not None,
                    refuse_source=rule,
                )
            )
            status.add(name, "udp", server)
            return udp_line(name, server)

        return start


_IDLE_HELP = (
    "close a TCP connection that sends nothing this long (strftime: "
    f"{STRFTIME_TCP_IDLE_TIMEOUT:g}; the others answer and close at once)"
)


def _serve_job(args: argparse.Namespace) -> Job:
    settings = record(TimeSettings, args, common=serve_common(args, "time", STATUS_PORT))
    if not settings.port_slots():
        raise UsageError("every time service is turned off; nothing to serve")
    return functools.partial(run_serve, settings)


# -- the client ----------------------------------------------------------------------------


async def _query(address: Address, format: str, within: float) -> None:
    """``time query``: ask the strftime service at ``address`` for the time."""
    host, port = address
    # fsencode: a format argument that is not valid UTF-8 goes out byte for byte.
    request = os.fsencode(format)
    async with await open_udp_channel(host, port) as chan:
        await chan.send(request)
        with trio.move_on_after(within) as waited:
            reply = await chan.receive()
    if waited.cancelled_caught:
        raise CLIError(f"no answer from {host}:{port} within {within:g} s")
    if reply.startswith(b"error:"):
        reason = reply[len(b"error:") :].strip().decode("utf-8", "replace")
        raise CLIError(f"the server refused the format: {reason}")
    sys.stdout.buffer.write(reply + b"\n")
    sys.stdout.flush()


def _query_job(args: argparse.Namespace) -> Job:
    return functools.partial(_query, args.address, args.format, args.timeout)


def register(top: Parser) -> None:
    time_parser = top.add_command(
        "time", help="time servers (RFC 868, RFC 867 daytime, SNTP, strftime) and a client"
    )
    time_parser.add_commands(leaf=True, metavar="ACTION")
    serve = time_parser.add_command(
        "serve",
        help="run the time services",
        description=(
            "Run every time service: RFC 868 time (TCP and UDP), RFC 867 daytime (TCP and "
            "UDP), an SNTPv4 server (UDP), and the strftime service (a format in, the time "
            "out; UDP, and TCP with one format a line). Times are UTC. Give a service's "
            "port as 'none' to turn it off; port 0 picks a free port."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    for name, default, what in [
        ("strftime", STRFTIME_PORT, "the strftime service, UDP and TCP"),
        ("rfc868", RFC868_PORT, "RFC 868 time, TCP and UDP (well-known port 37)"),
        ("daytime", DAYTIME_PORT, "RFC 867 daytime, TCP and UDP (well-known port 13)"),
        ("sntp", SNTP_PORT, "SNTP, UDP (well-known port 123)"),
    ]:
        serve.add_argument(
            f"--{name}-port",
            type=_port_or_none,
            default=default,
            metavar="PORT",
            help=f"port of {what} (default {default}; 'none' turns it off)",
        )
    add_serve_options(serve, status_port=STATUS_PORT, idle_help=_IDLE_HELP, job=_serve_job)
    register_status(time_parser, "time", STATUS_PORT)
    query = time_parser.add_command(
        "query",
        help="ask a strftime service (UDP) for the time",
        description=(
            "Send FORMAT to the strftime service at HOST:PORT over UDP and print the answer. "
            "FORMAT is a strftime format such as '%H:%M:%S'; without it the server "
            "answers with '%Y-%m-%d %X'. Exits non-zero when the server refuses the "
            "format or does not answer in time."
        ),
    )
    query.add_argument(
        "address",
        type=parse_hostport,
        metavar="HOST:PORT",
        help=address_help("the strftime service", STRFTIME_PORT),
    )
    query.add_argument("format", nargs="?", default="", metavar="FORMAT")
    query.add_argument(
        "--timeout",
        type=positive,
        metavar="SECONDS",
        default=5.0,
        help="seconds to wait for the answer (default 5)",
    )
    query.set_defaults(job=_query_job)
