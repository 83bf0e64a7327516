"""WebSocket chat on websockets' asyncio server, with per-client queues (``--uvloop``: on uvloop).

The pattern websockets' docs ("Broadcasting", "Per-client queues") recommend over
``broadcast()`` when a slow client must not lose messages: each client gets an
``asyncio.Queue`` and a task that ``await websocket.send(...)`` from it. The queues are
bounded (256 messages, like triosock's default per-subscriber buffer) and the publisher
awaits ``queue.put``, so the chat is lossless like the TCP peer chats: a slow reader slows
the sender down. Every text message a client sends goes to every other client as one text
message holding one JSON line of the shape triosock sends, ``{"room":"#lobby",
"sender":"guestN","text":...,"type":"message"}`` and ``"\\n"``, so the payloads match in
size. Compression is off and messages are limited to 64 KiB, as in triosock's row.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from benchmarks.servers._common import HOST, announce, parse_args, run_asyncio

QUEUE_SIZE = 256
MAX_SIZE = 64 * 1024

queues: dict[ServerConnection, asyncio.Queue[str]] = {}
numbers = itertools.count(1)


async def relay(queue: asyncio.Queue[str], websocket: ServerConnection) -> None:
    while True:
        message = await queue.get()
        # a closed connection: keep the queue moving until the handler, seeing it, ends
        with contextlib.suppress(ConnectionClosed):
            await websocket.send(message)


async def handler(websocket: ServerConnection) -> None:
    name = f"guest{next(numbers)}"
    queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
    relay_task = asyncio.create_task(relay(queue, websocket))
    queues[websocket] = queue
    try:
        async for text in websocket:
            if not isinstance(text, str):
                continue  # a chat takes text messages only
            event = {"room": "#lobby", "sender": name, "text": text, "type": "message"}
            message = json.dumps(event, separators=(",", ":")) + "\n"
            for other, outbox in list(queues.items()):
                if other is not websocket:
                    await outbox.put(message)  # lossless: wait while that client is behind
    except ConnectionClosed:
        pass
    finally:
        del queues[websocket]
        relay_task.cancel()
        # a publisher still waiting to put into this full queue must not wait forever
        while not queue.empty():
            queue.get_nowait()


async def main(port: int) -> None:
    async with serve(handler, HOST, port, compression=None, max_size=MAX_SIZE) as server:
        announce(server.sockets[0].getsockname()[1])
        await server.serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__ or "", loop_choice=True)
    run_asyncio(main(args.port), use_uvloop=args.uvloop)
