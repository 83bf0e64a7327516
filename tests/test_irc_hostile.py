"""Hostile IRC input over real sockets: each gets a clear numeric or a close, paced, and
nobody else notices. Accounts through SASL PLAIN, right and wrong."""

from __future__ import annotations

import base64

import pytest
import trio
import trio.testing

from tests.irctools import IrcSocket, close_all, irc_chat, irc_user, nc_user
from triosock._sansio import accounts as rules
from triosock._sansio.accounts import FIRST_DELAY
from triosock._services.chat._irc import REGISTRATION_LINES
from triosock.chat import ChatServer, Hasher

LIMIT = 30
FAST = rules.ScryptParameters(log2_n=4, r=1, p=1)


@pytest.fixture
def patient_clock() -> trio.testing.MockClock:
    """Virtual time that jumps only after a second of real idleness (hashing runs in a
    thread, which the virtual clock would not wait for)."""
    return trio.testing.MockClock(autojump_threshold=1.0)


def _plain(nick: str, password: str) -> str:
    return base64.b64encode(f"\0{nick}\0{password}".encode()).decode()


async def test_a_mebibyte_without_crlf_gets_one_417_and_the_session_goes_on() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            nc = await nc_user(ports.tcp)
            alice = await irc_user(ports.irc, "alice")
            try:
                await nc.read_until(b"alice joined")
                chunk = b"x" * 65536
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(alice.send, b"PRIVMSG #lobby :" + chunk * 16)
                    assert (
                        await alice.until(" 417 ") == ":triosock 417 alice :Input line was too long"
                    )
                await alice.say("", "PRIVMSG #lobby :still here")
                assert await nc.read_until(b"alice:") == b"[#lobby] alice: still here"
                assert sum(b" 417 " in line for line in alice.lines) == 1
                await nc.send(b"and the room goes on\n")
                await alice.until("and the room goes on")
            finally:
                close_all(nc, alice)


async def test_ten_thousand_joins_are_paced_by_the_rate_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=50, burst=100)
    with trio.fail_after(1000):
        async with irc_chat(chat) as ports:
            nc = await nc_user(ports.tcp)
            alice = await irc_user(ports.irc, "alice")
            try:
                start = trio.current_time()
                flood = b"JOIN #a\r\n" * 10_000 + b"PING :done\r\n"
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(alice.send, flood)
                    # the room is not slowed: a line said meanwhile arrives at once
                    await nc.send(b"meanwhile\n")
                    await alice.until("meanwhile")
                    assert trio.current_time() - start < 1
                    await alice.until("PONG")
                # 10,001 items, 100 at once, then 50 a second: (10_001 - 100) / 50 s
                assert 198 <= trio.current_time() - start <= 199
                assert sum(b" JOIN #a" in line for line in alice.lines) == 1
            finally:
                close_all(nc, alice)


async def test_malformed_lines_get_a_notice_and_the_session_goes_on() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            nc = await nc_user(ports.tcp)
            alice = await irc_user(ports.irc, "alice")
            try:
                await nc.read_until(b"alice joined")
                await alice.send(b":lonely-prefix\r\n")
                assert "malformed line" in await alice.until(" NOTICE ")
                await alice.send(b"@=bad PRIVMSG #lobby :tags\r\n")
                assert "malformed line" in await alice.until(" NOTICE ")
                await alice.send(b"PRIVMSG #lobby :nul\0inside\r\n")
                assert "malformed line" in await alice.until(" NOTICE ")
                await alice.send(b"PRIVMSG #lobby :cr\rinside\r\n")
                assert "malformed line" in await alice.until(" NOTICE ")
                await alice.send(b"FROBNICATE now\r\n")
                assert (
                    await alice.until(" 421 ") == ":triosock 421 alice FROBNICATE :Unknown command"
                )
                await alice.say("PRIVMSG #lobby :fine")
                assert await nc.read_until(b"alice:") == b"[#lobby] alice: fine"
                assert not any(b"nul" in line or b"inside" in line for line in nc.lines)
            finally:
                close_all(nc, alice)


async def test_too_many_lines_before_registering_closes_the_link() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            flooder = await IrcSocket.connect(ports.irc)
            try:
                await flooder.send(b"".join(b"NICK n%d\r\n" % i for i in range(100)))
                error = await flooder.until("ERROR")
                assert (
                    error == f"ERROR :Closing link: {REGISTRATION_LINES} lines without registering"
                )
                await flooder.read_to_eof()
            finally:
                close_all(flooder)


async def _sasl(user: IrcSocket, nick: str, password: str) -> str:
    """Register as ``nick`` with SASL PLAIN; the line that answered the login."""
    await user.say("CAP LS 302", "CAP REQ :sasl", f"NICK {nick}", f"USER {nick} 0 * :{nick}")
    await user.until(" ACK ")
    await user.say("AUTHENTICATE PLAIN")
    await user.until("AUTHENTICATE +")
    await user.say(f"AUTHENTICATE {_plain(nick, password)}")
    while True:
        line = await user.until(" 90")
        if " 903 " in line or " 904 " in line:
            return line


