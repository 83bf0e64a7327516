"""The UDP chat against hostile shapes: one host taking every peer slot, and a spoofed
source turning the server into a reflector (its output to an address it has not
validated is at most three times what it received, and no room traffic)."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from triosock._cli.chat import PER_ADDRESS_DEFAULT
from triosock._sansio.chat import notice_token_untrusted
from triosock._services.chat import ChatServer
from triosock._transport.udp.server import ADDRESS_NOTICE_INTERVAL

from .chattools import LineSocket, chat_servers, validate_udp_socket
from .clitools import cli_server
from .conftest import GUARD

#: What one address over its limit is told (when its datagram is big enough).
REFUSAL = b"refused: 16 UDP peers from your address already (the most)\n"


async def udp_socket(port: int, host: str = "127.0.0.1") -> trio.socket.SocketType:
    """A plain UDP socket bound on ``host``, connected to the server's ``port``."""
    sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    await sock.bind((host, 0))
    await sock.connect(("127.0.0.1", port))
    return sock


def plain_socket(port: int, host: str) -> socket.socket:
    """A stdlib UDP socket on ``host`` connected to ``port``: its sends never wait, and
    :func:`held` tells what it received without waiting."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def held(sock: socket.socket) -> bytes:
    """The datagram ``sock`` holds now, or b"" when none has arrived."""
    try:
        return sock.recv(65536, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return b""


async def replies_until(sock: trio.socket.SocketType, deadline: float) -> list[tuple[float, bytes]]:
    """Every datagram ``sock`` receives until ``deadline``, with when (trio time)."""
    got: list[tuple[float, bytes]] = []
    with trio.move_on_at(deadline):
        while True:
            data = await sock.recv(65536)
            got.append((trio.current_time(), data))
    return got


# -- finding 6: one host cannot take every peer slot ------------------------------------


async def test_eleven_hundred_peers_from_one_address_take_sixteen_slots_not_the_table() -> None:
    """1,100 sockets of 127.0.0.2 send ``^hb^`` once each; the table has room for 1,024.
    Sixteen become peers, the rest are dropped and counted (a 4-byte datagram is too
    small to be told anything), and a user of another address is still served."""
    assert PER_ADDRESS_DEFAULT == 16
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with chat_servers(chat, max_peers_per_address=PER_ADDRESS_DEFAULT) as (tcp, udp, _):
            crowd = [plain_socket(udp.port, "127.0.0.2") for _ in range(1100)]
            for sock in crowd:
                sock.send(b"^hb^")
            # Another host; its datagrams come after the crowd's, which the server has
            # read once it answers.
            user = await udp_socket(udp.port, "127.0.0.3")
            await validate_udp_socket(user)
            watcher = await LineSocket.connect(tcp.port)
            await watcher.read_until(b"welcome")
            await user.send(b"served")
            await watcher.read_until(b"127.0.0.3:%d: served" % user.getsockname()[1])
            figures = udp.statistics()
            assert figures.peers == 16 + 1
            assert figures.dropped_address_limit == 1100 - 16
            assert figures.dropped_peer_limit == 0
            assert figures.dropped == 1100 - 16
            assert [held(sock) for sock in crowd] == [b""] * 1100
            for sock in crowd:
                sock.close()
            user.close()
            watcher.close()


async def test_the_command_lines_limit_is_sixteen_its_notice_paced_and_localhost_exempt() -> None:
    with trio.fail_after(GUARD):
        args = ["chat", "serve", "--tcp", "none", "--udp", "127.0.0.1:0", "--web", "none"]
        async with cli_server(args) as server:
            port = server.port("chat (udp)")
            line = b"hello, may I join please?"  # 25 bytes: 3x covers either answer
            crowd = [plain_socket(port, "127.0.0.4") for _ in range(20)]
            for sock in crowd:
                sock.send(line)
            # The server read all twenty before it answers this one.
            marker = await udp_socket(port, "127.0.0.5")
            await marker.send(line)
            assert notice_token_untrusted(await marker.recv(2048))
            # Sixteen peers, each sent its join notice; one refusal, then none (paced).
            for sock in crowd[:16]:
                sock.settimeout(GUARD)  # the server is another process: blocking is fine
                assert notice_token_untrusted(sock.recv(2048))
            assert [held(sock) for sock in crowd[16:]] == [REFUSAL, b"", b"", b""]
            # This machine's own address has no such limit.
            local = [plain_socket(port, "127.0.0.1") for _ in range(20)]
            for sock in local:
                sock.send(line)
                sock.settimeout(GUARD)
                assert notice_token_untrusted(sock.recv(2048))
            for sock in [*crowd, *local]:
                sock.close()
            marker.close()


async def test_an_address_over_its_limit_is_told_once_every_ten_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert ADDRESS_NOTICE_INTERVAL == 10
    with trio.fail_after(100):
        async with chat_servers(ChatServer(), max_peers_per_address=16) as (_, udp, _):
            crowd = [await udp_socket(udp.port, "127.0.0.6") for _ in range(16)]
            for sock in crowd:
                await validate_udp_socket(sock)  # members (no idle timeout here)
            late = await udp_socket(udp.port, "127.0.0.6")
            start = trio.current_time()
            told = []
            for _ in range(25):  # one a second: told at 0, 10 and 20 s
                await late.send(b"x" * 20)  # 60 bytes of budget: the 60-byte refusal
                replies = await replies_until(late, trio.current_time() + 1)
                told += [(when - start, data) for when, data in replies]
            assert [when for when, _ in told] == pytest.approx([0, 10, 20])
            assert [data for _, data in told] == [REFUSAL] * 3
            assert 3 * 19 < len(REFUSAL) <= 3 * 20
            await trio.sleep_until(start + 30)  # the next notice is due ...
            await late.send(b"x" * 19)  # ... but 3x this is too small for it
            assert await replies_until(late, trio.current_time() + 15) == []
            assert udp.statistics().dropped_address_limit == 26
            for sock in [*crowd, late]:
                sock.close()
