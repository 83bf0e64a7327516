"""The IRC listener over real sockets: registration, the rooms shared with TCP and UDP
users, direct messages, nicks, numerics, long lines and the liveness rule."""

from __future__ import annotations

import re

import trio

from tests.chattools import join_over_udp
from tests.irctools import IrcSocket, close_all, irc_chat, irc_user, nc_user, web_chat_and_irc
from triosock.chat import ChatServer

LIMIT = 30  # seconds: every test's absolute bound


async def test_registration_welcome_and_lobby() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            user = await IrcSocket.connect(ports.irc)
            try:
                welcome = await user.register("alice")
                assert welcome.startswith(":triosock 001 alice :")
                isupport = await user.until(" 005 ")
                for token in ("CASEMAPPING=ascii", "CHANTYPES=#", "NICKLEN=", "LINELEN=512"):
                    assert token in isupport
                assert await user.until(" 422 ") == ":triosock 422 alice :MOTD File is missing"
                assert await user.until(" JOIN ") == ":alice!chat@triosock JOIN #lobby"
                assert await user.until(" 353 ") == ":triosock 353 alice = #lobby :alice"
                assert await user.until(" 366 ") == ":triosock 366 alice #lobby :End of /NAMES list"
            finally:
                close_all(user)


async def test_irc_and_nc_users_talk_and_own_lines_are_not_echoed() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            nc = await nc_user(ports.tcp)
            alice = None
            try:
                alice = await irc_user(ports.irc, "alice")
                await nc.read_until(b"* alice joined #lobby")
                await alice.say("PRIVMSG #lobby :hello from irc")
                assert await nc.read_until(b"alice:") == b"[#lobby] alice: hello from irc"
                await nc.send(b"hi there\n")
                line = await alice.until(" PRIVMSG ")
                assert line == ":guest1!chat@triosock PRIVMSG #lobby :hi there"
                # its own line never came back: the PONG follows the nc user's line
                await alice.say("PING :mark")
                assert await alice.until(" PONG ") == ":triosock PONG triosock :mark"
                said = [b for b in alice.lines if b"hello from irc" in b]
                assert said == []
            finally:
                close_all(nc, *([alice] if alice else []))


async def test_echo_message_returns_own_lines_with_server_time() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            alice = await irc_user(ports.irc, "alice", caps=["echo-message", "server-time"])
            try:
                await alice.say("PRIVMSG #lobby :mine")
                line = await alice.until("PRIVMSG #lobby :mine")
                assert line.startswith("@time=")
                assert line.split(" ", 1)[1] == ":alice!chat@triosock PRIVMSG #lobby :mine"
            finally:
                close_all(alice)


async def test_join_parts_the_room_it_was_in() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            nc = await nc_user(ports.tcp)
            alice = await irc_user(ports.irc, "alice")
            try:
                await alice.say("JOIN #a")
                assert await alice.until(" PART ") == ":alice!chat@triosock PART #lobby"
                assert await alice.until(" JOIN ") == ":alice!chat@triosock JOIN #a"
                assert await alice.until(" 353 ") == ":triosock 353 alice = #a :alice"
                await nc.read_until(b"* alice left #lobby")
                await alice.say("PRIVMSG #lobby :wrong room")
                refused = await alice.until(" 404 ")
                assert refused.startswith(":triosock 404 alice #lobby :Cannot send to channel")
                await alice.say("PART #a")
                assert await alice.until(" JOIN ") == ":alice!chat@triosock JOIN #lobby"
                await alice.say("JOIN #c,#d")
                assert await alice.until(" JOIN ") == ":alice!chat@triosock JOIN #c"
                too_many = await alice.until(" 405 ")
                assert too_many.startswith(":triosock 405 alice #d :You have joined too many")
                await alice.say("JOIN #b secretkey")
                assert (await alice.until(" 475 ")).startswith(":triosock 475 alice #b :")
                # told of its own join once (not again by the room): IRC clients would
                # open the channel twice
                joins = [line for line in alice.lines if line.endswith(b" JOIN #a\r")]
                assert joins == [b":alice!chat@triosock JOIN #a\r"]
            finally:
                close_all(nc, alice)


async def test_direct_messages_both_ways_and_unknown_nick() -> None:
    chat = ChatServer()
    with trio.fail_after(LIMIT):
        async with irc_chat(chat) as ports:
            nc = await nc_user(ports.tcp)
            alice = await irc_user(ports.irc, "alice")
            try:
                await nc.read_until(b"alice joined")
                assert chat.statistics().users_by_kind == {"tcp": 1, "irc": 1}
                await alice.say("PRIVMSG guest1 :psst")
                assert await nc.read_until(b"[dm") == b"[dm from alice] psst"
                await nc.send(b"/msg alice back at you\n")
                line = await alice.until(" PRIVMSG alice ")
                assert line == ":guest1!chat@triosock PRIVMSG alice :back at you"
                await alice.say("PRIVMSG nobody :hello?")
                assert (
                    await alice.until(" 401 ") == ":triosock 401 alice nobody :No such nick/channel"
                )
            finally:
                close_all(nc, alice)


