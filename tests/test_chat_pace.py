"""Flood pacing over real sockets: a sender is slowed by its own rate limit, never cut off,
and everything it sends costs the same budget, refused or not.

* A WebSocket paste of separate messages, held back by the rate limit for longer than
  the keepalive's timeout, keeps its connection: every reader gets every line, in order.
* Refused WebSocket input (``{}`` lines) and telnet's ``IAC AYT`` are answered at the
  rate limit's pace (``burst`` at once, then ``rate`` a second), and a chat pair in
  another room goes on being served meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import math

import pytest
import trio
import trio.testing
from websockets.frames import Frame, Opcode
from websockets.trio.client import ClientConnection, connect

from triosock import TCPConnection, TCPServer, serve_tcp
from triosock._services.chat._tcp import FEED_SLICE, TCPLineMember
from triosock._transport.rawsocket import STREAMING_RECEIVE_SIZE
from triosock.chat import ChatServer, WebSocketMember

from .chattools import LineSocket, web_chat
from .conftest import GUARD
from .test_chat_web import RawClient

IAC_AYT = b"\xff\xf6"


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


async def texts(ws: ClientConnection) -> list[str]:
    """Each event of the next message as text: its ``text`` (a line, a notice), or its
    type and nick (``joined guest3``)."""
    message = await ws.recv()
    assert isinstance(message, str)
    events = [json.loads(line) for line in message.splitlines()]
    return [e["text"] if "text" in e else f"{e['type']} {e.get('nick')}" for e in events]


async def until(ws: ClientConnection, wanted: str) -> None:
    while wanted not in await texts(ws):
        pass


async def test_a_websocket_paste_of_separate_messages_outlasting_the_keepalive_arrives_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 1,000 messages at 50 a second after a burst of 100: 18 virtual seconds held back,
    # nine times the keepalive's timeout of 2 s. A browser sends no pings (the client's
    # own keepalive is off, as a browser's): the server's pings are the liveness check.
    # Each message is 1 KB, so the paste (1 MB) is more than the kernel holds: the server
    # must leave it there, holding no more than its queue's 16 messages and one read.
    chat = ChatServer(rate=50, burst=100)
    count = 1_000
    expected = [f"paste line {i:05d} " + "x" * 1000 for i in range(count)]
    most_queued = 16 + STREAMING_RECEIVE_SIZE // 1000 + 1
    with trio.fail_after(count):  # virtual seconds
        async with web_chat(chat, ping_interval=2, ping_timeout=2) as (tcp_port, _, web_port):
            reader = await LineSocket.connect(tcp_port)
            await reader.read_until(b"guest1 joined")
            async with (
                connect(ws_url(web_port), ping_interval=None) as watcher,
                connect(ws_url(web_port), ping_interval=None) as paster,
            ):
                await until(paster, "joined guest3")
                got: dict[str, list[str]] = {"watcher": [], "paster": []}

                async def receive_all(name: str, ws: ClientConnection) -> None:
                    lines = got[name]
                    while len(lines) < count:
                        lines += [t for t in await texts(ws) if t.startswith("paste line")]

                async def read_lines() -> None:
                    while sum(b"guest3: paste" in line for line in reader.lines) < count:
                        await reader.read_some()

                queued = 0  # the most of the paster's messages the server held at once

                async def sample_queue() -> None:
                    nonlocal queued
                    (user,) = [u for u in chat._sessions.users.values() if u.core.nick == "guest3"]
                    assert isinstance(user.member, WebSocketMember)
                    frames = user.member.connection.recv_messages.recv_frames
                    while True:
                        queued = max(queued, frames.statistics().current_buffer_used)
                        await trio.sleep(0.01)

                start = trio.current_time()
                with trio.move_on_after(60):  # enough for 18 s of pacing; what came is judged
                    async with trio.open_nursery() as sampling:
                        sampling.start_soon(sample_queue)
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(receive_all, "watcher", watcher)
                            nursery.start_soon(receive_all, "paster", paster)
                            nursery.start_soon(read_lines)
                            for line in expected:  # one message each, as fast as it can
                                await paster.send(line)
                        sampling.cancel_scope.cancel()
                took = trio.current_time() - start
                closed = f"{paster.close_code} {paster.close_reason}"
                assert paster.close_code is None, f"the paster was closed: {closed}"
                await paster.send("/who")  # still connected, still served
                await until(paster, "in #lobby: guest1, guest2, guest3")
            reader.close()
    said = [line.removeprefix(b"[#lobby] guest3: ").decode() for line in reader.lines]
    assert [line for line in said if line.startswith("paste line")] == expected
    assert got["watcher"] == expected
    assert got["paster"] == expected
    assert took == pytest.approx((count - 100) / 50, rel=0.05)  # held back all along
    assert chat.statistics().paced > 0
    assert 16 <= queued <= most_queued, f"{queued} messages held, over {most_queued}"


async def test_a_websocket_client_that_stops_answering_is_still_closed_by_the_keepalive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The rule that spares a paced paster does not spare a dead client: a peer that
    # sends nothing and answers no ping is closed with 1011 once the ping (every 2 s)
    # has had no pong for 3 s, as websockets' own keepalive does.
    with trio.fail_after(60):
        async with web_chat(ChatServer(), ping_interval=2, ping_timeout=3) as (_, _, web_port):
            start = trio.current_time()
            dead = await RawClient.connect(web_port)  # answers nothing, reads only below
            received = b""
            with trio.fail_after(5.5):  # the first ping at 2 s, its deadline at 5 s
                while data := await dead.sock.recv(65536):  # read, but never answered
                    received += data
            dead.sock.close()
            dead.protocol.receive_data(received)
            close = dead.protocol.close_rcvd
            assert close is not None
            assert (close.code, close.reason) == (1011, "keepalive ping timeout")
            assert trio.current_time() - start >= 5


async def test_a_websocket_client_whose_frames_keep_coming_is_alive_until_they_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A pong may wait behind the client's data on a slow link too: a window of the ping's
    # timeout in which a frame of its arrived starts another. Once its frames stop, the
    # next whole window (3 s) without one closes it.
    with trio.fail_after(120):
        async with web_chat(ChatServer(), ping_interval=2, ping_timeout=3) as (_, _, web_port):
            client = await RawClient.connect(web_port)  # answers no ping
            start = trio.current_time()
            received = b""
            closed_after = math.inf

            async def read_to_the_end() -> None:  # read, but never answered
                nonlocal received, closed_after
                while data := await client.sock.recv(65536):
                    received += data
                closed_after = trio.current_time() - start

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_to_the_end)
                with contextlib.suppress(OSError):  # closed under it (the test fails)
                    for i in range(20):  # a line a second for 20 s, ten pings unanswered
                        await client.send_frame(Frame(Opcode.TEXT, b"line %d" % i))
                        await trio.sleep(1)
            client.sock.close()
    client.protocol.receive_data(received)
    close = client.protocol.close_rcvd
    assert close is not None
    assert (close.code, close.reason) == (1011, "keepalive ping timeout")
    assert 20 <= closed_after <= 19 + 3 + 3  # the last frame's window, then one more


RATE, BURST, WINDOW = 50, 100, 10.0  # the flood is judged over 10 virtual seconds
MOST = BURST + RATE * WINDOW  # 600 answers at most; as many at least (the flood is big)


async def quiet_pair(tcp_port: int) -> tuple[LineSocket, LineSocket]:
    """Two TCP users in #quiet, each having seen the other arrive."""
    talker, listener = await LineSocket.connect(tcp_port), await LineSocket.connect(tcp_port)
    for user in (talker, listener):
        await user.send(b"/join #quiet\n")
        await user.read_until(b"joined #quiet")
    await talker.read_until(b"joined #quiet")  # the listener's arrival
    return talker, listener


