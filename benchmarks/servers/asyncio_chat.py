"""Line chat on asyncio streams (``--uvloop``: the same code on uvloop), the way tutorials teach.

Every line a client sends is written to every other client as ``guestN: line``, with
``await writer.drain()`` after each write (lossless: a slow reader slows the sender down).
"""

from __future__ import annotations

import asyncio
import itertools

from benchmarks.servers._common import serve_asyncio

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


if __name__ == "__main__":
    serve_asyncio(handle, __doc__)
