"""TCP echo on a raw ``trio.socket`` loop: one task per connection doing recv/send."""

from __future__ import annotations

import socket

import trio

from benchmarks.servers._common import HOST, announce, parse_args


async def echo(conn: trio.socket.SocketType) -> None:
    with conn:
        try:
            while True:
                data = await conn.recv(65536)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    sent = await conn.send(view)
                    view = view[sent:]
        except OSError:
            pass


async def main(port: int) -> None:
    listener = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await listener.bind((HOST, port))
    listener.listen(socket.SOMAXCONN)
    announce(listener.getsockname()[1])
    async with trio.open_nursery() as nursery:
        while True:
            conn, _ = await listener.accept()
            # the same option trio's SocketStream sets
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            nursery.start_soon(echo, conn)


if __name__ == "__main__":
    trio.run(main, parse_args(__doc__ or "").port)
