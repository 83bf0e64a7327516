"""TCP echo on anyio with the trio backend: ``anyio.create_tcp_listener`` + ``serve``."""

from __future__ import annotations

import anyio
from anyio.abc import SocketStream

from benchmarks.servers._common import serve_anyio


async def echo(client: SocketStream) -> None:
    async with client:
        try:
            async for chunk in client:
                await client.send(chunk)
        except (anyio.BrokenResourceError, anyio.EndOfStream):
            pass


if __name__ == "__main__":
    serve_anyio(echo, __doc__)
