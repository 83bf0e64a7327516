"""TLS on the servers' API: the handshake's deadline, where it runs, what a client that
does not speak TLS gets, and the one-line errors of a client whose server's certificate
does not check out. Real sockets on 127.0.0.1, real time (the deadline is the subject):
short deadlines, each bounded from both sides."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from websockets.exceptions import InvalidStatus
from websockets.trio.client import connect

from triosock import (
    ConnectError,
    TCPConnection,
    TCPServer,
    WebSocketPeer,
    WebSocketServer,
    open_tcp_channel,
    open_tcp_stream,
    serve_http,
    serve_tcp,
    serve_websocket,
)
from triosock._transport.tls import DEFAULT_HANDSHAKE_TIMEOUT
from triosock.chat import ChatServer
from triosock.services import echo_handler, tutorial_handler

from .chattools import expect
from .conftest import GUARD
from .tlstools import Certs, make_certs

#: The deadline the deadline tests give (seconds), and how late the close may come.
DEADLINE = 0.5
LATE = 1.5


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path)


def test_the_default_handshake_deadline_is_ten_seconds() -> None:
    assert DEFAULT_HANDSHAKE_TIMEOUT == 10.0


@pytest.mark.parametrize("bad", [0, -1.0])
async def test_a_handshake_timeout_that_is_not_positive_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="handshake_timeout must be a positive number"):
        await serve_tcp(echo_handler, 0, handshake_timeout=bad)
    with pytest.raises(ValueError, match="handshake_timeout must be a positive number"):
        await serve_websocket(_echo_ws, 0, handshake_timeout=bad)


async def _closed_after(port: int, first: bytes = b"") -> float:
    """Connect without TLS, send ``first``, and return how long until the server closed."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        began = trio.current_time()
        if first:
            await stream.send_all(first)
        while await stream.receive_some():
            pass
        return trio.current_time() - began


def _lines(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    records = [r for r in caplog.records if r.name == name]
    assert all(r.exc_info is None for r in records)  # never a traceback
    return [r.getMessage() for r in records]


async def _never(conn: Any) -> None:
    raise AssertionError("the handler of a connection without a handshake ran")


async def test_a_silent_client_on_a_tls_port_is_closed_at_the_handshake_deadline(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "triosock.tcp")
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(
                    _never,
                    0,
                    ssl_context=certs.server_context(),
                    handshake_timeout=DEADLINE,
                    task_status=task_status,
                )
            )
            waited = await _closed_after(server.port)
            figures = server.statistics()
            nursery.cancel_scope.cancel()
    assert DEADLINE <= waited < DEADLINE + LATE
    assert (figures.tls_handshakes_failed, figures.total_connections) == (1, 0)
    [line] = _lines(caplog, "triosock.tcp")
    assert line.endswith(": no TLS handshake within 0.5 s; closed")
    assert line.startswith("127.0.0.1:")


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (b"hello, is this the chat?\n", "wrong version number"),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "http request"),
    ],
)
async def test_a_plaintext_client_on_a_tls_port_is_closed_at_once_with_one_line(
    certs: Certs, caplog: pytest.LogCaptureFixture, first: bytes, reason: str
) -> None:
    caplog.set_level(logging.DEBUG, "triosock.tcp")
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(
                    _never, 0, ssl_context=certs.server_context(), task_status=task_status
                )
            )
            waited = await _closed_after(server.port, first)
            failed = server.statistics().tls_handshakes_failed
            nursery.cancel_scope.cancel()
    assert waited < 2  # what it said is no handshake: no need to wait for the deadline
    assert failed == 1
    [line] = _lines(caplog, "triosock.tcp")
    assert line.endswith(f": TLS handshake failed: {reason}; closed")


