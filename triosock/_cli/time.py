"""``python -m triosock time serve|query``: the time services and a strftime client."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Awaitable, Callable

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
from ._common import (
    ADDRESS_HELP,
    CLIError,
    ServerStarter,
    add_log_options,
    configure_logging,
    parse_hostport,
    parse_port,
    positive,
    run_servers,
    tcp_line,
    udp_line,
)
from ._parser import CommandParser, add_config_option
from ._status import Status, add_status_option, register_status, status_starter
from ._workers import PortSlot, add_workers_option, supervise, worker_index

# The defaults: unprivileged stand-ins for the well-known ports (37, 13, 123), as 7007
# stands in for echo's 7. The seed tutorial's strftime service has no well-known port; it
# sits next to the time service.
RFC868_PORT = 7037
DAYTIME_PORT = 7013
SNTP_PORT = 7123
STRFTIME_PORT = 7038
STATUS_PORT = 7039

#: Seconds a strftime TCP connection may stay silent before it is closed.
STRFTIME_TCP_IDLE_TIMEOUT = 300.0

_OFF = ("none", "off")


def _port_or_none(text: str) -> int | None:
    """A port, or None for ``none``/``off`` (the service is not started)."""
    if text.lower() in _OFF:
        return None
    return parse_port(text)


def _slot(name: str, kinds: tuple[str, ...]) -> PortSlot:
    def get(args: argparse.Namespace) -> tuple[str, int] | None:
        port = getattr(args, name)
        return None if port is None else (args.host, port)

    return PortSlot(get, lambda args, port: setattr(args, name, port), kinds)


_PORT_SLOTS = [
    _slot("rfc868_port", ("tcp", "udp")),
    _slot("daytime_port", ("tcp", "udp")),
    _slot("sntp_port", ("udp",)),
    _slot("strftime_port", ("tcp", "udp")),
]


async def _time_serve(args: argparse.Namespace) -> None:
    configure_logging(args)
    if args.workers > 1:
        if all(slot.get(args) is None for slot in _PORT_SLOTS):
            raise CLIError("every time service is turned off; nothing to serve")
        await supervise(args, _PORT_SLOTS, grace=5.0)
        return
    host: str = args.host
    reuse = worker_index() is not None
    status = Status("time")

    def tcp(
        name: str,
        handler: Callable[[TCPConnection], Awaitable[None]],
        port: int,
        idle_timeout: float | None = None,
    ) -> ServerStarter:
        async def start(nursery: trio.Nursery) -> str:
            server: TCPServer = await nursery.start(
                functools.partial(
                    serve_tcp, handler, port, host=host, idle_timeout=idle_timeout, reuse_port=reuse
                )
            )
            status.add(name, "tcp", server)
            return tcp_line(name, server)

        return start

    def udp(name: str, handler: Callable[[UDPPeer], Awaitable[None]], port: int) -> ServerStarter:
        async def start(nursery: trio.Nursery) -> str:
            # Time clients ask once and go: forget them soon, and let a new address push
            # out the least recently active one rather than be refused.
            server: UDPServer = await nursery.start(
                functools.partial(
                    serve_udp,
                    handler,
                    port,
                    host=host,
                    when_full="evict",
                    peer_idle_timeout=UDP_PEER_IDLE_TIMEOUT,
                    reuse_port=reuse,
                )
            )
            status.add(name, "udp", server)
            return udp_line(name, server)

        return start

    starters: list[ServerStarter] = []
    if args.rfc868_port is not None:
        starters.append(tcp("rfc868-time", rfc868_tcp_handler, args.rfc868_port))
        starters.append(udp("rfc868-time", rfc868_udp_handler, args.rfc868_port))
    if args.daytime_port is not None:
        starters.append(tcp("daytime", daytime_tcp_handler, args.daytime_port))
        starters.append(udp("daytime", daytime_udp_handler, args.daytime_port))
    if args.sntp_port is not None:
        starters.append(udp("sntp", sntp_udp_handler, args.sntp_port))
    if args.strftime_port is not None:
        starters.append(udp("strftime", strftime_udp_handler, args.strftime_port))
        starters.append(
            tcp(
                "strftime",
                strftime_tcp_handler,
                args.strftime_port,
                idle_timeout=STRFTIME_TCP_IDLE_TIMEOUT,
            )
        )
    if not starters:
        raise CLIError("every time service is turned off; nothing to serve")
    await run_servers([*starters, status_starter(args, status.figures)])


async def _time_query(args: argparse.Namespace) -> None:
    host, port = args.address
    # fsencode: a format argument that is not valid UTF-8 goes out byte for byte.
    request = os.fsencode(args.format)
    async with await open_udp_channel(host, port) as chan:
        await chan.send(request)
        with trio.move_on_after(args.timeout) as waited:
            reply = await chan.receive()
    if waited.cancelled_caught:
        raise CLIError(f"no answer from {host}:{port} within {args.timeout:g} s")
    if reply.startswith(b"error:"):
        reason = reply[len(b"error:") :].strip().decode("utf-8", "replace")
        raise CLIError(f"the server refused the format: {reason}")
    sys.stdout.buffer.write(reply + b"\n")
    sys.stdout.flush()


def register(services: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    time_parser = services.add_parser(
        "time", help="time servers (RFC 868, RFC 867 daytime, SNTP, strftime) and a client"
    )
    actions = time_parser.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=CommandParser
    )
    serve = actions.add_parser(
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
    add_workers_option(serve, default=1)
    add_status_option(serve, STATUS_PORT)
    add_config_option(serve)
    add_log_options(serve, defaults=False)
    serve.set_defaults(run=_time_serve)
    register_status(actions, "time", STATUS_PORT)
    query = actions.add_parser(
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
        help=ADDRESS_HELP.format("the strftime service"),
    )
    query.add_argument("format", nargs="?", default="", metavar="FORMAT")
    query.add_argument(
        "--timeout",
        type=positive,
        metavar="SECONDS",
        default=5.0,
        help="seconds to wait for the answer (default 5)",
    )
    query.set_defaults(run=_time_query)
