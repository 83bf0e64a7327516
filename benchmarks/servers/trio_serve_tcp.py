"""TCP echo on raw trio, the way trio's tutorial teaches: ``trio.serve_tcp`` + SocketStream."""

from __future__ import annotations

import trio

from benchmarks.servers._common import serve_trio


async def echo(stream: trio.SocketStream) -> None:
    try:
        async for data in stream:
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


if __name__ == "__main__":
    serve_trio(echo, __doc__)
