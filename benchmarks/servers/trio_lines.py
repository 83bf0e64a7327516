"""Line echo on raw trio, as a trio user writes it: ``trio.serve_tcp``, lines split by hand.

Each connection appends what ``receive_some`` returns to a bytearray, cuts every complete
line (ending in ``\\n``) off its front and sends it back with its own ``send_all``.
"""

from __future__ import annotations

import trio

from benchmarks.servers._common import serve_trio


async def echo_lines(stream: trio.SocketStream) -> None:
    buffer = bytearray()
    try:
        while data := await stream.receive_some():
            buffer += data
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[: end + 1])
                del buffer[: end + 1]
                await stream.send_all(line)
    except trio.BrokenResourceError:
        pass


if __name__ == "__main__":
    serve_trio(echo_lines, __doc__)
