"""Line echo on anyio with the trio backend: ``create_tcp_listener`` + ``receive_until``.

Each connection wraps its stream in ``BufferedByteReceiveStream``, reads a line with
``receive_until(b"\\n", 65536)`` and sends it back with ``send``.
"""

from __future__ import annotations

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from benchmarks.servers._common import serve_anyio


async def echo_lines(client: SocketStream) -> None:
    async with client:
        lines = BufferedByteReceiveStream(client)
        try:
            while True:
                line = await lines.receive_until(b"\n", 65536)
                await client.send(line + b"\n")
        except (anyio.BrokenResourceError, anyio.EndOfStream, anyio.IncompleteRead):
            pass


if __name__ == "__main__":
    serve_anyio(echo_lines, __doc__)