async def round_trips(talker: LineSocket, listener: LineSocket, count: int) -> int:
    """Say ``count`` lines in #quiet, each after the last one arrived; how many did."""
    for i in range(count):
        await talker.send(b"quiet line %d\n" % i)
        await listener.read_until(b"quiet line %d" % i)
    return count


async def test_a_websocket_flood_of_refused_lines_is_answered_at_the_rate_limits_pace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=RATE, burst=BURST)
    flood = "{}\n" * 21_845  # 65,535 bytes: as big as a message may be, all refused
    with trio.fail_after(120):
        async with web_chat(chat, ping_interval=None) as (tcp_port, _, web_port):
            talker, listener = await quiet_pair(tcp_port)
            async with connect(ws_url(web_port), ping_interval=None) as flooder:
                await until(flooder, "joined guest3")
                answered: list[float] = []

                async def count_refusals() -> None:
                    while True:
                        refused = [t for t in await texts(flooder) if t.startswith("refused")]
                        answered.extend(trio.current_time() for _ in refused)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(count_refusals)
                    start = trio.current_time()
                    for _ in range(3):  # 65,535 refusals queued, far more than 10 s' worth
                        await flooder.send(flood)
                    with trio.move_on_at(start + WINDOW):
                        done = await round_trips(talker, listener, 50)  # meanwhile, served
                    await trio.sleep_until(start + WINDOW)
                    nursery.cancel_scope.cancel()
            talker.close()
            listener.close()
    within = [t for t in answered if t <= start + WINDOW]
    assert abs(len(within) - MOST) <= 1, f"{len(within)} refusals in {WINDOW} s, not {MOST}"
    assert done == 50
    # the pace itself: the burst at once, then one every 1/RATE seconds
    assert answered[BURST - 1] - start < 0.01
    assert answered[BURST + RATE - 1] - start == pytest.approx(1.0, abs=0.03)


