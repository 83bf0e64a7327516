"""TCP echo on asyncio streams as the asyncio docs teach: ``start_server``, read, write, drain."""

from __future__ import annotations

import asyncio

from benchmarks.servers._common import serve_asyncio


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


if __name__ == "__main__":
    serve_asyncio(echo, __doc__)
