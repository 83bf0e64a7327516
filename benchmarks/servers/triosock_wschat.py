"""triosock's chat over WebSocket, on its public API only: ``ChatServer`` and ``serve_websocket``.

``ChatServer(policy="block", rate=None)``: lossless like the peer chats (a reader that falls
behind slows the sender down) and no per-user rate limit (the load client's one sender
stands for a whole room). Its handler ``chat.serve_websocket_peer`` is served with
``nursery.start(serve_websocket, handler, port, host=...)``, all of ``serve_websocket``'s
options at their defaults (``max_size`` 64 KiB, pings every 20 s). A client's text message
is a chat line; each message to a client holds one or more JSON lines, one per event.
"""

from __future__ import annotations

import functools

import trio

from benchmarks.servers._common import HOST, announce, parse_args
from triosock import WebSocketServer, serve_websocket
from triosock.chat import ChatServer


async def main(port: int) -> None:
    chat = ChatServer(policy="block", rate=None)
    async with chat, trio.open_nursery() as nursery:
        server: WebSocketServer = await nursery.start(
            functools.partial(serve_websocket, chat.serve_websocket_peer, port, host=HOST)
        )
        announce(server.port)


if __name__ == "__main__":
    trio.run(main, parse_args(__doc__ or "").port)
