"""The per-address limit of the TCP and WebSocket listeners: one host cannot take every
connection slot (Ergo's limit per IP; this machine's own addresses exempt by default).
Other hosts are 127.0.0.2 and up, which Linux routes over loopback without setup."""

from __future__ import annotations

import base64
import functools
import logging
import os

import pytest
import trio
import trio.testing

from triosock import TCPConnection, TCPServer, serve_tcp
from triosock._cli.chat import PER_ADDRESS_DEFAULT
from triosock._transport.websocket import WebSocketPeer, WebSocketServer, serve_websocket

from .chattools import LineSocket
from .clitools import cli_server
from .conftest import GUARD

REFUSAL = b"too many of yours\n"


async def _hold(conn: TCPConnection) -> None:
    """Greet, then hold the connection until the client closes it."""
    await conn.send_all(b"hello\n")
    async for _ in conn:
        pass


async def test_a_source_past_its_limit_gets_the_refusal_and_other_sources_are_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "triosock.tcp")
    serve = functools.partial(
        serve_tcp, _hold, 0, max_per_address=3, per_address_exempt=(), per_address_refusal=REFUSAL
    )
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(serve)
            port = server.port
            crowd = [await LineSocket.connect(port, source="127.0.0.2") for _ in range(3)]
            for client in crowd:
                assert await client.read_until(b"hello") == b"hello"
            late = [await LineSocket.connect(port, source="127.0.0.2") for _ in range(2)]
            for client in late:  # the refusal, then the close: its handler never ran
                assert await client.read_to_eof() == [REFUSAL.rstrip(b"\n")]
            other = await LineSocket.connect(port, source="127.0.0.3")
            assert await other.read_until(b"hello") == b"hello"
            figures = server.statistics()
            assert (figures.open_connections, figures.total_connections) == (4, 4)
            assert figures.refused_per_address == 2
            # One closes: its source has a slot again, and its next refusal is news.
            crowd[0].close()
            await trio.testing.wait_all_tasks_blocked()
            assert server.statistics().open_connections == 3
            again = await LineSocket.connect(port, source="127.0.0.2")
            assert await again.read_until(b"hello") == b"hello"
            refused = await LineSocket.connect(port, source="127.0.0.2")
            assert await refused.read_to_eof() == [REFUSAL.rstrip(b"\n")]
            assert server.statistics().refused_per_address == 3
            for client in [*crowd[1:], *late, other, again, refused]:
                client.close()
            nursery.cancel_scope.cancel()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    episode = (
        "127.0.0.2 holds 3 connections, the most one address may: refusing more until one closes"
    )
    assert warnings == [episode, episode]  # once per episode: 3 refusals, 2 episodes


async def test_this_machines_own_address_is_exempt_by_default() -> None:
    serve = functools.partial(serve_tcp, _hold, 0, max_per_address=1)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(serve)
            local = [await LineSocket.connect(server.port) for _ in range(5)]
            for client in local:
                assert await client.read_until(b"hello") == b"hello"
            other = [await LineSocket.connect(server.port, source="127.0.0.2") for _ in range(2)]
            assert await other[0].read_until(b"hello") == b"hello"
            assert await other[1].read_to_eof() == []  # no refusal text given: a close
            assert server.statistics().refused_per_address == 1
            for client in [*local, *other]:
                client.close()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("limit", [0, -1])
async def test_a_limit_below_one_is_refused_when_the_server_starts(limit: int) -> None:
    with pytest.raises(ValueError, match=f"max_per_address must be at least 1, not {limit}"):
        await serve_tcp(_hold, 0, max_per_address=limit)
    with pytest.raises(ValueError, match=f"max_per_address must be at least 1, not {limit}"):
        await serve_websocket(_hold_ws, 0, max_per_address=limit)


async def _hold_ws(peer: WebSocketPeer) -> None:
    await trio.sleep_forever()


async def _handshake(port: int, source: str) -> LineSocket:
    client = await LineSocket.connect(port, source=source)
    key = base64.b64encode(os.urandom(16))
    await client.send(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n" % (port, key)
    )
    return client


async def test_a_websocket_past_its_sources_limit_gets_429_instead_of_its_handshake() -> None:
    serve = functools.partial(
        serve_websocket, _hold_ws, 0, max_per_address=2, per_address_exempt=(), grace_period=0.1
    )
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: WebSocketServer = await nursery.start(serve)
            port = server.port
            crowd = [await _handshake(port, "127.0.0.2") for _ in range(2)]
            for client in crowd:
                assert (await client.read_until(b"HTTP/1.1")).startswith(b"HTTP/1.1 101 ")
            late = await _handshake(port, "127.0.0.2")
            lines = await late.read_to_eof()
            assert lines[0] == b"HTTP/1.1 429 Too Many Requests\r"
            assert lines[-1] == b"2 connections from your address already (the most)"
            other = await _handshake(port, "127.0.0.3")
            assert (await other.read_until(b"HTTP/1.1")).startswith(b"HTTP/1.1 101 ")
            assert server.statistics().refused_per_address == 1
            crowd[0].close()  # a slot for its source again
            await trio.testing.wait_all_tasks_blocked()
            again = await _handshake(port, "127.0.0.2")
            assert (await again.read_until(b"HTTP/1.1")).startswith(b"HTTP/1.1 101 ")
            for client in [*crowd[1:], late, other, again]:
                client.close()
            nursery.cancel_scope.cancel()


async def test_chat_serve_holds_sixteen_connections_per_address_and_refuses_with_a_line() -> None:
    assert PER_ADDRESS_DEFAULT == 16
    args = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "none"]
    with trio.fail_after(GUARD):
        async with cli_server([*args, "--status", "none"]) as server:
            port = server.port("chat (tcp)")
            crowd = [await LineSocket.connect(port, source="127.0.0.2") for _ in range(16)]
            for client in crowd:
                await client.read_until(b"welcome")
            late = await LineSocket.connect(port, source="127.0.0.2")
            assert await late.read_to_eof() == [
                b"-!- refused: 16 connections from your address already (the most)\r"
            ]
            local = await LineSocket.connect(port)  # this machine's own: exempt
            await local.read_until(b"welcome")
            for client in [*crowd, late, local]:
                client.close()
