"""Shared test helpers."""

from __future__ import annotations

import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trustme
from hypothesis import settings

from triosock import TCPServer, serve_tcp

#: The absolute guard every real-socket test runs under (seconds).
# Hypothesis's default 200 ms deadline per example measures the machine, not the code:
# on a loaded CI box it failed a framing property that takes microseconds.
settings.register_profile("triosock", deadline=None)
settings.load_profile("triosock")

GUARD = 30


@pytest.fixture(autouse=True)
def _own_state_directory(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test's servers keep their history (``chat serve``'s default ``--data``) in
    a directory of its own, never in the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


class Batches:
    """Counts trio's scheduler batches: a task that takes one step in each (it never
    blocks, so virtual time stands still while it runs)."""

    def __init__(self) -> None:
        self.now = 0

    async def run(self) -> None:
        while True:
            await trio.lowlevel.checkpoint()
            self.now += 1


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


def reset_on_close(sock: socket.socket | trio.socket.SocketType) -> None:
    """Make closing ``sock`` send an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for ``localhost`` and a client that trusts it."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


class QuietStream(trio.abc.Stream):
    """A stream that takes every write, never has data and closes at once: a stand-in
    for a stream that is not a socket (not half-closeable, no ``try_send``)."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return b""

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def rss() -> int:
    """This process's resident memory, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
