"""A member disconnected for not reading is closed with a reset, which frees what the
kernel still held for it; the other endings keep the graceful close.

A graceful close of a socket whose peer reads nothing leaves its send queue in the
kernel (FIN-WAIT-1, megabytes a reader) until the client closes, even after the server
exits; nginx's ``reset_timedout_connection`` resets such a client instead. Over real
loopback sockets: the server-side socket's entry in ``/proc/net/tcp`` (its ``tx_queue``)
is read just before the close and just after.
"""

from __future__ import annotations

import base64
import functools
import os
import socket

import pytest
import trio
import trio.testing

from triosock import WebSocketPeer, serve_tcp, serve_websocket
from triosock._transport.rawsocket import RawSocketStream
from triosock._transport.tcp import TCPConnection
from triosock._transport.websocket import WebSocketStream
from triosock.chat import ChatPage, ChatServer

from .chattools import LineSocket
from .conftest import GUARD

#: The sleeper's receive buffer (the kernel doubles it): its window stays small.
RCVBUF = 4096
#: What the chat lets wait for a member (small, so that the flood is short).
MAX_BACKLOG = 32 * 1024
LINE = b"x" * 900


def server_sockets(server_port: int, client_port: int) -> list[tuple[str, int]]:
    """The (state, tx_queue) of the server's side of each loopback TCP connection from
    ``client_port`` to ``server_port`` the kernel still has (``/proc/net/tcp``)."""
    found = []
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            fields = row.split()
            local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
            if (int(local.split(":")[1], 16), int(remote.split(":")[1], 16)) == (
                server_port,
                client_port,
            ):
                found.append((state, int(queues.split(":")[0], 16)))
    return found


async def drain_until_the_end(sleeper: trio.socket.SocketType) -> tuple[int, str]:
    """Read everything the sleeper's kernel holds; how many bytes, and how it ended."""
    got = 0
    try:
        while data := await sleeper.recv(65536):
            got += len(data)
    except ConnectionResetError:
        return got, "reset"
    return got, "eof"


async def flood_until_dropped(talker: LineSocket, said: list[bytes], sleeper: bytes) -> None:
    """Say lines until the ``sleeper`` nick leaves (dropped), reading what comes meanwhile."""
    dropped = trio.Event()

    async def talk() -> None:
        i = 0
        while not dropped.is_set():
            said.append(b"%d %s" % (i, LINE))
            await talker.send(said[-1] + b"\n")
            i += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(talk)
        await talker.read_until(b"* " + sleeper + b" left #lobby")
        dropped.set()


async def test_a_tcp_member_dropped_for_not_reading_is_reset_and_its_kernel_queue_freed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, max_backlog=MAX_BACKLOG, resume_window=0)
    closed = trio.Event()
    seen: dict[str, list[tuple[str, int]]] = {}
    server_port = 0
    sleeper_port = 0

    async def handler(conn: TCPConnection) -> None:
        try:
            await chat.serve_tcp_client(conn)
        finally:
            with trio.CancelScope(shield=True):
                if conn.remote_address[1] == sleeper_port:  # type: ignore[index]
                    seen["before"] = server_sockets(server_port, sleeper_port)
                await conn.aclose()  # the close serve_tcp makes next, made here to see it
                if conn.remote_address[1] == sleeper_port:  # type: ignore[index]
                    seen["after"] = server_sockets(server_port, sleeper_port)
                    closed.set()

    said: list[bytes] = []
    with trio.fail_after(300):
        async with chat, trio.open_nursery() as nursery:
            tcp = await nursery.start(functools.partial(serve_tcp, handler, 0, grace_period=1))
            server_port = tcp.port
            sleeper = await LineSocket.connect(server_port, rcvbuf=RCVBUF)
            sleeper_port = sleeper.sock.getsockname()[1]
            talker = await LineSocket.connect(server_port)
            await talker.read_until(b"* guest2 joined")
            await flood_until_dropped(talker, said, b"guest1")
            await closed.wait()
            # Only now does the sleeper read: what its own kernel holds, then the end.
            got, end = await drain_until_the_end(sleeper.sock)
            users = await chat.users()
            sleeper.close()
            talker.close()
            nursery.cancel_scope.cancel()
    assert chat.statistics().disconnected_slow == 1
    assert users == ["guest2"]
    # Before the close the kernel held bytes the sleeper never took; the reset freed them
    # with the socket: nothing of the server's side is left, not even a FIN-WAIT-1 entry.
    ((state, queued),) = seen["before"]
    assert state == "01"  # ESTABLISHED
    assert queued > MAX_BACKLOG  # the kernel's share: megabytes here (2.8 MB measured)
    assert seen["after"] == []
    # The sleeper read only what its receive buffer held, then saw the reset.
    assert end == "reset"
    assert 0 < got <= 4 * RCVBUF + len(LINE)


