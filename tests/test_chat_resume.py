"""Sessions that resume: a session whose connection ends without ``/quit`` is detached
for the resume window, and ``/resume TOKEN`` on a new connection takes it back with
what it missed, once and in order; the room sees nothing of it."""

from __future__ import annotations

import json
import logging
import re
import signal

import pytest
import trio
import trio.testing
from websockets.trio.client import connect

from triosock import open_udp_channel
from triosock._sansio import chat as proto
from triosock._services.chat._resume import PREVIOUS_TOKEN_GRACE
from triosock.chat import ChatServer

from .chattools import (
    Events,
    LineSocket,
    MemoryMember,
    MemorySink,
    chat_servers,
    validate_udp,
    web_chat,
)
from .clitools import line_process, need
from .conftest import GUARD, reset_on_close
from .test_chat_web import ws_url

TOKEN = re.compile(rb"your resume token: ([A-Za-z0-9_-]{32}) ")
STAMPED = re.compile(rb"\[\d\d:\d\d:\d\d\] (.*)")


async def token_of(user: LineSocket) -> bytes:
    match = TOKEN.search(await user.read_until(b"your resume token"))
    assert match is not None
    return match[1]


async def cut_and_resume(port: int) -> tuple[bytes, LineSocket, LineSocket]:
    """guest1 connects and drops without /quit; once a watcher sees it away, a new
    connection resumes it. Its first token, the watcher, and the resumed connection."""
    bob = await LineSocket.connect(port)
    token = await token_of(bob)
    bob.close()
    watcher = await LineSocket.connect(port)
    await wait_away(watcher, b"guest1")
    back = await LineSocket.connect(port)
    await back.send(b"/resume " + token + b"\n")
    await back.read_until(b"welcome back, guest1")
    return token, watcher, back


async def wait_away(watcher: LineSocket, nick: bytes) -> None:
    """Until ``/who`` lists ``nick`` as away (its session is detached)."""
    while True:
        await watcher.send(b"/who\n")
        line = await watcher.read_until(b"-!- in #")
        if nick + b" (away)" in line:
            return
        await trio.sleep(0.01)


# -- the acceptance shape, with nc -----------------------------------------------------


async def test_nc_user_cut_off_resumes_with_what_it_missed_once_and_in_order() -> None:
    nc = need("nc")
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            alice = await LineSocket.connect(tcp.port)
            await alice.send(b"/nick alice\n" + b"".join(b"line %d\n" % i for i in range(1, 6)))
            await alice.read_until(b"alice: line 5")
            async with line_process([nc, "127.0.0.1", str(tcp.port)]) as bob:
                await bob.expect(b"welcome")
                token = TOKEN.search(await bob.expect(b"your resume token"))[1]  # type: ignore[index]
                await bob.expect(b"5 earlier lines")
                shown = [await bob.readline() for _ in range(5)]
                assert [STAMPED.fullmatch(x or b"")[1] for x in shown] == [  # type: ignore[index]
                    b"[#lobby] alice: line %d" % i for i in range(1, 6)
                ]
                await bob.send(b"/nick bob")
                await bob.expect(b"is now known as bob")
                await alice.read_until(b"is now known as bob")
                mark = len(alice.lines)
                bob.process.send_signal(signal.SIGKILL)  # cut off: no /quit
            await wait_away(alice, b"bob")
            await alice.send(b"after 1\nafter 2\nafter 3\n/msg bob psst\n")
            await alice.read_until(b"[dm to bob] psst")
            async with line_process([nc, "127.0.0.1", str(tcp.port)]) as back:
                await back.send(b"/resume " + token)
                first = await back.readline()
                assert first == b"-!- welcome back, bob: you were away 0 s; 4 lines came meanwhile"
                new_token = TOKEN.search(await back.readline() or b"")
                assert new_token is not None
                assert new_token[1] != token  # a token works once
                assert (await back.readline() or b"").startswith(b"-!- #lobby: 4 earlier lines")
                caught_up = [await back.readline() for _ in range(4)]
                assert [STAMPED.fullmatch(x or b"")[1] for x in caught_up] == [  # type: ignore[index]
                    b"[#lobby] alice: after 1",
                    b"[#lobby] alice: after 2",
                    b"[#lobby] alice: after 3",
                    b"[dm from alice] psst",
                ]
                assert await back.readline() == b"-!- end of earlier lines of #lobby"
                await alice.send(b"live again\n/who\n")
                assert await back.readline() == b"[#lobby] alice: live again"
                assert await alice.read_until(b"-!- in #lobby") == b"-!- in #lobby: alice, bob"
                await back.send(b"/nick bob2")
                await alice.read_until(b"bob is now known as bob2")
            room_saw = alice.lines[mark:]
            assert [x for x in room_saw if b" joined " in x or b" left " in x] == []
            alice.close()


