"""The chat service: real clients, many clients, slow clients, UDP peers."""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing

from triosock import (
    FramedChannel,
    TCPServer,
    UDPServer,
    open_tcp_channel,
    open_tcp_stream,
    serve_tcp,
    serve_udp,
)
from triosock._services.chat import ChatServer
from triosock._services.chat._tcp import LINGER

from .chattools import (
    chat_servers,
    expect,
    join_over_udp,
    lobby_user,
    socat_join,
)
from .clitools import PYTHON, cli_server, line_process, need, run
from .conftest import GUARD, reset_on_close


async def test_two_nc_clients_and_a_socat_udp_peer_share_a_room() -> None:
    nc = need("nc")
    socat = need("socat")
    with trio.fail_after(GUARD):
        async with cli_server(
            ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--web", "none"],
            ready_lines=2,
        ) as server:
            tcp_port, udp_port = server.port("chat (tcp)"), server.port("chat (udp)")
            async with (
                line_process([nc, "127.0.0.1", str(tcp_port)]) as alice,
                line_process([nc, "127.0.0.1", str(tcp_port)]) as bob,
                line_process([socat, "-", f"UDP:127.0.0.1:{udp_port}"]) as udp,
            ):
                await alice.expect(b"welcome")
                await alice.send(b"/nick alice")
                await alice.expect(b"is now known as alice")
                await bob.expect(b"welcome")
                await bob.send(b"/nick bob\r")  # CRLF, as telnet sends it
                await alice.expect(b"is now known as bob")
                await socat_join(udp)  # a line, the notice, its token: joins, says nothing
                peer = await alice.expect(b"joined #lobby")
                udp_name = peer.split()[1]
                await bob.send(b"hello room")
                for user in (alice, bob):
                    assert await user.expect(b"hello room") == b"[#lobby] bob: hello room"
                await udp.expect(b"[#lobby] bob: hello room")
                await udp.send(b"hi from udp")
                for user in (alice, bob):
                    line = await user.expect(b"hi from udp")
                    assert line == b"[#lobby] " + udp_name + b": hi from udp"
                await alice.send(b"/msg bob psst")
                assert await bob.expect(b"psst") == b"[dm from alice] psst"
                assert await alice.expect(b"psst") == b"[dm to bob] psst"
                await alice.send(b"/who")
                who = await alice.expect(b"in #lobby:")
                assert who == b"-!- in #lobby: " + b", ".join(sorted([b"alice", b"bob", udp_name]))
                await bob.send(b"/quit")
                await bob.expect(b"bye")
                await bob.close_stdin()
                assert await bob.read_to_eof() == []  # the server closed the connection
                await alice.expect(b"* bob left #lobby")
                # The DM reached only bob: neither the UDP peer nor anyone else saw it.
                await alice.send(b"marker")
                await udp.expect(b"marker")
                assert not any(b"psst" in line for line in udp.seen)


async def test_five_hundred_clients_lossless_each_gets_every_message_once_in_order() -> None:
    chat = ChatServer(policy="block")
    clients, per_client = 500, 20
    with trio.fail_after(GUARD * 4):
        async with chat_servers(chat) as (tcp, _, _):
            channels = [await open_tcp_channel("127.0.0.1", tcp.port) for _ in range(clients)]
            for n, chan in enumerate(channels):
                await chan.send(b"/nick u%d" % n)
            # Everyone is in the room once the last one sees its own rename.
            await expect(channels[-1], b"is now known as u%d" % (clients - 1))
            received: dict[int, list[bytes]] = {}

            async def reader(n: int) -> None:
                got = received.setdefault(n, [])
                chan = channels[n]
                while len(got) < clients * per_client:
                    lines = [await chan.receive()]
                    with contextlib.suppress(trio.WouldBlock):
                        while True:  # take the rest of the burst without a checkpoint each
                            lines.append(chan.receive_nowait())
                    got += [line for line in lines if line.startswith(b"[#lobby] ")]

            async def sender(n: int) -> None:
                await channels[n].send_many([b"m %d %d" % (n, i) for i in range(per_client)])

            async with trio.open_nursery() as nursery:
                for n in range(clients):
                    nursery.start_soon(reader, n)
                for n in range(clients):
                    nursery.start_soon(sender, n)
            for chan in channels:
                await chan.aclose()
    for n in range(clients):
        got = received[n]
        assert len(got) == len(set(got)) == clients * per_client
        by_sender: dict[bytes, list[int]] = {}
        for line in got:
            _, who, _, author, index = line.split(b" ")
            assert who == b"u" + author + b":"
            by_sender.setdefault(author, []).append(int(index))
        assert all(order == list(range(per_client)) for order in by_sender.values())


