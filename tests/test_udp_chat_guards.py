"""The UDP chat against hostile shapes: one host taking every peer slot, and a spoofed
source turning the server into a reflector (its output to an address it has not
validated is at most three times what it received, and no room traffic)."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from triosock._cli.chat import PER_ADDRESS_DEFAULT
from triosock._sansio.chat import REFLECTION_FACTOR, address_token, notice_token_untrusted
from triosock._services.chat import ChatServer
from triosock._services.chat._udp import _SECRET as SECRET
from triosock._services.chat._udp import NOTICE_INTERVAL
from triosock._transport.peraddress import source_key
from triosock._transport.udp.guards import ADDRESS_NOTICE_INTERVAL

from .chattools import LineSocket, chat_servers, join_over_udp, validate_udp_socket
from .clitools import PYTHON, cli_server, line_process, run
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
    chat = ChatServer(resume_window=0)  # an expired peer leaves at once
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
                await late.send(b"x" * 20)  # 60 bytes of budget: the 59-byte refusal fits
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


# -- finding 7: an address is validated before it hears anything -----------------------


async def _busy_room(port: int, until: float) -> None:
    """A TCP user saying 20 lines a second in #lobby until ``until``."""
    speaker = await LineSocket.connect(port)
    try:
        await speaker.read_until(b"welcome")
        n = 0
        while trio.current_time() < until:
            await speaker.send(b"busy line %d\n" % n)
            n += 1
            await trio.sleep(0.05)
    finally:
        speaker.close()


