"""``python -m triosock echo serve|send``."""

from __future__ import annotations

import argparse
import sys

import trio

from .._services.echo import echo_handler, udp_echo_handler
from .._transport.tcp import TCPServer, open_tcp_stream, serve_tcp
from .._transport.udp import UDPServer, open_udp_channel, serve_udp
from ._common import (
    ADDRESS_HELP,
    CLIError,
    add_log_options,
    configure_logging,
    parse_hostport,
    parse_port,
    positive,
    read_stdin_chunk,
    run_servers,
    tcp_line,
    udp_line,
)
from ._parser import CommandParser, add_config_option
from ._status import Status, add_status_option, register_status, status_starter
from ._workers import PortSlot, add_workers_option, supervise, worker_index

#: The default port: an unprivileged stand-in for the well-known 7.
ECHO_PORT = 7007
STATUS_PORT = 7009


def _set_port(args: argparse.Namespace, port: int) -> None:
    args.port = port


async def _echo_serve(args: argparse.Namespace) -> None:
    configure_logging(args)
    if args.workers > 1:
        kinds = ("udp",) if args.udp else ("tcp",)
        await supervise(args, [PortSlot(lambda a: (a.host, a.port), _set_port, kinds)], 5.0)
        return
    reuse = worker_index() is not None
    status = Status("echo")

    async def start_tcp(nursery: trio.Nursery) -> str:
        server: TCPServer = await nursery.start(
            lambda task_status: serve_tcp(
                echo_handler, args.port, host=args.host, reuse_port=reuse, task_status=task_status
            )
        )
        status.add("echo", "tcp", server)
        return tcp_line("echo", server)

    async def start_udp(nursery: trio.Nursery) -> str:
        server: UDPServer = await nursery.start(
            # One-shot clients: a new address pushes out the least recently active peer
            # rather than be refused (and reply_each forgets a peer after 10 s of quiet).
            lambda task_status: serve_udp(
                udp_echo_handler,
                args.port,
                host=args.host,
                when_full="evict",
                reuse_port=reuse,
                task_status=task_status,
            )
        )
        status.add("echo", "udp", server)
        return udp_line("echo", server)

    await run_servers([start_udp if args.udp else start_tcp, status_starter(args, status.figures)])


async def _echo_send_udp(args: argparse.Namespace) -> None:
    host, port = args.address
    if args.message:
        datagrams = [" ".join(args.message).encode()]
    else:
        datagrams = [line for line in sys.stdin.buffer.read().splitlines() if line]
    async with await open_udp_channel(host, port) as chan:
        for datagram in datagrams:
            await chan.send(datagram)
            with trio.move_on_after(args.timeout) as waited:
                reply = await chan.receive()
            if waited.cancelled_caught:
                raise CLIError(f"no answer from {host}:{port} within {args.timeout:g} s")
            sys.stdout.buffer.write(reply + b"\n")
            sys.stdout.flush()


async def _echo_send(args: argparse.Namespace) -> None:
    if args.udp:
        await _echo_send_udp(args)
        return
    host, port = args.address
    stream = await open_tcp_stream(host, port)
    out = sys.stdout.buffer

    async def send() -> None:
        if args.message:
            await stream.send_all((" ".join(args.message) + "\n").encode())
        else:
            while chunk := await read_stdin_chunk():
                await stream.send_all(chunk)
        await stream.send_eof()

    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(send)
        async for data in stream:
            out.write(data)
            out.flush()


def register(services: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    echo = services.add_parser("echo", help="RFC 862 echo server and client")
    actions = echo.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=CommandParser
    )
    serve = actions.add_parser("serve", help="run an echo server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=parse_port, default=ECHO_PORT, help=f"port (default {ECHO_PORT})"
    )
    serve.add_argument("--udp", action="store_true", help="serve UDP instead of TCP")
    add_workers_option(serve, default=1)
    add_status_option(serve, STATUS_PORT)
    add_config_option(serve)
    add_log_options(serve, defaults=False)
    serve.set_defaults(run=_echo_serve)
    register_status(actions, "echo", STATUS_PORT)
    send = actions.add_parser("send", help="send MESSAGE (or stdin) and print the echo")
    send.add_argument(
        "address",
        type=parse_hostport,
        metavar="HOST:PORT",
        help=ADDRESS_HELP.format("the echo server"),
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
    send.set_defaults(run=_echo_send)