async def test_udp_peer_expires_at_exactly_twice_the_heartbeat(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(resume_window=0)  # it leaves at expiry (detaching: test_chat_resume)
    with trio.fail_after(1000):
        async with chat_servers(chat, peer_idle_timeout=10) as (tcp, udp, _):
            watcher = await open_tcp_channel("127.0.0.1", tcp.port)
            await expect(watcher, b"joined #lobby")
            peer = await join_over_udp(udp.port)
            await expect(watcher, b"joined #lobby")
            start = trio.current_time()
            for _ in range(3):  # heartbeats every 5 s keep it alive
                await trio.sleep(5)
                await peer.send(b"^hb^")
            last = trio.current_time()
            assert last - start == pytest.approx(15)
            line = await expect(watcher, b"left #lobby")
            assert trio.current_time() - last == pytest.approx(10)
            assert b"127.0.0.1:" in line
            assert not any(":" in user for user in await chat.users())
            await peer.aclose()
            await watcher.aclose()


async def test_shutdown_says_bye_to_udp_peers_and_goodbye_to_tcp_users(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer()
    with trio.fail_after(1000):
        async with chat, trio.open_nursery() as nursery:
            tcp: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(chat.serve_tcp_client, 0, task_status=task_status)
            )
            udp: UDPServer = await nursery.start(
                lambda task_status: serve_udp(chat.serve_udp_peer, 0, task_status=task_status)
            )
            user = await open_tcp_channel("127.0.0.1", tcp.port)
            await expect(user, b"joined #lobby")
            peers = [await join_over_udp(udp.port) for _ in range(3)]
            for peer in peers:
                await peer.send(b"hello")
            for _ in peers:
                await expect(user, b": hello")
            start = trio.current_time()
            nursery.cancel_scope.cancel()
        # Nobody waited for the 5 s grace period: the stop took the 2 s linger for the TCP
        # user, which does not close its end when the server's goodbye arrives.
        assert trio.current_time() - start == pytest.approx(LINGER)
        for peer in peers:
            while await peer.receive() != b"Bye!\n":
                pass
            await peer.aclose()
        assert await expect(user, b"server closing") == b"-!- server closing: goodbye"
        with pytest.raises(trio.EndOfChannel):
            await user.receive()
        await user.aclose()


async def test_oversized_and_invalid_lines_get_a_notice_and_the_connection_stays() -> None:
    chat = ChatServer(max_line_length=100)
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, udp, _):
            good = await open_tcp_channel("127.0.0.1", tcp.port)
            await expect(good, b"joined #lobby")
            bad = await open_tcp_channel("127.0.0.1", tcp.port)
            await expect(bad, b"joined #lobby")
            await bad.send(b"\xfe\xc3 bad utf-8 \x1b[31mred\x1b[0m \x07")
            line = await expect(good, b"bad utf-8")
            assert line == b"[#lobby] guest2: \xef\xbf\xbd\xef\xbf\xbd bad utf-8 red"
            # One over the limit, one at it, in the same write: the first is refused
            # whole, the second said whole; nobody is disconnected.
            await bad.stream.send_all(b"y" * 101 + b"\n" + b"z" * 100 + b"\n")
            refused = await expect(bad, b"refused")
            assert refused == b"-!- line refused (101 bytes): lines may be at most 100 bytes"
            assert await expect(good, b"zzz") == b"[#lobby] guest2: " + b"z" * 100
            assert await expect(bad, b"zzz") == b"[#lobby] guest2: " + b"z" * 100
            assert await chat.users() == ["guest1", "guest2"]
            # A datagram over the limit gets the same notice; the peer stays.
            peer = await join_over_udp(udp.port)
            await peer.send(b"w" * 101)
            assert await expect(peer, b"refused") == refused + b"\n"
            await peer.send(b"w" * 100)
            assert (await expect(good, b"www")).endswith(b": " + b"w" * 100)
            for chan in (good, bad):
                await chan.aclose()
            await peer.aclose()


