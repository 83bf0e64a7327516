"""serve_websocket over real loopback sockets, judged by websockets' own clients."""

from __future__ import annotations

import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.trio.client import connect

from triosock import WebSocketPeer, WebSocketServer, serve_websocket

from .clitools import PYTHON
from .conftest import GUARD


async def echo(peer: WebSocketPeer) -> None:
    with peer.stop_scope():
        async for message in peer.connection:
            await peer.connection.send(message)
    await peer.connection.send("bye")


@asynccontextmanager
async def running_ws_server(handler: Any = echo, **options: Any) -> AsyncIterator[WebSocketServer]:
    async with trio.open_nursery() as nursery:
        server: WebSocketServer = await nursery.start(
            lambda task_status: serve_websocket(handler, 0, task_status=task_status, **options)
        )
        yield server
        nursery.cancel_scope.cancel()


async def test_the_websockets_command_line_client_talks_to_it() -> None:
    with trio.fail_after(GUARD):
        async with running_ws_server() as server:
            client = await trio.lowlevel.open_process(
                [PYTHON, "-m", "websockets", f"ws://127.0.0.1:{server.port}/"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            assert client.stdin is not None
            assert client.stdout is not None
            try:
                await client.stdin.send_all(b"hello there\n")
                shown = b""
                while b"< hello there" not in shown:
                    data = await client.stdout.receive_some()
                    assert data, f"the client ended first: {shown!r}"
                    shown += re.sub(rb"\x1b[\[\d;?]*[A-Za-z78]|\r", b"", data)
                await client.stdin.aclose()  # the client closes the connection on EOF
                assert await client.wait() == 0
            finally:
                if client.returncode is None:
                    client.kill()
                    await client.wait()
                await client.stdout.aclose()


async def test_a_page_from_elsewhere_is_refused_its_own_origin_accepted() -> None:
    with trio.fail_after(GUARD):
        async with running_ws_server() as server:
            url = f"ws://127.0.0.1:{server.port}/ws"
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, origin="http://evil.example"):  # type: ignore[arg-type]
                    pass
            assert refused.value.response.status_code == 403
            own = f"http://127.0.0.1:{server.port}"
            async with connect(url, origin=own) as ws:  # type: ignore[arg-type]
                await ws.send("same origin")
                assert await ws.recv() == "same origin"


async def test_a_message_over_max_size_closes_with_1009_and_others_go_on() -> None:
    with trio.fail_after(GUARD):
        async with running_ws_server(max_size=64 * 1024) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with connect(url) as other, connect(url, max_size=None) as big:
                await big.send("x" * (2 * 1024 * 1024))
                with pytest.raises(ConnectionClosed) as closed:
                    await big.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1009
                await other.send("still here")
                assert await other.recv() == "still here"


async def test_a_stop_lets_handlers_say_bye_then_closes_the_rest_with_1001() -> None:
    async def stubborn(peer: WebSocketPeer) -> None:
        await trio.sleep_forever()  # ignores the stop scope

    with trio.fail_after(GUARD):
        async with running_ws_server() as polite, connect(f"ws://127.0.0.1:{polite.port}/") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            polite.stop()
            assert await ws.recv() == "bye"
        async with running_ws_server(stubborn, grace_period=0.2) as rude:
            late = connect(f"ws://127.0.0.1:{rude.port}/")
            async with late as ws:
                rude.stop()
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1001


async def test_the_statistics_count_connections_and_handler_errors() -> None:
    async def fails_on_boom(peer: WebSocketPeer) -> None:
        while True:
            message = await peer.connection.recv()
            if message == "boom":
                raise RuntimeError("boom")
            await peer.connection.send(message)

    with trio.fail_after(GUARD):
        async with running_ws_server(fails_on_boom) as server:
            url = f"ws://127.0.0.1:{server.port}/"
            async with connect(url) as first, connect(url) as second:
                await first.send("a")
                assert await first.recv() == "a"
                await second.send("b")
                assert await second.recv() == "b"
                stats = server.statistics()
                assert (stats.open_connections, stats.total_connections) == (2, 2)
                await second.send("boom")
                with pytest.raises(ConnectionClosed):
                    await second.recv()
                await first.send("c")
                assert await first.recv() == "c"
                stats = server.statistics()
                assert (stats.open_connections, stats.total_connections) == (1, 2)
                assert (stats.handler_errors, stats.stopping) == (1, False)
            server.stop()
            await server.wait_stopping()
            assert server.statistics().stopping
            with pytest.raises(AttributeError):
                stats.open_connections = 5  # type: ignore[misc]
