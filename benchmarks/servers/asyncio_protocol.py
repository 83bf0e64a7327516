"""TCP echo as an asyncio ``Protocol`` (``--uvloop``: the same protocol on uvloop)."""

from __future__ import annotations

import asyncio
from typing import cast

from benchmarks.servers._common import serve_asyncio


class Echo(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


if __name__ == "__main__":
    serve_asyncio(Echo, __doc__, protocol=True)
