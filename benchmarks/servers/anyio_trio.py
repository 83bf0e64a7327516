"""TCP echo on anyio with the trio backend: ``anyio.create_tcp_listener`` + ``serve``."""

from __future__ import annotations

import anyio
from anyio.abc import SocketAttribute, SocketStream

from benchmarks.servers._common import HOST, announce, parse_args


async def echo(client: SocketStream) -> None:
    async with client:
        try:
            async for chunk in client:
                await client.send(chunk)
        except (anyio.BrokenResourceError, anyio.EndOfStream):
            pass


async def main(port: int) -> None:
    listener = await anyio.create_tcp_listener(local_host=HOST, local_port=port)
    announce(listener.extra(SocketAttribute.local_port))
    await listener.serve(echo)


if __name__ == "__main__":
    anyio.run(main, parse_args(__doc__ or "").port, backend="trio")