async def test_a_handshake_waits_in_its_own_task_while_others_are_served(
    certs: Certs,
) -> None:
    # One client that never says hello holds its own task only: the accept loop goes
    # on, and a TLS client after it is served at once.
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(
                    echo_handler, 0, ssl_context=certs.server_context(), task_status=task_status
                )
            )
            async with await trio.open_tcp_stream("127.0.0.1", server.port):
                began = trio.current_time()
                chan = await open_tcp_channel(
                    "127.0.0.1", server.port, ssl_context=certs.client_context()
                )
                async with chan:
                    await chan.send(b"after a silent one")
                    assert await chan.receive() == b"after a silent one"
                assert trio.current_time() - began < DEFAULT_HANDSHAKE_TIMEOUT / 2
                assert server.statistics().tls_handshakes_failed == 0
            nursery.cancel_scope.cancel()


async def test_a_stop_cuts_a_handshake_short(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "triosock.tcp")
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(
                    _never,
                    0,
                    ssl_context=certs.server_context(),
                    handshake_timeout=None,  # it would wait for ever
                    grace_period=30,
                    task_status=task_status,
                )
            )
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as silent:
                # accepted, its handshake waiting for a ClientHello
                await trio.testing.wait_all_tasks_blocked()
                began = trio.current_time()
                server.stop()
                assert await silent.receive_some() == b""
            nursery.cancel_scope.cancel()
    assert trio.current_time() - began < 2  # not the grace period's 30 s
    [line] = _lines(caplog, "triosock.tcp")
    assert line.endswith(": the server stops: its TLS handshake was cut short; closed")


# -- the clients' errors --------------------------------------------------------------


def _context_for(certs: Certs, which: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if which == "expired":
        context.load_cert_chain(certs.expired_cert, certs.expired_key)
    elif which == "self-signed":
        context.load_cert_chain(certs.self_signed_cert, certs.self_signed_key)
    else:
        context.load_cert_chain(certs.cert, certs.key)
    return context


@pytest.mark.parametrize(
    ("served", "trust", "reason"),
    [
        ("expired", "ca", "certificate verify failed: certificate has expired"),
        ("self-signed", "system", "certificate verify failed: self-signed certificate"),
        ("self-signed", "ca", "certificate verify failed: self-signed certificate"),
        ("good", "system", "certificate verify failed: unable to get local issuer certificate"),
    ],
)
async def test_a_certificate_that_does_not_check_out_is_one_clear_line(
    certs: Certs, served: str, trust: str, reason: str
) -> None:
    client = certs.client_context() if trust == "ca" else ssl.create_default_context()
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(
                    echo_handler,
                    0,
                    ssl_context=_context_for(certs, served),
                    task_status=task_status,
                )
            )
            with pytest.raises(ConnectError) as failed:
                await open_tcp_stream("127.0.0.1", server.port, ssl_context=client)
            nursery.cancel_scope.cancel()
    assert str(failed.value) == f"TLS handshake with 127.0.0.1:{server.port} failed: {reason}"


@pytest.mark.parametrize(
    ("serve", "reason"),
    [
        # the echo sends the ClientHello back: a handshake message where a reply belongs
        (echo_handler, "unexpected message (does that port speak TLS?)"),
        # an HTTP server answers it with a 400, which is no TLS record
        ("http", "wrong version number (does that port speak TLS?)"),
    ],
)
async def test_a_tls_client_on_a_plaintext_port_gets_a_clear_error(
    certs: Certs, serve: Any, reason: str
) -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            if serve == "http":
                server: TCPServer = await nursery.start(
                    lambda task_status: serve_http(tutorial_handler, 0, task_status=task_status)
                )
            else:
                server = await nursery.start(
                    lambda task_status: serve_tcp(serve, 0, task_status=task_status)
                )
            with pytest.raises(ConnectError) as failed:
                await open_tcp_stream("127.0.0.1", server.port, ssl_context=certs.client_context())
            nursery.cancel_scope.cancel()
    assert str(failed.value) == f"TLS handshake with 127.0.0.1:{server.port} failed: {reason}"


# -- the services over TLS ------------------------------------------------------------


