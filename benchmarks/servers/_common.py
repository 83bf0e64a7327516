"""What every peer server shares: its command line and how it reports its port."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

HOST = "127.0.0.1"


def parse_args(description: str, *, loop_choice: bool = False) -> argparse.Namespace:
    """``--port`` (default 0) and, for asyncio servers, ``--uvloop``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    if loop_choice:
        parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    return parser.parse_args()


def announce(port: int) -> None:
    """Tell the runner where we listen: one ``127.0.0.1:PORT`` line on stdout."""
    print(f"listening on {HOST}:{port}", flush=True)
    sys.stdout.flush()


def run_asyncio(main: object, *, use_uvloop: bool) -> None:
    """Run a coroutine on asyncio's default loop or on uvloop."""
    import asyncio
    from collections.abc import Coroutine
    from typing import Any, cast

    coro = cast(Coroutine[Any, Any, None], main)
    if use_uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


# -- one "main" per stack: bind HOST on --port, announce the port, serve until killed ---


def serve_asyncio(handler: Any, description: str | None, *, protocol: bool = False) -> None:
    """``asyncio.start_server(handler)`` (or ``loop.create_server(handler)``, a protocol
    factory, with ``protocol``), on asyncio or, with ``--uvloop``, on uvloop."""
    import asyncio

    args = parse_args(description or "", loop_choice=True)

    async def main() -> None:
        start: Any = asyncio.get_running_loop().create_server if protocol else asyncio.start_server
        server = await start(handler, HOST, args.port)
        announce(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    run_asyncio(main(), use_uvloop=args.uvloop)


def serve_trio(handler: Any, description: str | None) -> None:
    """``trio.serve_tcp(handler)``, the way trio's tutorial starts a server."""
    import trio

    _serve_in_a_nursery(
        trio.serve_tcp, handler, description, lambda listeners: listeners[0].socket.getsockname()[1]
    )


def serve_triosock(handler: Any, description: str | None) -> None:
    """``triosock.serve_tcp(handler)``, as triosock's README starts a server."""
    import triosock

    _serve_in_a_nursery(triosock.serve_tcp, handler, description, lambda server: server.port)


def serve_triosock_http(handler: Any, description: str | None) -> None:
    """``triosock.serve_http(handler)``, started with ``nursery.start`` like ``serve_tcp``."""
    import triosock

    _serve_in_a_nursery(triosock.serve_http, handler, description, lambda server: server.port)


def _serve_in_a_nursery(
    serve_tcp: Any, handler: Any, description: str | None, port_of: Any
) -> None:
    """``await nursery.start(serve_tcp, handler, port, host=HOST)``, then announce."""
    from functools import partial

    import trio

    port = parse_args(description or "").port

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            started = await nursery.start(partial(serve_tcp, handler, port, host=HOST))
            announce(port_of(started))

    trio.run(main)


def serve_anyio(handler: Any, description: str | None) -> None:
    """``anyio.create_tcp_listener(...).serve(handler)`` on anyio's trio backend."""
    import anyio
    from anyio.abc import SocketAttribute

    port = parse_args(description or "").port

    async def main() -> None:
        listener = await anyio.create_tcp_listener(local_host=HOST, local_port=port)
        announce(listener.extra(SocketAttribute.local_port))
        serve: Any = listener.serve
        await serve(handler)

    anyio.run(main, backend="trio")


# -- HTTP: what every HTTP peer answers, and a minimal ASGI app saying it ------------------

HELLO = b"hello world\n"  # the body of triosock's own `/` (tutorial_handler)

ASGIMessage = dict[str, Any]


async def asgi_hello(
    scope: ASGIMessage,
    receive: Callable[[], Awaitable[ASGIMessage]],
    send: Callable[[ASGIMessage], Awaitable[None]],
) -> None:
    """The minimal ASGI app of the ASGI servers' docs: ``hello world`` for every request.

    Content-Length is given, as in hypercorn's and uvicorn's examples (without it an
    HTTP/1.1 server sends the body chunked).  The ``lifespan`` scope is answered as the
    ASGI spec's example does (hypercorn fails to start when the app just returns).
    """
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(HELLO)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": HELLO})