async def test_nick_changes_taken_and_erroneous() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            nc = await nc_user(ports.tcp)
            alice = await irc_user(ports.irc, "alice")
            try:
                await nc.read_until(b"alice joined")
                await alice.say("NICK alicia")
                assert await alice.until(" NICK ") == ":alice!chat@triosock NICK alicia"
                await nc.read_until(b"alice is now known as alicia")
                await alice.say("NICK guest1")
                taken = await alice.until(" 433 ")
                assert taken == ":triosock 433 alicia guest1 :Nickname is already in use"
                await alice.say("NICK 9lives")
                assert (await alice.until(" 432 ")).startswith(":triosock 432 alicia 9lives :")
            finally:
                close_all(nc, alice)


async def test_nick_taken_at_registration_gets_433_and_another_try() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            alice = await irc_user(ports.irc, "alice")
            other = await IrcSocket.connect(ports.irc)
            try:
                await other.say("NICK alice", "USER x 0 * :x")
                assert "433" in await other.until(" 433 ")
                await other.say("NICK alice2")
                assert (await other.until(" 001 ")).startswith(":triosock 001 alice2 ")
            finally:
                close_all(alice, other)


async def test_udp_peer_has_an_irc_safe_name_that_privmsg_takes_back() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            alice = await irc_user(ports.irc, "alice")
            peer = await join_over_udp(ports.udp)
            try:
                joined = await alice.until(" JOIN #lobby")
                name = joined[1:].split("!")[0]
                host, port = peer.socket.getsockname()[:2]
                assert name != f"{host}:{port}"  # not an IRC nick
                await peer.send(b"hello from udp")
                said = await alice.until("hello from udp")
                assert said == f":{name}!chat@triosock PRIVMSG #lobby :hello from udp"
                await alice.say(f"PRIVMSG {name} :hello udp peer")
                while b"hello udp peer" not in (got := await peer.receive()):
                    pass
                assert got.startswith(b"[dm from alice]")
            finally:
                close_all(alice)
                await peer.aclose()


async def test_overlong_line_is_refused_with_417_and_the_session_goes_on() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            nc = await nc_user(ports.tcp)
            alice = await irc_user(ports.irc, "alice")
            try:
                await nc.read_until(b"alice joined")
                await alice.send(b"PRIVMSG #lobby :" + b"x" * 600 + b"\r\n")
                assert await alice.until(" 417 ") == ":triosock 417 alice :Input line was too long"
                await alice.say("PRIVMSG #lobby :after")
                assert await nc.read_until(b"alice:") == b"[#lobby] alice: after"
            finally:
                close_all(nc, alice)


async def test_long_line_reaches_irc_whole_in_several_privmsgs() -> None:
    text = "é" * 700 + " end"  # 1,404 bytes: three IRC messages
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            nc = await nc_user(ports.tcp)
            alice = await irc_user(ports.irc, "alice")
            try:
                await nc.read_until(b"alice joined")
                await nc.send(text.encode() + b"\n")
                pieces: list[str] = []
                prefix = ":guest1!chat@triosock PRIVMSG #lobby :"
                while "".join(pieces) != text:
                    line = await alice.until(" PRIVMSG ")
                    assert len(line.encode()) + 2 <= 512
                    assert line.startswith(prefix)
                    pieces.append(line[len(prefix) :])
                assert len(pieces) == 3
            finally:
                close_all(nc, alice)