async def test_chat_lines_over_tls_fan_out_whole_and_in_order(certs: Certs) -> None:
    # A TLS stream cannot write without waiting: each member's outbox is written by its
    # writer task alone, batch by batch. A burst from one arrives whole, in order.
    chat = ChatServer(rate=None)
    with trio.fail_after(GUARD):
        async with chat, trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(
                    chat.serve_tcp_client,
                    0,
                    ssl_context=certs.server_context(),
                    task_status=task_status,
                )
            )
            users = []
            for _ in range(2):
                user = await open_tcp_channel(
                    "127.0.0.1", server.port, ssl_context=certs.client_context()
                )
                await expect(user, b"joined #lobby")
                users.append(user)
            alice, bob = users
            await expect(alice, b"guest2 joined #lobby")
            burst = [b"line %04d " % n + b"x" * 200 for n in range(500)]
            for line in burst:
                await alice.send(line)
            heard: list[bytes] = []
            while len(heard) < len(burst):
                line = await bob.receive()
                if line.startswith(b"[#lobby] guest1: "):
                    heard.append(line.removeprefix(b"[#lobby] guest1: "))
            assert heard == burst
            assert isinstance(server, TCPServer)
            for user in users:
                await user.aclose()
            nursery.cancel_scope.cancel()


async def _echo_ws(peer: WebSocketPeer) -> None:
    async for message in peer.connection:
        await peer.connection.send(message)


async def test_a_websocket_over_tls_and_its_deadline(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "triosock.websocket")
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: WebSocketServer = await nursery.start(
                lambda task_status: serve_websocket(
                    _echo_ws,
                    0,
                    ssl_context=certs.server_context(),
                    handshake_timeout=DEADLINE,
                    grace_period=0,
                    task_status=task_status,
                )
            )
            port = server.port
            # The page's own origin over https is accepted; another host's is not.
            async with connect(
                f"wss://127.0.0.1:{port}/ws",
                ssl=certs.client_context(),
                origin=f"https://127.0.0.1:{port}",  # type: ignore[arg-type]
            ) as ws:
                await ws.send("over wss")
                assert await ws.recv() == "over wss"
            with pytest.raises(InvalidStatus, match="403"):
                async with connect(
                    f"wss://127.0.0.1:{port}/ws",
                    ssl=certs.client_context(),
                    origin="https://evil.example",  # type: ignore[arg-type]
                ):
                    pass
            waited = await _closed_after(port)
            figures = server.statistics()
            nursery.cancel_scope.cancel()
    assert DEADLINE <= waited < DEADLINE + LATE
    assert figures.tls_handshakes_failed == 1
    assert figures.total_connections == 1
    lines = [line for line in _lines(caplog, "triosock.websocket") if "TLS" in line]
    assert len(lines) == 1
    assert lines[0].startswith("websocket 127.0.0.1:")
    assert lines[0].endswith(": no TLS handshake within 0.5 s; closed")


async def test_https_has_the_deadline_too(certs: Certs) -> None:
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_http(
                    tutorial_handler,
                    0,
                    ssl_context=certs.server_context(),
                    handshake_timeout=DEADLINE,
                    task_status=task_status,
                )
            )
            waited = await _closed_after(server.port)
            nursery.cancel_scope.cancel()
    assert DEADLINE <= waited < DEADLINE + LATE


async def test_a_tls_connection_handler_sees_the_handshake_done(certs: Certs) -> None:
    seen: list[bool] = []

    async def handler(conn: TCPConnection) -> None:
        stream = conn.stream
        assert isinstance(stream, trio.SSLStream)
        seen.append(stream.selected_alpn_protocol() is None and stream.version() is not None)

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(
                    handler, 0, ssl_context=certs.server_context(), task_status=task_status
                )
            )
            stream = await open_tcp_stream(
                "127.0.0.1", server.port, ssl_context=certs.client_context()
            )
            async with stream:
                assert await stream.receive_some() == b""
            nursery.cancel_scope.cancel()
    assert seen == [True]
