"""Line echo on asyncio streams as the asyncio docs teach: ``readline``, ``write``, ``drain``.

``--uvloop``: the same server on uvloop's event loop.
"""

from __future__ import annotations

import asyncio

from benchmarks.servers._common import serve_asyncio


async def echo_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


if __name__ == "__main__":
    serve_asyncio(echo_lines, __doc__)