async def test_idle_client_is_pinged_then_dropped(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(1000):
        async with irc_chat(ChatServer()) as ports:
            alice = await irc_user(ports.irc, "alice")
            try:
                start = trio.current_time()
                assert await alice.until("PING") == "PING triosock"
                assert trio.current_time() - start == 120
                error = await alice.until("ERROR")
                assert error == "ERROR :Closing link: Ping timeout: 180 seconds"
                assert trio.current_time() - start == 180
            finally:
                close_all(alice)


async def test_unregistered_client_is_dropped(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(1000):
        async with irc_chat(ChatServer()) as ports:
            silent = await IrcSocket.connect(ports.irc)
            capping = await IrcSocket.connect(ports.irc)
            try:
                start = trio.current_time()
                await capping.say("CAP LS 302", "NICK bob", "USER b 0 * :b")  # never CAP END
                for user in (silent, capping):
                    error = await user.until("ERROR")
                    assert error == "ERROR :Closing link: not registered within 60 seconds"
                assert trio.current_time() - start == 60
                await silent.read_to_eof()
            finally:
                close_all(silent, capping)


async def test_irc_users_share_frames_but_never_get_their_own_lines_back() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            # bob first: the fan-out renders for him first, and alice's frames would be
            # his (her own line included) if she were given what he got
            bob = await irc_user(ports.irc, "bob")
            carol = await irc_user(ports.irc, "carol")
            alice = await irc_user(ports.irc, "alice")
            try:
                for n in range(3):
                    await alice.say(f"PRIVMSG #lobby :line {n}")
                    for other in (bob, carol):
                        said = await other.until(f":line {n}")
                        assert said == f":alice!chat@triosock PRIVMSG #lobby :line {n}"
                await alice.say("PING :mark")
                await alice.until(" PONG ")
                assert [line for line in alice.lines if b":line " in line] == []
            finally:
                close_all(bob, carol, alice)


async def test_topic_and_modes_are_told_with_numerics() -> None:
    chat = ChatServer(opers=["alice"])
    with trio.fail_after(LIMIT):
        async with irc_chat(chat) as ports:
            alice = await irc_user(ports.irc, "alice")
            try:
                await alice.say("TOPIC #lobby")
                assert await alice.until(" 331 ") == ":triosock 331 alice #lobby :No topic is set"
                await alice.say("MODE #lobby")
                assert await alice.until(" 324 ") == ":triosock 324 alice #lobby +"
                await alice.say("REGISTER a-long-password", "CLAIM")
                await alice.until("claimed #lobby")
                await alice.say("TOPIC #lobby :all about tests", "MODE #lobby +m")
                changed = await alice.until(" TOPIC ")
                assert changed == ":alice!chat@triosock TOPIC #lobby :all about tests"
                assert await alice.until(" MODE ") == ":alice!chat@triosock MODE #lobby +m"
                await alice.say("MODE #lobby")
                assert await alice.until(" 324 ") == ":triosock 324 alice #lobby +m"
                bob = await irc_user(ports.irc, "bob", names=False)
                try:
                    assert await bob.until(" 332 ") == ":triosock 332 bob #lobby :all about tests"
                    # the topic before the names, and the operator marked in them
                    assert await bob.until(" 353 ") == ":triosock 353 bob = #lobby :@alice bob"
                    await bob.say("WHO #lobby")
                    who = [await bob.until(" 352 "), await bob.until(" 352 ")]
                    assert [line.split()[8] for line in who] == ["H@", "H"]
                    await bob.say("PRIVMSG #lobby :may I?")
                    assert "moderated" in await bob.until(" NOTICE ")
                finally:
                    close_all(bob)
            finally:
                close_all(alice)


async def test_history_on_joining_is_a_batch_with_server_times() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            nc = await nc_user(ports.tcp)
            plain = await irc_user(ports.irc, "plain")
            timed = await irc_user(ports.irc, "timed", caps=["server-time"])
            batched = await irc_user(ports.irc, "batched", caps=["server-time", "batch"])
            try:
                await nc.send(b"/join #old\nfirst\nsecond\n")
                await nc.read_until(b"guest1: second")
                for user in (plain, timed, batched):
                    await user.say("JOIN #old")
                    await user.until(" 366 ")
                start, first, second, end = batched.lines[-6:-2]
                assert start == b":triosock BATCH +history-old chathistory #old\r"
                assert re.fullmatch(
                    rb"@batch=history-old;time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                    rb":guest1!chat@triosock PRIVMSG #old :first\r",
                    first,
                ), first
                assert second.endswith(b":guest1!chat@triosock PRIVMSG #old :second\r")
                assert end == b":triosock BATCH -history-old\r"
                # with times but no batch: the lines alone; with neither: framed by notices
                joined = timed.lines.index(b":timed!chat@triosock JOIN #old\r")
                shown = timed.lines[joined + 1 : joined + 4]
                assert shown[0].startswith(b"@time=")
                assert shown[0].endswith(b"PRIVMSG #old :first\r")
                assert shown[2].endswith(b" 353 timed = #old :guest1 plain timed\r")
                joined = plain.lines.index(b":plain!chat@triosock JOIN #old\r")
                assert b"2 earlier lines" in plain.lines[joined + 1]
                assert plain.lines[joined + 2].endswith(b"PRIVMSG #old :first\r")
            finally:
                close_all(nc, plain, timed, batched)


async def test_formatting_passes_between_irc_clients_and_no_one_else_sees_it() -> None:
    with trio.fail_after(LIMIT):
        async with web_chat_and_irc() as (ports, web):
            nc = await nc_user(ports.tcp)
            alice = await irc_user(ports.irc, "alice")
            bob = await irc_user(ports.irc, "bob")
            try:
                await alice.say(
                    "PRIVMSG #lobby :\x02bold\x02 and \x0304,12colour\x03 \x1ditalic\x1d"
                )
                got = await bob.until("bold")
                assert got == (
                    ":alice!chat@triosock PRIVMSG #lobby :"
                    "\x02bold\x02 and \x0304,12colour\x03 \x1ditalic\x1d"
                )
                assert await nc.read_until(b"bold") == b"[#lobby] alice: bold and colour italic"
                event = await web.next(type="message")
                assert event["text"] == "bold and colour italic"
                await alice.say("PRIVMSG #lobby :\x01ACTION \x02waves\x02\x01")
                assert (await bob.until("ACTION")).endswith(":\x01ACTION \x02waves\x02\x01")
                assert await nc.read_until(b"waves") == b"[#lobby] * alice waves"
            finally:
                close_all(nc, alice, bob)
