"""TCP echo as an asyncio ``Protocol`` (``--uvloop``: the same protocol on uvloop)."""

from __future__ import annotations

import asyncio
from typing import cast

from benchmarks.servers._common import HOST, announce, parse_args, run_asyncio


class Echo(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, HOST, port)
    announce(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__ or "", loop_choice=True)
    run_asyncio(main(args.port), use_uvloop=args.uvloop)
