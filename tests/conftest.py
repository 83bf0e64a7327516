"""Shared test helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from triosock import TCPServer, serve_tcp

#: The absolute guard every real-socket test runs under (seconds).
GUARD = 30


@asynccontextmanager
async def running_tcp_server(
    handler: Callable[[Any], Awaitable[object]], **options: Any
) -> AsyncIterator[tuple[TCPServer, trio.Nursery]]:
    """Run ``serve_tcp(handler, 0, **options)`` for the body; cancel it afterwards."""
    async with trio.open_nursery() as nursery:
        server: TCPServer = await nursery.start(
            lambda task_status: serve_tcp(handler, 0, task_status=task_status, **options)
        )
        yield server, nursery
        nursery.cancel_scope.cancel()