async def test_a_slow_member_that_takes_everything_during_its_goodbye_is_closed_gracefully(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, max_backlog=MAX_BACKLOG, resume_window=0)
    with trio.fail_after(300):
        async with chat, trio.open_nursery() as nursery:
            tcp = await nursery.start(
                functools.partial(serve_tcp, chat.serve_tcp_client, 0, grace_period=1)
            )
            sleeper = await LineSocket.connect(tcp.port, rcvbuf=RCVBUF)
            said: list[bytes] = []
            talker = await LineSocket.connect(tcp.port)
            await talker.read_until(b"* guest2 joined")
            await flood_until_dropped(talker, said, b"guest1")
            # Dropped, it reads at once, within its goodbye: it takes everything, the
            # notice why included, and the end is a FIN, not a reset.
            lines = await sleeper.read_to_eof()
            for member in (sleeper, talker):
                member.close()
            nursery.cancel_scope.cancel()
    assert lines[-1].startswith(b"-!- disconnected: your connection stopped taking")


class _WebSocketSleeper:
    """A WebSocket client that does the handshake and then never reads."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock

    @classmethod
    async def connect(cls, port: int) -> _WebSocketSleeper:
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        await sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16))
        await sock.send(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n" % (port, key)
        )
        return cls(sock)


async def test_a_websocket_member_dropped_for_not_reading_is_reset_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, max_backlog=MAX_BACKLOG, resume_window=0)
    closed = trio.Event()
    seen: dict[str, list[tuple[str, int]]] = {}
    web_port = 0
    sleeper_port = 0

    async def handler(peer: WebSocketPeer) -> None:
        stream = peer.connection.stream
        assert isinstance(stream, WebSocketStream)
        try:
            await chat.serve_websocket_peer(peer)
        finally:
            with trio.CancelScope(shield=True):
                seen["before"] = server_sockets(web_port, sleeper_port)
                await stream.aclose()  # what websockets does next, made here to see it
                seen["after"] = server_sockets(web_port, sleeper_port)
                closed.set()

    said: list[bytes] = []
    with trio.fail_after(300):
        async with chat, trio.open_nursery() as nursery:
            web = await nursery.start(
                functools.partial(
                    serve_websocket,
                    handler,
                    0,
                    process_request=ChatPage(chat),
                    grace_period=1,
                    ping_interval=None,
                )
            )
            tcp = await nursery.start(
                functools.partial(serve_tcp, chat.serve_tcp_client, 0, grace_period=1)
            )
            web_port = web.port
            talker = await LineSocket.connect(tcp.port)
            await talker.read_until(b"* guest1 joined")
            sleeper = await _WebSocketSleeper.connect(web_port)
            sleeper_port = sleeper.sock.getsockname()[1]
            await talker.read_until(b"* guest2 joined")
            await flood_until_dropped(talker, said, b"guest2")
            await closed.wait()
            got, end = await drain_until_the_end(sleeper.sock)
            sleeper.sock.close()
            talker.close()
            nursery.cancel_scope.cancel()
    assert chat.statistics().disconnected_slow == 1
    ((_, queued),) = seen["before"]
    assert queued > MAX_BACKLOG
    assert seen["after"] == []
    assert end == "reset"
    assert got > 0


async def test_reset_on_close_resets_only_while_the_kernel_holds_unacknowledged_bytes() -> None:
    with trio.fail_after(GUARD):
        listener = trio.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        ends = []
        for unread in (0, 4 * 1024 * 1024):  # everything taken; megabytes never read
            client = trio.socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            await client.connect(("127.0.0.1", port))
            accepted, _ = await listener.accept()
            stream = RawSocketStream(socket.socket(fileno=accepted.detach()))
            sent = stream.try_send(b"hello\n")
            got = await client.recv(64)
            if unread:
                sent += stream.try_send(b"z" * unread)
            assert (got, sent > 6) == (b"hello\n", bool(unread))
            stream.reset_on_close()
            await stream.aclose()
            ends.append(await drain_until_the_end(client))
            client.close()
        listener.close()
    (taken, end_taken), (held, end_held) = ends
    assert (taken, end_taken) == (0, "eof")  # a graceful close: the peer had it all
    assert end_held == "reset"  # what its receive buffer held, then the reset
    assert held <= 4 * RCVBUF


@pytest.fixture(autouse=True)
def _linux_only() -> None:
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("reads the kernel's socket table (/proc/net/tcp)")
