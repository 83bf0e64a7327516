"""UDP echo on a raw ``trio.socket`` loop: one task doing recvfrom/sendto."""

from __future__ import annotations

import contextlib
import socket

import trio

from benchmarks.servers._common import HOST, announce, parse_args


async def main(port: int) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((HOST, port))
    announce(sock.getsockname()[1])
    while True:
        data, addr = await sock.recvfrom(65536)
        with contextlib.suppress(OSError):  # e.g. ICMP unreachable from a vanished peer
            await sock.sendto(data, addr)


if __name__ == "__main__":
    trio.run(main, parse_args(__doc__ or "").port)
