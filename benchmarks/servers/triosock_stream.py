"""TCP echo on triosock's public API, the byte-stream way: a ``serve_tcp`` handler.

The handler gets a ``TCPConnection`` (a trio stream) and sends back whatever it receives,
``async for data in conn: await conn.send_all(data)``, as a user writes echo.
"""

from __future__ import annotations

import trio

import triosock
from benchmarks.servers._common import serve_triosock


async def echo(conn: triosock.TCPConnection) -> None:
    try:
        async for data in conn:
            await conn.send_all(data)
    except trio.BrokenResourceError:
        pass


if __name__ == "__main__":
    serve_triosock(echo, __doc__)
