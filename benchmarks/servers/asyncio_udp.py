"""UDP echo as an asyncio ``DatagramProtocol`` (``--uvloop``: the same protocol on uvloop)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from benchmarks.servers._common import HOST, announce, parse_args, run_asyncio


class Echo(asyncio.DatagramProtocol):
    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(HOST, port))
    announce(transport.get_extra_info("sockname")[1])
    try:
        await asyncio.Event().wait()
    finally:
        transport.close()


if __name__ == "__main__":
    args = parse_args(__doc__ or "", loop_choice=True)
    run_asyncio(main(args.port), use_uvloop=args.uvloop)
