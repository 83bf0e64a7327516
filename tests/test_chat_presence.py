"""Presence in crowded rooms: a count every while instead of a line per join and leave.

A line per arrival costs a room a line per member, so n arrivals cost n² lines (the soak's
1,000 silent connections in ``#lobby``, or a UDP flood from 10,000 addresses). Past
``presence_limit`` members a room gets ``* J joined, L left #room`` every
``presence_interval`` seconds instead, while its joiner still sees its own join line.
"""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing
from websockets.trio.client import connect

from triosock import serve_websocket
from triosock._sansio import chat as proto
from triosock.chat import ChatServer

from .chattools import LineSocket, chat_servers, validate_udp_socket
from .clitools import PYTHON, cli_server, line_process, need, run
from .conftest import GUARD


async def _member(port: int) -> tuple[LineSocket, bytes]:
    """A TCP user; its nick, from its own join line."""
    user = await LineSocket.connect(port)
    line = await user.read_until(b" joined #lobby")
    return user, line.split()[1]


async def test_a_crowded_room_gets_counts_and_a_small_one_a_line_each(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # closing leaves at once (detaching and resuming: test_chat_resume)
    chat = ChatServer(presence_limit=3, presence_interval=5, resume_window=0)
    with trio.fail_after(100):
        async with chat_servers(chat) as (tcp, udp, _):
            first, _nick = await _member(tcp.port)
            others = [await _member(tcp.port) for _ in range(2)]
            for _, nick in others:  # up to 3 members: a line each
                await first.read_until(b"* " + nick + b" joined #lobby")
            crowd = [await _member(tcp.port)]  # 4: counted
            start = trio.current_time()  # when the first of the crowd joined
            crowd.append(await _member(tcp.port))  # and 5
            # The joiners saw their own join lines (_member waited for them) ...
            peer = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
            await peer.connect(("127.0.0.1", udp.port))
            await validate_udp_socket(peer)  # a sixth, over UDP
            # ... and the room one count, one interval after the first of them.
            line = await first.read_until(b" joined, ")
            assert line == b"* 3 joined, 0 left #lobby"
            assert trio.current_time() - start == pytest.approx(5)
            # nobody saw a line of its own for the crowd's arrivals
            for _, nick in crowd:
                assert not any(nick + b" joined" in seen for seen in first.lines)
            await first.send(b"/who\n")
            who = await first.read_until(b"-!- in #lobby: ")
            assert who.count(b", ") == 5  # six members: /who lists everyone
            # Leaving a crowded room is counted too; once it is small again, a line each.
            crowd[1][0].close()  # 5 members left: still crowded
            await peer.send(b"quit")  # 4 left: still crowded
            await first.read_until(b"* 0 joined, 2 left #lobby")
            peer.close()
            crowd[0][0].close()  # 4 members before, 3 after: a line
            await first.read_until(b"* " + crowd[0][1] + b" left #lobby")
            for user, _ in [(first, b""), *others]:
                user.close()


async def test_a_websocket_client_gets_the_count_as_a_crowd_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(presence_limit=1, presence_interval=2)
    with trio.fail_after(100):
        async with chat_servers(chat) as (tcp, _, nursery):
            web = await nursery.start(
                lambda task_status: serve_websocket(
                    chat.serve_websocket_peer, 0, grace_period=1, task_status=task_status
                )
            )
            async with connect(f"ws://127.0.0.1:{web.port}/") as ws:
                got: list[dict[str, object]] = []
                while not any(e.get("type") == "joined" for e in got):
                    got += [json.loads(line) for line in str(await ws.recv()).splitlines()]
                user, nick = await _member(tcp.port)  # the room has 2: over the limit
                got = []
                while not any(e.get("type") == "crowd" for e in got):
                    got += [json.loads(line) for line in str(await ws.recv()).splitlines()]
                assert got[-1] == {"type": "crowd", "room": "#lobby", "joined": 1, "left": 0}
                assert not any(e.get("nick") == nick.decode() for e in got)
                user.close()


async def test_presence_limit_none_keeps_a_line_per_join(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(presence_limit=None)
    with trio.fail_after(100):
        async with chat_servers(chat) as (tcp, _, _):
            first, _ = await _member(tcp.port)
            users = [await _member(tcp.port) for _ in range(150)]  # past the default of 100
            for _, nick in users:
                await first.read_until(b"* " + nick + b" joined #lobby")
            for user, _ in [(first, b""), *users]:
                user.close()


def test_the_crowd_event_round_trips_and_bad_counts_are_refused() -> None:
    crowd = proto.Crowd("#lobby", 37, 12)
    data = proto.encode_event(crowd)
    assert data == b'{"joined":37,"left":12,"room":"#lobby","type":"crowd"}'
    assert proto.decode_event_untrusted(data) == crowd
    assert proto.render_line(crowd) == b"* 37 joined, 12 left #lobby"
    assert proto.render_json(crowd) == data + b"\n"
    for bad in (b'"37"', b"-1", b"true", b"1.5", b"null"):
        with pytest.raises(proto.ChatError, match="non-negative integer"):
            proto.decode_event_untrusted(
                b'{"joined":' + bad + b',"left":0,"room":"#lobby","type":"crowd"}'
            )
    with pytest.raises(proto.ChatError, match="must be a string"):
        proto.decode_event_untrusted(b'{"room":"#lobby","nick":5,"type":"joined"}')
    with pytest.raises(TypeError, match="non-negative int"):
        proto.encode_event(proto.Crowd("#lobby", -1, 0))
    with pytest.raises(ValueError, match="presence_limit"):
        ChatServer(presence_limit=0)
    with pytest.raises(ValueError, match="presence_interval"):
        ChatServer(presence_interval=0)


async def test_the_command_line_presence_options_reach_nc_users() -> None:
    """``--presence-limit 1`` through the CLI: an nc user sees the count; bad values are
    one line and exit 2."""
    nc = need("nc")
    with trio.fail_after(GUARD):
        serve = ["python", "-m", "triosock", "chat", "serve", "--tcp", "127.0.0.1:0"]
        for bad in (["--presence-limit", "0"], ["--presence-interval", "-1"]):
            result = await run([PYTHON, *serve[1:], *bad])
            assert result.returncode == 2, result
            assert len(result.stderr.decode().strip().splitlines()) == 1, result.stderr
        options = ["--presence-limit", "1", "--presence-interval", "0.5", "--status", "none"]
        options += ["--resume-window", "0"]  # a closed connection leaves at once
        args = [*serve[3:], "--udp", "none", "--web", "none", *options]
        async with cli_server(args) as server:
            port = server.port("chat (tcp)")
            async with line_process([nc, "127.0.0.1", str(port)]) as watcher:
                await watcher.expect(b"joined #lobby")
                second, nick = await _member(port)  # two members: over the limit of 1
                assert await watcher.expect(b" joined, ") == b"* 1 joined, 0 left #lobby"
                assert not any(nick + b" joined" in seen for seen in watcher.seen)
                second.close()
                # one member after it: a line again
                assert await watcher.expect(b" left #lobby") == b"* " + nick + b" left #lobby"
                await watcher.close_stdin()
