"""``python -m triosock chat join HOST:PORT [--udp]``: the interactive chat client."""

from __future__ import annotations

import argparse
import sys

import trio

from .._liveness import send_heartbeats
from .._sansio import chat as proto
from .._transport.channel import FramedChannel
from .._transport.tcp import connect_tcp
from .._transport.udp import open_udp_channel
from ._common import parse_hostport, positive, read_stdin_chunk

__all__ = ["HEARTBEAT_DEFAULT", "register"]

HEARTBEAT_DEFAULT = 5.0


async def _stdin_lines(send: trio.MemorySendChannel[bytes]) -> None:
    """Feed stdin's lines into ``send``; close it at EOF."""
    async with send:
        pending = b""
        while chunk := await read_stdin_chunk():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                await send.send(line.rstrip(b"\r"))
        if pending:
            await send.send(pending)


def _show(line: bytes) -> None:
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.flush()


async def _join_tcp(args: argparse.Namespace) -> None:
    host, port = args.address
    chan = FramedChannel(await connect_tcp(host, port))
    lines_in, lines_out = trio.open_memory_channel[bytes](16)
    async with chan, trio.open_nursery() as nursery:
        nursery.start_soon(_stdin_lines, lines_in)
        if args.nick:
            await chan.send(b"/nick " + args.nick.encode())

        async def forward() -> None:
            async for line in lines_out:
                await chan.send(line)
                if proto.parse_line_untrusted(line) == proto.Quit():
                    return
            await chan.send(b"/quit")  # stdin ended

        nursery.start_soon(forward)
        async for line in chan:
            _show(line)
        nursery.cancel_scope.cancel()  # the server closed: stop reading stdin


async def _join_udp(args: argparse.Namespace) -> None:
    host, port = args.address
    chan = await open_udp_channel(host, port)
    lines_in, lines_out = trio.open_memory_channel[bytes](16)
    async with chan, trio.open_nursery() as nursery:
        nursery.start_soon(_stdin_lines, lines_in)
        nursery.start_soon(send_heartbeats, lambda: chan.send(proto.HEARTBEAT), args.heartbeat)
        await chan.send(proto.HEARTBEAT)  # say hello: the server learns our address

        async def forward() -> None:
            async for line in lines_out:
                if line.strip() in (b"/quit", proto.UDP_QUIT):
                    break
                if line.strip():
                    await chan.send(line)
            await chan.send(proto.UDP_QUIT)
            # Wait briefly for the server's Bye!; a lost datagram must not hang us.
            await trio.sleep(2)
            nursery.cancel_scope.cancel()

        nursery.start_soon(forward)
        while True:
            datagram = (await chan.receive()).rstrip(b"\n")
            _show(datagram)
            if datagram == proto.BYE:
                break
        nursery.cancel_scope.cancel()


async def _chat_join(args: argparse.Namespace) -> None:
    await (_join_udp if args.udp else _join_tcp)(args)


def register(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    join = actions.add_parser("join", help="an interactive client: stdin lines in, room lines out")
    join.add_argument("address", type=parse_hostport, metavar="HOST:PORT")
    join.add_argument("--udp", action="store_true", help="speak the UDP dialect")
    join.add_argument("--nick", help="the nick to take on arrival (TCP)")
    join.add_argument(
        "--heartbeat",
        type=positive,
        default=HEARTBEAT_DEFAULT,
        help=f"UDP heartbeat interval ({HEARTBEAT_DEFAULT:g} s)",
    )
    join.set_defaults(run=_chat_join)