async def test_a_nick_or_room_with_a_space_is_refused_with_why_and_the_user_stays() -> None:
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, udp, _):
            user = await lobby_user(tcp.port)
            chars = b"use only letters A-Z, digits, '_', '-' and '.'"
            await user.send(b"/nick bad nick")
            assert await expect(user, b"nick") == (
                b"-!- nick 'bad nick' contains ' ': nicks cannot contain spaces; " + chars
            )
            await user.send(b"/join my  room")
            assert await expect(user, b"room") == (
                b"-!- room 'my  room' contains ' ': room names cannot contain spaces; " + chars
            )
            # A UDP peer's commands are lines too: the same answer.
            peer = await join_over_udp(udp.port)
            await peer.send(b"/nick bad nick")
            assert await expect(peer, b"nick") == (
                b"-!- nick 'bad nick' contains ' ': nicks cannot contain spaces; " + chars + b"\n"
            )
            await user.send(b"/who")
            assert (
                await expect(user, b"in #lobby")
                == b"-!- in #lobby: 127.0.0.1:%d, guest1" % (peer.socket.getsockname()[1])
            )
            await user.aclose()
            await peer.aclose()


async def test_interactive_client_over_tcp_and_udp() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(
            ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--web", "none"],
            ready_lines=2,
        ) as server:
            tcp_port, udp_port = server.port("chat (tcp)"), server.port("chat (udp)")
            join = [PYTHON, "-m", "triosock", "chat", "join"]
            async with line_process([*join, f"127.0.0.1:{tcp_port}", "--nick", "carol"]) as carol:
                await carol.expect(b"is now known as carol")
                await carol.send(b"hello from carol")
                await carol.expect(b"[#lobby] carol: hello from carol")
                async with line_process([*join, f"127.0.0.1:{udp_port}", "--udp"]) as dave:
                    await carol.expect(b"joined #lobby")
                    await dave.send(b"hi from dave")
                    ack = await dave.expect(b"hi from dave")
                    assert ack.startswith(b"[127.0.0.1:")
                    await carol.expect(b"hi from dave")
                    await dave.send(b"/quit")
                    assert await dave.expect(b"Bye!") == b"Bye!"
                    assert await dave.process.wait() == 0
                await carol.close_stdin()  # EOF: the client says /quit and exits cleanly
                lines = await carol.read_to_eof()
                assert b"-!- bye" in lines
                assert await carol.process.wait() == 0


async def test_a_line_said_just_before_quit_still_reaches_its_sender_and_the_room() -> None:
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _udp, _):
            other = await open_tcp_channel("127.0.0.1", tcp.port)
            await expect(other, b"joined #lobby")
            hasty = await open_tcp_channel("127.0.0.1", tcp.port)
            await hasty.send_many([b"hello and goodbye", b"/quit"])  # one write, no waiting
            lines = [line async for line in hasty]
            said = lines.index(b"[#lobby] guest2: hello and goodbye")
            assert lines[-1] == b"-!- bye"
            assert said < len(lines) - 1
            assert await expect(other, b"hello and goodbye") == lines[said]
            await expect(other, b"guest2 left")
            for chan in (other, hasty):
                await chan.aclose()


async def test_lines_said_between_replies_before_eof_all_reach_their_sender() -> None:
    # Each /who reply holds the connection's send gate while the room lines fan out, so
    # the fan-out hands them to the session's writer; none may be lost at the EOF.
    chat = ChatServer(history_on_join=0)  # each connection sees only its own lines
    said = [b"line %d" % i for i in range(20)]
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _udp, _):
            for _ in range(5):
                stream = await open_tcp_stream("127.0.0.1", tcp.port)
                await stream.send_all(b"".join(line + b"\n/who\n" for line in said))
                await stream.send_eof()
                chan = FramedChannel(stream)
                lines = [line async for line in chan]
                assert [line.split(b": ", 1)[1] for line in lines if b"] guest" in line] == said
                await chan.aclose()


