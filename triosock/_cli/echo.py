"""``python -m triosock echo serve|send|status``."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from .._services.echo import echo_handler, udp_echo_handler
from .._services.replies import REPLY_BURST, REPLY_RATE
from .._transport.tcp import TCPServer, open_tcp_stream, serve_tcp
from .._transport.udp import UDPServer, open_udp_channel, serve_udp
from ._console import CLIError, read_stdin_chunk
from ._parser import Parser, record
from ._ports import ECHO_PORT, loop_rule
from ._run import Job
from ._serve_settings import (
    PortSlot,
    ServeSettings,
    add_host_port,
    add_serve_options,
    serve_common,
)
from ._serving import run_serve, run_servers, tcp_line, udp_line
from ._status_ask import register_status
from ._status_serve import Status
from ._values import Address, address_help, parse_hostport, positive, positive_or_none
from ._workerenv import worker_index

STATUS_PORT = 7009
#: UDP peers known at once when --max-connections does not say (serve_udp's default).
UDP_PEERS = 1024


@dataclass(frozen=True)
class EchoSettings(ServeSettings):
    """What ``echo serve`` was asked for."""

    host: str = "127.0.0.1"
    port: int = ECHO_PORT
    udp: bool = False
    reply_rate: float | None = REPLY_RATE

    def port_slots(self) -> list[PortSlot]:
        return [PortSlot("port", self.host, self.port, ("udp",) if self.udp else ("tcp",), False)]

    async def serve(self, status: Status) -> None:
        common = self.common
        reuse = worker_index() is not None
        serve: Callable[..., Awaitable[None]]
        if self.udp:
            # One-shot clients: a new address pushes out the least recently active peer
            # rather than be refused (and reply_each forgets a peer after 10 s).
            serve = functools.partial(
                serve_udp,
                functools.partial(udp_echo_handler, rate=self.reply_rate),
                max_peers=common.max_connections or UDP_PEERS,
                when_full="evict",
                peer_idle_timeout=common.idle_or(None),
                refuse_source=loop_rule(self.port),
            )
        else:
            serve = functools.partial(
                serve_tcp,
                echo_handler,
                max_connections=common.max_connections,
                idle_timeout=common.idle_or(None),
            )

        async def start(nursery: trio.Nursery) -> str:
            server: TCPServer | UDPServer = await nursery.start(
                functools.partial(
                    serve,
                    port=self.port,
                    host=self.host,
                    grace_period=common.grace,
                    reuse_port=reuse,
                )
            )
            if isinstance(server, UDPServer):
                status.add("echo", "udp", server)
                return udp_line("echo", server)
            status.add("echo", "tcp", server)
            return tcp_line("echo", server)

        await run_servers([start], status)


def _serve_job(args: argparse.Namespace) -> Job:
    common = serve_common(args, "echo", STATUS_PORT)
    return functools.partial(run_serve, record(EchoSettings, args, common=common))


# -- the client ----------------------------------------------------------------------------


async def _send_udp(address: Address, message: list[str], within: float) -> None:
    host, port = address
    if message:
        datagrams = [" ".join(message).encode()]
    else:
        datagrams = [line for line in sys.stdin.buffer.read().splitlines() if line]
    async with await open_udp_channel(host, port) as chan:
        for datagram in datagrams:
            await chan.send(datagram)
            with trio.move_on_after(within) as waited:
                reply = await chan.receive()
            if waited.cancelled_caught:
                raise CLIError(f"no answer from {host}:{port} within {within:g} s")
            sys.stdout.buffer.write(reply + b"\n")
            sys.stdout.flush()


async def _send(address: Address, message: list[str], udp: bool, within: float) -> None:
    """``echo send``: ``message`` (or stdin) to the echo server, the echo to stdout."""
    if udp:
        await _send_udp(address, message, within)
        return
    stream = await open_tcp_stream(*address)
    out = sys.stdout.buffer

    async def write() -> None:
        if message:
            await stream.send_all((" ".join(message) + "\n").encode())
        else:
            while chunk := await read_stdin_chunk():
                await stream.send_all(chunk)
        await stream.send_eof()

    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(write)
        async for data in stream:
            out.write(data)
            out.flush()


def _send_job(args: argparse.Namespace) -> Job:
    return functools.partial(_send, args.address, args.message, args.udp, args.timeout)


def register(top: Parser) -> None:
    echo = top.add_command("echo", help="RFC 862 echo server and client")
    echo.add_commands(leaf=True, metavar="ACTION")
    serve = echo.add_command("serve", help="run an echo server")
    add_host_port(serve, ECHO_PORT)
    serve.add_argument("--udp", action="store_true", help="serve UDP instead of TCP")
    serve.add_argument(
        "--reply-rate",
        type=positive_or_none,
        default=REPLY_RATE,
        metavar="DATAGRAMS/S|none",
        help=f"UDP echoes per second to one address after the first {REPLY_BURST} "
        f"({REPLY_RATE:g}); faster requests wait, then are dropped",
    )
    add_serve_options(
        serve,
        status_port=STATUS_PORT,
        idle_help="close a connection (or forget a UDP peer) that sends nothing this long (none)",
        job=_serve_job,
    )
    register_status(echo, "echo", STATUS_PORT)
    send = echo.add_command("send", help="send MESSAGE (or stdin) and print the echo")
    send.add_argument(
        "address",
        type=parse_hostport,
        metavar="HOST:PORT",
        help=address_help("the echo server", ECHO_PORT),
    )
    send.add_argument("message", nargs="*", metavar="MESSAGE", help="words to send as one line")
    send.add_argument(
        "--udp", action="store_true", help="one datagram per message (or per stdin line)"
    )
    send.add_argument(
        "--timeout",
        type=positive,
        metavar="SECONDS",
        default=5.0,
        help="seconds to wait for a UDP answer (5)",
    )
    send.set_defaults(job=_send_job)