async def test_telnet_floods_of_are_you_there_and_options_are_answered_at_the_pace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=RATE, burst=BURST)
    with trio.fail_after(120):
        async with web_chat(chat) as (tcp_port, _, _):
            talker, listener = await quiet_pair(tcp_port)
            ayt, options = await LineSocket.connect(tcp_port), await LineSocket.connect(tcp_port)
            for flooder in (ayt, options):
                await flooder.read_until(b"welcome")
            start = trio.current_time()
            await ayt.send(IAC_AYT * 20_000)
            await options.send(b"\xff\xfd\x01" * 20_000)  # DO ECHO, answered WONT ECHO
            with trio.move_on_at(start + WINDOW):
                done = await round_trips(talker, listener, 50)  # meanwhile, served
            received = {ayt: b"", options: b""}

            async def take(flooder: LineSocket) -> None:
                while True:
                    received[flooder] += await flooder.sock.recv(65536)

            with trio.move_on_at(start + WINDOW):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(take, ayt)
                    nursery.start_soon(take, options)
            for user in (talker, listener, ayt, options):
                user.close()
    answers = received[ayt].count(b"yes, the server is here")
    assert abs(answers - MOST) <= 1, f"{answers} AYT answers in {WINDOW} s, not {MOST}"
    answers = received[options].count(b"\xff\xfc\x01")
    assert abs(answers - MOST) <= 1, f"{answers} WONT answers in {WINDOW} s, not {MOST}"
    assert done == 50


async def test_a_64_kib_read_of_telnet_commands_is_parsed_4_kib_at_a_time() -> None:
    # 32,768 `IAC AYT` in one write: the member hands the session 2,048 items at a time
    # (FEED_SLICE, 4 KiB), the next slice parsed only once these were carried out, so
    # the parsing never holds the server for the whole read, nor the items its memory.
    assert FEED_SLICE == 4096
    bursts: list[int] = []

    async def handler(conn: TCPConnection) -> None:
        member = TCPLineMember(conn, 4096)
        assert await member.screen() is None
        while (burst := await member.receive()) is not None:
            bursts.append(len(burst))

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(serve_tcp, handler, 0)
            client = await LineSocket.connect(server.port)
            await client.send(b"\xff\xf6" * 32768)
            client.sock.shutdown(trio.socket.SHUT_WR)
            while await client.receive():
                pass  # nothing is answered here: the session is not running
            client.close()
            nursery.cancel_scope.cancel()
    assert sum(bursts) == 32768
    assert max(bursts) == 2048
