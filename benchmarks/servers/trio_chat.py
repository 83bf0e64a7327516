"""Line chat on raw trio: ``trio.serve_tcp``, a reader task and a writer task per client.

Each client owns a bounded memory channel drained by its writer task; every line a client
sends is put (``await send``, lossless) into every other client's channel as ``guestN: line``.
"""

from __future__ import annotations

import contextlib
import itertools

import trio

from benchmarks.servers._common import serve_trio

outboxes: dict[int, trio.MemorySendChannel[bytes]] = {}
numbers = itertools.count(1)


async def writer(
    stream: trio.SocketStream,
    inbox: trio.MemoryReceiveChannel[bytes],
    done: trio.CancelScope,
) -> None:
    async with inbox:
        try:
            async for message in inbox:
                await stream.send_all(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    done.cancel()


async def broadcast(number: int, message: bytes) -> None:
    for other, outbox in list(outboxes.items()):
        if other != number:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await outbox.send(message)


async def handle(stream: trio.SocketStream) -> None:
    number = next(numbers)
    prefix = f"guest{number}: ".encode()
    send, receive = trio.open_memory_channel[bytes](64)
    outboxes[number] = send
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer, stream, receive, nursery.cancel_scope)
            pending = b""
            try:
                async for data in stream:
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        await broadcast(number, prefix + line + b"\n")
            except trio.BrokenResourceError:
                pass
            nursery.cancel_scope.cancel()
    finally:
        del outboxes[number]
        send.close()


if __name__ == "__main__":
    serve_trio(handle, __doc__)