async def test_join_moves_a_user_between_rooms() -> None:
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _udp, _):
            stay = await open_tcp_channel("127.0.0.1", tcp.port)
            await expect(stay, b"guest1 joined #lobby")
            move = await open_tcp_channel("127.0.0.1", tcp.port)
            await expect(stay, b"guest2 joined #lobby")
            await move.send(b"/join Dev")
            assert await expect(stay, b"guest2 left") == b"* guest2 left #lobby"
            assert await expect(move, b"joined #dev") == b"* guest2 joined #dev"
            await move.send(b"only for dev")
            assert await expect(move, b"only for dev") == b"[#dev] guest2: only for dev"
            await move.send(b"/rooms")
            assert await expect(move, b"rooms:") == b"-!- rooms: #dev (1), #lobby (1)"
            await stay.send(b"lobby line")
            await expect(stay, b"lobby line")
            await move.send(b"/who")
            assert await expect(move, b"in #dev") == b"-!- in #dev: guest2"
            for chan in (stay, move):
                await chan.aclose()
    assert await chat.rooms() == {}


async def test_a_user_whose_connection_resets_leaves_and_the_room_goes_on() -> None:
    chat = ChatServer(resume_window=0)  # it leaves at once (detaching: test_chat_resume)
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _udp, _):
            talker = await open_tcp_channel("127.0.0.1", tcp.port)
            await expect(talker, b"guest1 joined")
            with trio.socket.socket() as doomed:
                await doomed.connect(("127.0.0.1", tcp.port))
                await expect(talker, b"guest2 joined")
                reset_on_close(doomed)
            # Reset, with the welcome unread. Writes to guest2 now fail, whoever makes them.
            listener = await open_tcp_channel("127.0.0.1", tcp.port)
            await expect(listener, b"guest3 joined")
            for i in range(50):
                await talker.send(b"line %d" % i)
            await expect(talker, b"guest2 left")
            for i in range(50):
                assert await expect(listener, b"line") == b"[#lobby] guest1: line %d" % i
            assert await chat.users() == ["guest1", "guest3"]
            for chan in (talker, listener):
                await chan.aclose()


async def test_a_chat_server_runs_its_fan_out_once_at_a_time() -> None:
    chat = ChatServer()
    async with chat:
        with pytest.raises(RuntimeError, match="running already"):
            async with chat:
                pass  # pragma: no cover
    async with chat:  # and again after it stopped
        pass


async def test_the_command_line_limits_reach_nc_users_and_bad_values_are_refused() -> None:
    nc = need("nc")
    with trio.fail_after(GUARD):
        # An option before "serve" counts as well as one after it.
        async with cli_server(
            [
                "chat",
                "--max-line-length",
                "10",
                "serve",
                "--tcp",
                "127.0.0.1:0",
                "--udp",
                "none",
                "--web",
                "none",
            ]
        ) as server:
            port = server.port("chat (tcp)")
            typed = b"short\n0123456789ab\n0123456789\n/quit\n"
            result = await run([nc, "-N", "127.0.0.1", str(port)], stdin=typed)
        assert result.stdout.splitlines()[3:] == [  # after the welcome, token and join
            b"[#lobby] guest1: short",
            b"-!- line refused (12 bytes): lines may be at most 10 bytes",
            b"[#lobby] guest1: 0123456789",
            b"-!- bye",
        ]
        chat_serve = [PYTHON, "-m", "triosock", "chat", "serve", "--tcp", "127.0.0.1:0"]
        for option, value, message in [
            ("--rate", "0", b"must be positive"),
            ("--rate", "fast", b"not a number"),
            ("--stall-timeout", "-1", b"must be positive"),
            ("--max-backlog", "0", b"must be at least 1"),
            ("--max-line-length", "x", b"not a whole number"),
            ("--burst", "0", b"must be at least 1"),
            ("--rate", "inf", b"must be a finite number"),
            ("--grace", "-1", b"must not be negative"),
            ("--grace", "nan", b"must be a finite number"),
            ("--expiry-factor", "0.1", b"must be at least 1"),
            ("--heartbeat", "inf", b"must be a finite number"),
        ]:
            refused = await run([*chat_serve, option, value])
            assert refused.returncode == 2
            assert message in refused.stderr
            assert b"Traceback" not in refused.stderr
