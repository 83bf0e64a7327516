"""``python -m triosock echo serve|send|status``.

``echo serve --tls-cert FILE`` speaks TLS on its port (``--plain-port`` adds a
plaintext one beside it); ``echo send --tls`` talks to it. TLS has no half-close, so a
TLS ``send`` ends once the echo of everything it sent has come back (see :mod:`._tls`).
"""

from __future__ import annotations

import argparse
import functools
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from .._services.echo import echo_handler, udp_echo_handler
from .._services.replies import REPLY_BURST, REPLY_RATE
from .._transport.tcp import TCPServer, serve_tcp
from .._transport.udp import UDPServer, open_udp_channel, serve_udp
from ._console import CLIError, UsageError, read_stdin_chunk
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
from ._tls import (
    TLSFiles,
    add_tls_client_options,
    add_tls_serve_options,
    client_context,
    open_client_stream,
    tls_files,
    tls_note,
)
from ._values import (
    Address,
    address_help,
    parse_hostport,
    parse_port,
    positive,
    positive_or_none,
)
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
    tls: TLSFiles | None = None
    plain_port: int | None = None

    def port_slots(self) -> list[PortSlot]:
        kinds = ("udp",) if self.udp else ("tcp",)
        slots = [PortSlot("port", self.host, self.port, kinds, False)]
        if self.plain_port is not None:
            slots.append(PortSlot("plain_port", self.host, self.plain_port, kinds, False))
        return slots

    async def serve(self, status: Status) -> None:
        common = self.common
        reuse = worker_index() is not None
        context = None if self.tls is None else self.tls.context()
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

        async def start(port: int, tls: bool, nursery: trio.Nursery) -> str:
            options = {}
            if tls and self.tls is not None:
                options = {"ssl_context": context, "handshake_timeout": self.tls.handshake_timeout}
            server: TCPServer | UDPServer = await nursery.start(
                functools.partial(
                    serve,
                    port=port,
                    host=self.host,
                    grace_period=common.grace,
                    reuse_port=reuse,
                    **options,
                )
            )
            if isinstance(server, UDPServer):
                status.add("echo", "udp", server)
                return udp_line("echo", server)
            status.add("echo", "tcp+tls" if tls else "tcp", server)
            return tcp_line("echo", server, tls_note(tls, context is not None))

        starters = [functools.partial(start, self.port, context is not None)]
        if self.plain_port is not None:
            starters.append(functools.partial(start, self.plain_port, False))
        await run_servers(starters, status)


def _serve_job(args: argparse.Namespace) -> Job:
    if args.udp and args.tls_cert is not None:
        raise UsageError("--tls-cert is for TCP: echo over UDP has no TLS")
    tls = tls_files(args, "--plain-port")
    common = serve_common(args, "echo", STATUS_PORT)
    return functools.partial(run_serve, record(EchoSettings, args, common=common, tls=tls))


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


async def _send(
    address: Address,
    message: list[str],
    udp: bool,
    within: float,
    context: ssl.SSLContext | None = None,
) -> None:
    """``echo send``: ``message`` (or stdin) to the echo server, the echo to stdout.

    Over TCP the end of the input is a half-close, and the server's close ends the
    echo; TLS cannot half-close, so there the echo ends once as many bytes came back
    as were sent.
    """
    if udp:
        await _send_udp(address, message, within)
        return
    stream = await open_client_stream(*address, context)
    out = sys.stdout.buffer
    counts = [0, 0]  # bytes sent, bytes echoed
    sent_all = trio.Event()

    async def write() -> None:
        if message:
            data = (" ".join(message) + "\n").encode()
            await stream.send_all(data)
            counts[0] += len(data)
        else:
            while chunk := await read_stdin_chunk():
                await stream.send_all(chunk)
                counts[0] += len(chunk)
        if isinstance(stream, trio.abc.HalfCloseableStream):  # not TLS
            await stream.send_eof()
        elif counts[1] >= counts[0]:
            nursery.cancel_scope.cancel()  # every byte is back already (or none was sent)
        sent_all.set()

    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(write)
        async for data in stream:
            out.write(data)
            out.flush()
            counts[1] += len(data)
            if context is not None and sent_all.is_set() and counts[1] >= counts[0]:
                nursery.cancel_scope.cancel()  # the whole echo is back
                break


def _send_job(args: argparse.Namespace) -> Job:
    if args.ca is not None and not args.tls:
        raise UsageError("--ca is for --tls: give both")
    if args.tls and args.udp:
        raise UsageError("--tls is for TCP: echo over UDP has no TLS")
    context = client_context(args.ca) if args.tls else None
    return functools.partial(_send, args.address, args.message, args.udp, args.timeout, context)


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
    add_tls_serve_options(serve, what="--port")
    serve.add_argument(
        "--plain-port",
        type=parse_port,
        default=None,
        metavar="PORT",
        help="with --tls-cert: a plaintext port beside the TLS one, on --host (default none)",
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
    add_tls_client_options(send)
    send.set_defaults(job=_send_job)