async def test_sasl_plain_logs_in_to_a_registered_nick_and_refuses_a_wrong_password(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(hasher=Hasher(parameters=FAST))
    with trio.fail_after(1000):
        async with irc_chat(chat) as ports:
            nc = await nc_user(ports.tcp)
            await nc.send(b"/nick alice\n/register correct-horse\n/quit\n")
            await nc.read_to_eof()
            nc.close()
            guest = await IrcSocket.connect(ports.irc)
            wrong = await IrcSocket.connect(ports.irc)
            right = await IrcSocket.connect(ports.irc)
            try:
                # a registered nick is not taken without its password
                await guest.say("NICK alice", "USER a 0 * :a")
                assert "registered" in await guest.until(" 433 ")
                start = trio.current_time()
                failed = await _sasl(wrong, "alice", "battery-staple")
                assert failed.startswith(":triosock 904 ")
                assert trio.current_time() - start >= FIRST_DELAY  # answered after the delay
                answer = await _sasl(right, "alice", "correct-horse")
                assert answer.startswith(":triosock 903 ")
                assert " 900 " in "\n".join(line.decode() for line in right.lines)
                await right.say("CAP END")
                assert (await right.until(" 001 ")).startswith(":triosock 001 alice ")
            finally:
                close_all(guest, wrong, right)


async def test_registration_takes_only_a_chat_nick_and_says_why_once() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            nc = await nc_user(ports.tcp)
            await nc.send(b"/nick taken\n")
            await nc.read_until(b"now known as taken")
            user = await IrcSocket.connect(ports.irc)
            try:
                await user.say("USER u 0 * :u")
                # a UDP peer's IRC-safe form, and names that decode to what no nick holds
                for nick in ("`127_0_0_1-5000", "`a-{a}^{21}", "`z-{1b}[2J", "_under"):
                    await user.say(f"NICK {nick}")
                    refused = await user.until(" 432 ")
                    assert refused.startswith(f":triosock 432 * {nick} :"), refused
                await user.say("NICK taken")
                assert (
                    await user.until(" 433 ") == ":triosock 433 * taken :Nickname is already in use"
                )
                await user.say("NICK fine")
                assert (await user.until(" 001 ")).startswith(":triosock 001 fine ")
                refusals = [line for line in user.lines if b" 432 " in line or b" 433 " in line]
                assert len(refusals) == 5  # one each
            finally:
                close_all(nc, user)


async def test_odd_parameters_echoed_in_numerics_never_break_the_connection() -> None:
    probes = [
        "PART #x,",
        "JOIN #a,",
        "JOIN #lobby,:",
        "NAMES :",
        "NAMES ,#lobby",
        "WHO :",
        "WHO :a b",
        "WHOIS a,,b",
        "WHOIS :a b",
        "TOPIC :",
        "MODE #lobby +:",
        "MODE #lobby :+ ",
        "NICK :",
        "NICK :a b",
        "TAGMSG #lobby",
    ]
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports:
            alice = await irc_user(ports.irc, "alice")
            try:
                for n, probe in enumerate(probes):
                    await alice.say(probe, f"PING :probe{n}")
                    await alice.until(f":probe{n}")
                assert not any(b" 421 " in line or b" 400 " in line for line in alice.lines)
                assert all(len(line) + 1 <= 512 for line in alice.lines)
                await alice.say("USERHOST alice")
                assert await alice.until(" 302 ") == ":triosock 302 alice :alice=+chat@triosock"
            finally:
                close_all(alice)


async def test_long_topics_reasons_and_actions_fit_irc_lines() -> None:
    chat = ChatServer(opers=["op"])
    with trio.fail_after(LIMIT):
        async with irc_chat(chat) as ports:
            nc = await nc_user(ports.tcp)
            alice = await irc_user(ports.irc, "alice")
            try:
                await nc.send(b"/nick op\n/register a-long-password\n/claim\n")
                await nc.read_until(b"claimed #lobby")
                await nc.send("/topic {}\n".format("😀" * 300).encode())
                topic = await alice.until(" TOPIC ")
                assert len(topic.encode()) + 2 <= 512
                assert topic.endswith("😀…")
                action = "waves " * 150  # 900 bytes: in pieces, each an action of its own
                await nc.send(f"/me {action}\n".encode())
                pieces: list[str] = []
                while "".join(pieces) != f"{action}".rstrip():
                    line = await alice.until("ACTION")
                    assert len(line.encode()) + 2 <= 512
                    text = line.split(" :", 1)[1]
                    assert text.startswith("\x01ACTION ")
                    assert text.endswith("\x01")
                    pieces.append(text[8:-1])
                    pieces = ["".join(pieces)]
                # a line that only neutralising turns into a command is said, not run
                await alice.say("PRIVMSG #lobby :\x07/nick sneaky")
                assert await nc.read_until(b"alice:") == b"[#lobby] alice: /nick sneaky"
            finally:
                close_all(nc, alice)


async def test_a_sasl_login_to_an_account_whose_nick_is_held_fails(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(hasher=Hasher(parameters=FAST))
    with trio.fail_after(1000):
        async with irc_chat(chat) as ports:
            nc = await nc_user(ports.tcp)
            user = await IrcSocket.connect(ports.irc)
            try:
                await nc.send(b"/nick held\n/register correct-horse\n")
                await nc.read_until(b"held is yours")
                answer = await _sasl(user, "held", "correct-horse")
                assert answer.startswith(":triosock 904 ")
                assert "held is in use by another session" in await user.until("login failed")
            finally:
                close_all(nc, user)
