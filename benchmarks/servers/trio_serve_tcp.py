"""TCP echo on raw trio, the way trio's tutorial teaches: ``trio.serve_tcp`` + SocketStream."""

from __future__ import annotations

from functools import partial

import trio

from benchmarks.servers._common import HOST, announce, parse_args


async def echo(stream: trio.SocketStream) -> None:
    try:
        async for data in stream:
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, port, host=HOST))
        announce(listeners[0].socket.getsockname()[1])


if __name__ == "__main__":
    trio.run(main, parse_args(__doc__ or "").port)
