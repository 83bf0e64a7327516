"""Line echo on triosock's public API, as its README teaches: ``serve_tcp`` + ``FramedChannel``.

The handler wraps its connection in a ``FramedChannel`` (``LineFramer``, the default) and
sends every line it receives back.
"""

from __future__ import annotations

import trio

import triosock
from benchmarks.servers._common import serve_triosock


async def echo_lines(conn: triosock.TCPConnection) -> None:
    chan = triosock.FramedChannel(conn)
    try:
        async for line in chan:
            await chan.send(line)
    except trio.BrokenResourceError:
        pass


if __name__ == "__main__":
    serve_triosock(echo_lines, __doc__)
