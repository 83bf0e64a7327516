"""Line chat on asyncio streams (``--uvloop``: the same code on uvloop), the way tutorials teach.

Every line a client sends is written to every other client as ``guestN: line``, with
``await writer.drain()`` after each write (lossless: a slow reader slows the sender down).
"""

from __future__ import annotations

import asyncio
import itertools

from benchmarks.servers._common import HOST, announce, parse_args, run_asyncio

clients: set[asyncio.StreamWriter] = set()
numbers = itertools.count(1)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    name = f"guest{next(numbers)}"
    clients.add(writer)
    try:
        while line := await reader.readline():
            message = f"{name}: ".encode() + line
            for other in list(clients):
                if other is not writer:
                    other.write(message)
                    await other.drain()
    except ConnectionError:
        pass
    finally:
        clients.discard(writer)
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, HOST, port)
    announce(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__ or "", loop_choice=True)
    run_asyncio(main(args.port), use_uvloop=args.uvloop)
