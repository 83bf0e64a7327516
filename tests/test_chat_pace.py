"""Flood pacing over real sockets: a sender is slowed by its own rate limit, never cut off,
and everything it sends costs the same budget, refused or not.

* A WebSocket paste of separate messages, held back by the rate limit for longer than
  the keepalive's timeout, keeps its connection: every reader gets every line, in order.
* Refused WebSocket input (``{}`` lines) and telnet's ``IAC AYT`` are answered at the
  rate limit's pace (``burst`` at once, then ``rate`` a second), and a chat pair in
  another room goes on being served meanwhile.
"""

from __future__ import annotations

import json

import trio
import trio.testing
from websockets.trio.client import ClientConnection, connect

from triosock.chat import ChatServer

from .chattools import LineSocket, web_chat
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
    chat = ChatServer(rate=50, burst=100)
    count = 1_000
    expected = [f"paste line {i:05d}" for i in range(count)]
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

                start = trio.current_time()
                with trio.move_on_after(60):  # enough for 18 s of pacing; what came is judged
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(receive_all, "watcher", watcher)
                        nursery.start_soon(receive_all, "paster", paster)
                        nursery.start_soon(read_lines)
                        for line in expected:  # one message each, sent as fast as it can
                            await paster.send(line)
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
    assert took >= (count - 100) / 50 * 0.95  # held back by the rate limit all along
    assert chat.statistics().paced > 0


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