async def test_a_first_datagram_gets_at_most_three_times_its_bytes_and_no_room_traffic(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each of these is an address the server has never heard from, sending once while the
    room is busy at 20 lines a second; in 10 s each gets back at most three times what it
    sent: nothing to ``^hb^``, ``/who``, ``/help`` or 9 bytes (the notice is 30), exactly
    the notice to 10 bytes; a validated member meanwhile hears the room."""
    assert REFLECTION_FACTOR == 3
    firsts = [b"^hb^", b"/who", b"/help", b"x" * 9, b"y" * 10, b"/help me, I am new"]
    with trio.fail_after(100):
        async with chat_servers(ChatServer(rate=None), peer_idle_timeout=30) as (tcp, udp, n):
            member = await join_over_udp(udp.port)
            start = trio.current_time()
            n.start_soon(_busy_room, tcp.port, start + 10)
            strangers = [await udp_socket(udp.port) for _ in firsts]
            for sock, first in zip(strangers, firsts, strict=True):
                await sock.send(first)
            heard: list[bytes] = []
            replies: list[list[tuple[float, bytes]]] = [[] for _ in strangers]

            async def listen(i: int) -> None:
                replies[i] = await replies_until(strangers[i], start + 10)

            async with trio.open_nursery() as listeners:
                for i in range(len(strangers)):
                    listeners.start_soon(listen, i)
                with trio.move_on_at(start + 10):
                    while True:
                        heard.append(await member.receive())
            got = [[data for _, data in pairs] for pairs in replies]
            assert sum(b"busy line" in line for line in heard) >= 190  # the room was busy
            for first, answers in zip(firsts, got, strict=True):
                assert sum(map(len, answers)) <= 3 * len(first), (first, answers)
            assert got[:4] == [[], [], [], []]
            for sock, answer in zip(strangers[4:], got[4:], strict=True):
                port = sock.getsockname()[1]
                token = address_token(SECRET, "127.0.0.1", port)
                assert answer == [b"send " + token + b" to join\n"]
                assert len(answer[0]) == 30 == 3 * 10
            for sock in strangers:
                sock.close()
            await member.aclose()


async def test_repeated_commands_from_an_unvalidated_address_get_a_paced_notice_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A ``/who`` every half second for 10 s (80 bytes) earns 240 bytes; it gets the
    30-byte notice twice (5 s apart: one may have been lost), never the answer."""
    assert NOTICE_INTERVAL == 5
    with trio.fail_after(100):
        async with chat_servers(ChatServer(rate=None), peer_idle_timeout=30) as (tcp, udp, n):
            n.start_soon(_busy_room, tcp.port, trio.current_time() + 10)
            stranger = await udp_socket(udp.port)
            start = trio.current_time()
            got = []
            for _ in range(20):
                await stranger.send(b"/who")
                got += await replies_until(stranger, trio.current_time() + 0.5)
            # The third /who (36 bytes of budget) is the first that pays for the notice.
            assert [when - start for when, _ in got] == pytest.approx([1.0, 6.0])
            token = address_token(SECRET, "127.0.0.1", stranger.getsockname()[1])
            assert [data for _, data in got] == [b"send " + token + b" to join\n"] * 2
            assert sum(len(data) for _, data in got) <= 3 * 4 * 20
            stranger.close()


async def test_an_echoed_notice_or_a_wrong_token_never_validates_the_token_does() -> None:
    """An echo server at a spoofed source returns the notice whole: not the token.
    Another address's token is not this one's. The token itself makes a member."""
    with trio.fail_after(GUARD):
        async with chat_servers(ChatServer()) as (tcp, udp, _):
            watcher = await LineSocket.connect(tcp.port)
            await watcher.read_until(b"welcome")
            peer = await udp_socket(udp.port)
            name = b"127.0.0.1:%d" % peer.getsockname()[1]
            await peer.send(b"hello, may I join?")
            notice = await peer.recv(2048)
            token = notice_token_untrusted(notice)
            assert token is not None
            await peer.send(notice)  # an echo: no answer (it could be another server's)
            await peer.send(notice.rstrip())
            other = address_token(SECRET, "127.0.0.1", peer.getsockname()[1] ^ 1)
            await peer.send(other)
            await peer.send(token[:-1])
            await peer.send(b"said before the token")
            await peer.send(token.upper() + b"\r\n")  # as a terminal may type it
            assert await peer.recv(2048) == b"* " + name + b" joined #lobby\n"
            await peer.send(b"said after the token")
            await watcher.read_until(name + b": said after the token")
            said = [line for line in watcher.lines if name in line]
            assert said == [
                b"* " + name + b" joined #lobby",
                b"[#lobby] " + name + b": said after the token",
            ]
            peer.close()
            watcher.close()


async def test_a_join_notice_from_another_server_is_never_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two chat servers, each the other's spoofed source, would pass notices back and
    forth: a datagram that is a join notice earns nothing, not even budget."""
    with trio.fail_after(100):
        async with chat_servers(ChatServer()) as (_, udp, _):
            peer = await udp_socket(udp.port)
            foreign = b"send ^ok^0123456789ab to join\n"
            assert notice_token_untrusted(foreign) == b"^ok^0123456789ab"
            for _ in range(3):
                await peer.send(foreign)  # 90 bytes: 3x would pay for the notice
            assert await replies_until(peer, trio.current_time() + 10) == []
            await peer.send(b"0123456789")  # 30 bytes of budget: the notice's own due
            notice = await peer.recv(2048)
            assert notice_token_untrusted(notice) is not None
            assert udp.statistics().datagrams_out == 1
            peer.close()


async def test_chat_join_validates_by_itself_and_the_user_never_sees_the_notice() -> None:
    with trio.fail_after(GUARD):
        args = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--web", "none"]
        async with cli_server(args, ready_lines=2) as server:
            tcp, udp = server.port("chat (tcp)"), server.port("chat (udp)")
            watcher = await LineSocket.connect(tcp)
            await watcher.read_until(b"welcome")
            join = [PYTHON, "-m", "triosock", "chat", "join", f"127.0.0.1:{udp}", "--udp"]
            async with line_process([*join, "--nick", "dave"]) as dave:
                await watcher.read_until(b"is now known as dave")
                await dave.send(b"hi from dave")
                await watcher.read_until(b"[#lobby] dave: hi from dave")
                await dave.expect(b"[#lobby] dave: hi from dave")
                await dave.send(b"/quit")
                await dave.expect(b"Bye!")
                assert await dave.process.wait() == 0
            assert not any(b"^ok^" in line or b"to join" in line for line in dave.seen)
            watcher.close()


async def test_per_address_reaches_the_udp_listener_and_bad_values_are_refused() -> None:
    with trio.fail_after(GUARD):
        serve = ["chat", "serve", "--tcp", "none", "--udp", "127.0.0.1:0", "--web", "none"]
        for value, message in [("0", b"must be at least 1"), ("x", b"not a whole number")]:
            refused = await run([PYTHON, "-m", "triosock", *serve, "--per-address", value])
            assert refused.returncode == 2
            assert message in refused.stderr
        async with cli_server([*serve, "--per-address", "2"]) as server:
            port = server.port("chat (udp)")
            crowd = [plain_socket(port, "127.0.0.7") for _ in range(3)]
            for sock in crowd:
                sock.send(b"hello, may I join please?")
                sock.settimeout(GUARD)
            assert all(notice_token_untrusted(sock.recv(2048)) for sock in crowd[:2])
            assert crowd[2].recv(2048) == REFUSAL.replace(b"16", b"2")
            for sock in crowd:
                sock.close()


async def test_an_address_gets_its_slots_back_as_its_peers_expire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(100):
        async with chat_servers(ChatServer(), max_peers_per_address=2, peer_idle_timeout=10) as (
            _,
            udp,
            _,
        ):
            first = [await udp_socket(udp.port, "127.0.0.9") for _ in range(3)]
            for sock in first:
                await sock.send(b"hello, may I join please?")
            answers = [await replies_until(sock, trio.current_time() + 1) for sock in first]
            assert [len(answer) for answer in answers] == [1, 1, 1]
            assert answers[2][0][1] == REFUSAL.replace(b"16", b"2")
            assert udp.statistics().peers == 2
            await trio.sleep(10)  # both expire, silent since they asked
            assert udp.statistics().peers == 0
            again = await udp_socket(udp.port, "127.0.0.9")
            await validate_udp_socket(again)
            assert udp.statistics().peers == 1
            for sock in [*first, again]:
                sock.close()


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
    ],
)
def test_ipv6_sources_count_by_their_64(ip: str, key: str) -> None:
    assert source_key(ip) == key