async def test_the_old_token_is_refused_and_wrong_tokens_are_slowed_per_address(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer()
    with trio.fail_after(300):
        async with chat_servers(chat) as (tcp, _, _):
            token, watcher, back = await cut_and_resume(tcp.port)
            await back.send(b"hi\n")  # it speaks: it has its new token, the old one goes
            await watcher.read_until(b"guest1: hi")
            back.close()
            waits = []
            for attempt in range(6):
                other = await LineSocket.connect(tcp.port)
                asked = trio.current_time()
                # the old token (used once), then tokens nobody has
                wrong = token if attempt == 0 else b"x" * 31 + b"%d" % attempt
                await other.send(b"/resume " + wrong + b"\n")
                line = await other.read_until(b"resume refused")
                waits.append(round(trio.current_time() - asked, 2))
                assert line == (
                    b"-!- resume refused: no session has that token (a session waits 120 s "
                    b"after its connection is lost; /quit ends it)"
                )
                other.close()
            # 0.25 s, twice as long each time, at most 8 s
            assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
            malformed = await LineSocket.connect(tcp.port)
            await malformed.send(b"/resume short\n")
            assert await malformed.read_until(b"resume refused") == (
                b"-!- resume refused: a resume token is 32 characters: letters, digits, - and _ "
                b"(the welcome told it)"
            )
            malformed.close()
            watcher.close()


async def test_a_detached_session_leaves_when_the_window_runs_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(resume_window=30)
    with trio.fail_after(300):
        async with chat_servers(chat) as (tcp, _, _):
            alice = await LineSocket.connect(tcp.port)
            bob = await LineSocket.connect(tcp.port)
            await bob.read_until(b"your resume token")
            bob.close()
            await wait_away(alice, b"guest2")
            gone_at = trio.current_time()
            left = await alice.read_until(b"left #lobby")
            assert left == b"* guest2 left #lobby"
            assert 29.9 <= trio.current_time() - gone_at <= 30.1
            await alice.send(b"/who\n")
            assert await alice.read_until(b"-!- in #") == b"-!- in #lobby: guest1"
            alice.close()


async def test_quit_and_a_window_of_0_end_the_session_at_once() -> None:
    for window, line in ((120.0, b"/quit\n"), (0.0, b"")):
        chat = ChatServer(resume_window=window)
        with trio.fail_after(GUARD):
            async with chat_servers(chat) as (tcp, _, _):
                alice = await LineSocket.connect(tcp.port)
                bob = await LineSocket.connect(tcp.port)
                welcome = await bob.read_until(b"welcome")
                assert welcome.startswith(b"-!- welcome")
                if line:
                    await bob.send(line)
                    await bob.read_until(b"bye")
                bob.close()
                assert await alice.read_until(b"left") == b"* guest2 left #lobby"
                if not window:  # no token was told
                    assert not any(b"resume token" in x for x in bob.lines)
                alice.close()


async def test_a_resume_typed_later_ends_the_guest_visibly_and_takes_over_a_live_one() -> None:
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            alice = await LineSocket.connect(tcp.port)
            bob = await LineSocket.connect(tcp.port)
            token = await token_of(bob)
            await bob.send(b"/nick bob\n")
            await alice.read_until(b"is now known as bob")
            # a second connection, in use a while, asks for bob's session: bob's own
            # connection is still there, so it is told why and closed
            other = await LineSocket.connect(tcp.port)
            await alice.read_until(b"guest3 joined")
            await other.send(b"hello\n")
            await alice.read_until(b"guest3: hello")
            await other.send(b"/resume " + token + b"\n")
            assert await other.read_until(b"welcome back") == (
                b"-!- welcome back, bob: you were away 0 s; 0 lines came meanwhile"
            )
            lines = await bob.read_to_eof()
            assert lines[-1] == (
                b"-!- your session went on on another connection (/resume); closing this one"
            )
            assert await alice.read_until(b"left") == b"* guest3 left #lobby"
            await alice.send(b"/who\n")
            assert await alice.read_until(b"-!- in #") == b"-!- in #lobby: bob, guest1"
            await alice.send(b"/msg bob still you\n")
            assert await other.read_until(b"still you") == b"[dm from guest1] still you"
            for user in (alice, bob, other):
                user.close()


# -- WebSocket clients that count ids ----------------------------------------------------


async def test_a_websocket_client_resumes_after_the_last_id_it_saw_exactly_once() -> None:
    chat = ChatServer(rate=None)
    said = 400
    with trio.fail_after(GUARD):
        async with web_chat(chat) as (tcp, _, web):
            talker = await LineSocket.connect(tcp)
            seen: list[int] = []
            async with connect(ws_url(web)) as ws:
                events = Events(ws)
                hello = await events.next(type="hello")
                token = hello["token"]
                assert isinstance(token, str)
                assert proto.check_token_untrusted(token) is None
                assert hello["epoch"] == chat.store.epoch

                async def talk() -> None:
                    for i in range(1, said + 1):
                        await talker.send(b"t%d\n" % i)
                        if i % 50 == 0:
                            await trio.sleep(0.002)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(talk)
                    while len(seen) < 100:
                        event = await events.next(type="message")
                        seen.append(int(event["id"]))  # type: ignore[call-overload]
                    # cut: the TCP connection goes without a closing handshake
                    ws.stream.socket.close()  # type: ignore[attr-defined]
            await talker.read_until(b"t%d" % said)
            async with connect(ws_url(web)) as ws:
                events = Events(ws)
                await ws.send(
                    json.dumps(
                        {
                            "type": "resume",
                            "token": token,
                            "after": {"#lobby": seen[-1]},
                            "epoch": hello["epoch"],
                        }
                    )
                )
                again = await events.next(type="hello")
                assert again["nick"] == hello["nick"]
                assert again["token"] != token
                while seen[-1] < said:
                    event = await events.next(type="message")
                    seen.append(int(event["id"]))  # type: ignore[call-overload]
            talker.close()
    assert seen == list(range(seen[0], said + 1))


async def test_bad_resumes_get_clear_notices() -> None:
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with web_chat(chat) as (tcp, _, web):
            async with connect(ws_url(web)) as ws:
                events = Events(ws)
                token = (await events.next(type="hello"))["token"]
                assert str((await events.next(type="notice"))["text"]).startswith("welcome")
                await ws.send('{"type":"resume","token":"abc","after":{"#lobby":-1}}')
                notice = await events.next(type="notice")
                assert notice["text"] == (
                    "refused: each value of 'after' is an id: a whole number, 0 or more"
                )
                await ws.send('{"type":"resume","token":"abc","after":[1]}')
                notice = await events.next(type="notice")
                assert notice["text"] == "refused: 'after' is an object: room -> the last id seen"
                await ws.send(json.dumps({"type": "resume", "token": token}))
                notice = await events.next(type="notice")
                assert notice["text"] == "this is that session already"
            # its connection closed: detached; a resume with ids from the future and a
            # room it was never in
            alice = await LineSocket.connect(tcp)
            await alice.send(b"one\n")
            await alice.read_until(b"one")
            async with connect(ws_url(web)) as ws:
                events = Events(ws)
                await ws.send(
                    json.dumps(
                        {"type": "resume", "token": token, "after": {"#lobby": 999, "#nope": 3}}
                    )
                )
                await events.next(type="hello")
                texts = [str((await events.next(type="notice"))["text"]) for _ in range(3)]
                assert texts == [
                    "welcome back, guest1: you were away 0 s; 0 lines came meanwhile",
                    "ignored the last id of #nope: you were in #lobby",
                    "your last id of #lobby (999) is past the newest (1): nothing to catch up "
                    "there",
                ]
            alice.close()


async def test_the_token_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            token, watcher, back = await cut_and_resume(tcp.port)
            new = await token_of(back)
            back.close()
            watcher.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "guest1 resumed (tcp" in logged
    assert "guest1 detached (eof)" in logged
    assert token.decode() not in logged
    assert new.decode() not in logged


# -- UDP peers resume by their address ---------------------------------------------------


async def test_a_udp_peer_silent_past_its_expiry_comes_back_with_what_it_missed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A UDP peer silent for three times its expiry, well inside the resume window: the
    room never sees it leave; when it speaks again (its address validated again, as any
    new address is) it is back under its nick and told what it missed, as datagrams."""
    chat = ChatServer()
    with trio.fail_after(300):
        async with chat_servers(chat, peer_idle_timeout=10) as (tcp, udp, _):
            alice = await LineSocket.connect(tcp.port)
            await alice.read_until(b"guest1 joined")
            peer = await open_udp_channel("127.0.0.1", udp.port)
            await validate_udp(peer)
            name = (await alice.read_until(b"joined #lobby")).split()[1]
            assert name.startswith(b"127.0.0.1:")
            await peer.send(b"hello from udp")
            await alice.read_until(b"hello from udp")
            while b"hello from udp" not in await peer.receive():
                pass  # what it was sent so far: its join, its history, its own line
            silent_since = trio.current_time()
            mark = len(alice.lines)
            await wait_away(alice, name)  # expired after 10 s: detached, not gone
            assert trio.current_time() - silent_since == pytest.approx(10, abs=0.5)
            await alice.send(b"one\ntwo\nthree\n/msg " + name + b" psst\n")
            await alice.read_until(b"[dm to " + name + b"] psst")
            await trio.sleep(30 - (trio.current_time() - silent_since))  # 3x the expiry
            await validate_udp(peer)  # speaks again: a new address to the server
            welcome = await peer.receive()
            assert welcome == (
                b"-!- welcome back, " + name + b": you were away 20 s; 4 lines came meanwhile\n"
            )
            assert (await peer.receive()).startswith(b"-!- #lobby: 4 earlier lines")
            shown = [await peer.receive() for _ in range(5)]
            assert [STAMPED.fullmatch(x.rstrip(b"\n"))[1] for x in shown[:4]] == [  # type: ignore[index]
                b"[#lobby] guest1: one",
                b"[#lobby] guest1: two",
                b"[#lobby] guest1: three",
                b"[dm from guest1] psst",
            ]
            assert shown[4] == b"-!- end of earlier lines of #lobby\n"
            await alice.send(b"live\n")
            assert await peer.receive() == b"[#lobby] guest1: live\n"
            await peer.send(b"back")
            assert await alice.read_until(b"back") == b"[#lobby] " + name + b": back"
            room_saw = [x for x in alice.lines[mark:] if x.startswith(b"* ")]
            assert room_saw == []
            await peer.aclose()
            alice.close()


async def test_a_resume_after_seeing_no_history_starts_after_what_was_said_before() -> None:
    chat = ChatServer(history_on_join=0)
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            alice = await LineSocket.connect(tcp.port)
            await alice.send(b"".join(b"before %d\n" % i for i in range(30)))
            await alice.read_until(b"before 29")
            bob = await LineSocket.connect(tcp.port)
            token = await token_of(bob)
            await bob.read_until(b"guest2 joined")
            bob.close()
            await wait_away(alice, b"guest2")
            await alice.send(b"while away\n")
            await alice.read_until(b"while away")
            back = await LineSocket.connect(tcp.port)
            await back.send(b"/resume " + token + b"\n")
            assert await back.read_until(b"welcome back") == (
                b"-!- welcome back, guest2: you were away 0 s; 1 line came meanwhile"
            )
            await back.read_until(b"1 earlier line")
            assert STAMPED.fullmatch(await back.next_line())[1] == b"[#lobby] guest1: while away"  # type: ignore[index]
            alice.close()
            back.close()


async def test_one_address_holds_at_most_sixteen_detached_sessions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Connections from one host (127.0.0.2: only 127.0.0.1 and ::1 are exempt) that
    close without /quit: its seventeenth detached session ends its own oldest, never
    somebody else's (a user of another address keeps its own)."""
    chat = ChatServer()
    with trio.fail_after(300):
        async with chat_servers(chat) as (tcp, _, _):
            watcher = await LineSocket.connect(tcp.port)
            other = await LineSocket.connect(tcp.port, source="127.0.0.3")
            await other.read_until(b"your resume token")
            other.close()
            await wait_away(watcher, b"guest2")
            for n in range(20):
                user = await LineSocket.connect(tcp.port, source="127.0.0.2")
                await user.read_until(b"joined #lobby")
                user.close()
                await wait_away(watcher, b"guest%d" % (n + 3))
            await watcher.send(b"/who\n")
            who = await watcher.read_until(b"-!- in #lobby")
            left = [x for x in watcher.lines if x.endswith(b" left #lobby")]
            assert left == [b"* guest%d left #lobby" % n for n in range(3, 7)]  # the oldest 4
            assert who.count(b"(away)") == 17  # 16 of 127.0.0.2, and 127.0.0.3's one
            assert b"guest2 (away)" in who
            watcher.close()


async def test_a_client_that_says_it_resumes_is_waited_for_two_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``/ws?resume=1`` (the page's URL when it holds a token): a resume that comes a
    second after connecting (a slow link) still comes before anything is said of the
    connection's own session; without it, the wait is 0.1 s."""
    chat = ChatServer()
    with trio.fail_after(100):
        async with web_chat(chat) as (tcp, _, web):
            alice = await LineSocket.connect(tcp)
            await alice.read_until(b"guest1 joined")
            async with connect(ws_url(web)) as ws:
                token = (await Events(ws).next(type="hello"))["token"]
                await alice.read_until(b"guest2 joined")
            await wait_away(alice, b"guest2")
            mark = len(alice.lines)
            async with connect(ws_url(web) + "?resume=1") as ws:
                await trio.sleep(1.9)
                await ws.send(json.dumps({"type": "resume", "token": token}))
                hello = await Events(ws).next(type="hello")
                assert hello["nick"] == "guest2"
            await alice.send(b"/who\n")
            await alice.read_until(b"-!- in #lobby")
            assert [x for x in alice.lines[mark:] if x.startswith(b"* ")] == []
            alice.close()


async def test_the_resume_watermark_is_what_the_socket_took_and_what_a_policy_dropped() -> None:
    """``User.written``: a batch counts once all of it left the outbox, taken by the
    socket or dropped by a backlog policy (the user was told); what the end of a session
    drops (``drop_waiting``) is still owed, so a resume shows it."""
    from triosock._sansio.chat import DirectoryState
    from triosock._services.chat._user import User

    sink = MemorySink()
    member = MemoryMember("tester", sink)
    core = proto.ChatSession(DirectoryState().register("tcp"))
    user = User(member, core)
    user.outbox.put(b"a\nb\n", 2)
    user.mark("room:#lobby", 2, 2)  # lines 1 and 2: taken at once
    assert user.written() == {"room:#lobby": 2}
    sink.taking = False
    user.outbox.put(b"c\n", 1)
    user.mark("room:#lobby", 1, 3)
    user.outbox.put(b"d\n", 1)
    user.mark("room:#lobby", 1, 4)
    assert user.written() == {"room:#lobby": 2}  # 3 and 4 wait
    user.outbox.drop_oldest(2)  # a policy drops 3 (the peer is told)
    assert user.written() == {"room:#lobby": 3}
    user.outbox.drop_waiting()  # the end: 4 never left, and is owed
    assert user.written() == {"room:#lobby": 3}


async def test_a_resume_whose_connection_dies_unread_leaves_the_old_token_working() -> None:
    """The new token of a resume is told on the new connection; if that one dies before
    its client read it, the token it presented still works, until the client speaks on
    a resumed connection (then only the newest does)."""
    chat = ChatServer(rate=None)
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            bob = await LineSocket.connect(tcp.port)
            first = await token_of(bob)
            bob.close()
            watcher = await LineSocket.connect(tcp.port)
            await wait_away(watcher, b"guest1")
            lost = await LineSocket.connect(tcp.port)
            await lost.send(b"/resume " + first + b"\n")
            second = await token_of(lost)  # (as if it had not reached its client)
            reset_on_close(lost.sock)
            lost.close()  # reset: it said nothing on the resumed connection
            await wait_away(watcher, b"guest1")
            back = await LineSocket.connect(tcp.port)
            await back.send(b"/resume " + first + b"\n")  # still works
            await back.read_until(b"welcome back, guest1")
            third = await token_of(back)
            await back.send(b"hello\n")  # it speaks: it has the newest token
            await watcher.read_until(b"guest1: hello")
            back.close()
            await wait_away(watcher, b"guest1")
            for old in (first, second):  # neither works any more
                again = await LineSocket.connect(tcp.port)
                await again.send(b"/resume " + old + b"\n")
                assert (await again.read_until(b"resume refused")).startswith(
                    b"-!- resume refused: no session has that token"
                )
                again.close()
            last = await LineSocket.connect(tcp.port)
            await last.send(b"/resume " + third + b"\n")
            await last.read_until(b"welcome back, guest1")
            for user in (watcher, last):
                user.close()


async def test_the_token_a_resume_was_made_with_stops_working_after_30_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer()
    with trio.fail_after(300):
        async with chat_servers(chat) as (tcp, _, _):
            token, watcher, back = await cut_and_resume(tcp.port)
            resumed = trio.current_time()
            back.close()  # silent: it may not have read its new token
            await wait_away(watcher, b"guest1")
            await trio.sleep_until(resumed + PREVIOUS_TOKEN_GRACE)
            late = await LineSocket.connect(tcp.port)
            await late.send(b"/resume " + token + b"\n")
            assert (await late.read_until(b"resume refused")).startswith(
                b"-!- resume refused: no session has that token"
            )
            for user in (late, watcher):
                user.close()
