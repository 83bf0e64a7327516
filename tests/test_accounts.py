"""Registered nicks: the password commands' syntax, the hash records, the slowing of
failed logins, the stores (memory, SQLite, Redis), and the chat over real TCP sockets:
register, a guest refused the nick, log in, change the password, log out.

The chat tests run on virtual time whose jumps wait for a second of real idleness: the
hashing runs in worker threads, and the clock must not jump while one computes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
from pathlib import Path

import pytest
import trio
import trio.testing
from websockets.trio.client import connect

from triosock._accounts import Account, Accounts, Hasher, MemoryAccounts, SqliteAccounts
from triosock._sansio import accounts as rules
from triosock._sansio import chat as proto
from triosock._services.chat._accounts import OFFLINE_LIMIT
from triosock.chat import ChatServer

from .chattools import Events, LineSocket, chat_servers, detached, web_chat
from .conftest import GUARD
from .test_chat_web import ws_url

#: Cheap scrypt for the tests (the records say which parameters they were made with).
FAST = rules.ScryptParameters(log2_n=4, r=1, p=1)
SECRET = "correct horse battery"  # spaces: the rest of the line
PLAIN = "hunter2-horse-9"  # one word: /password OLD NEW takes OLD as one word


@pytest.fixture
def patient_clock() -> trio.testing.MockClock:
    """Virtual time that jumps only after a second of real idleness (see the module)."""
    return trio.testing.MockClock(autojump_threshold=1.0)


# -- the commands ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"/register correct horse battery", proto.Register(SECRET)),
        (b"/login alice correct horse battery", proto.Login("alice", SECRET)),
        (b"/identify hunter2hunter2", proto.Login(None, "hunter2hunter2")),
        (b"/IDENTIFY alice pw", proto.Login("alice", "pw")),
        (b"/password old new one", proto.Password("old", "new one")),
        (b"/logout", proto.Logout()),
    ],
)
def test_the_password_commands_parse(line: bytes, command: proto.Command) -> None:
    assert proto.parse_line_untrusted(line) == command
    assert SECRET not in repr(command)  # a password is left out of any repr


@pytest.mark.parametrize(
    "line",
    [
        b" /login alice hunter2hunter2",
        b"//login alice hunter2hunter2",
        b"\t//IDENTIFY hunter2hunter2",
        b"/login",
        b"/login alice",
        b"/register",
        b"/password hunter2hunter2",
        b"/ login alice hunter2hunter2",
    ],
)
def test_a_line_that_may_hold_a_password_is_never_said(line: bytes) -> None:
    command = proto.parse_line_untrusted(line)
    assert isinstance(command, proto.Invalid)
    assert "hunter2" not in command.reason


def test_plain_words_that_are_no_command_are_said() -> None:
    assert proto.parse_line_untrusted(b"login is fun") == proto.Say("login is fun")
    assert proto.parse_line_untrusted(b"//passwords") == proto.Say("/passwords")


def test_the_session_checks_what_it_can_before_asking_the_service() -> None:
    presence = proto.Presence("s.1", "guest1", "#lobby", "tcp")
    core = proto.ChatSession(presence)
    assert core.receive_line(b"/register " + SECRET.encode(), 0) == [
        proto.Tell(
            "guest nicks cannot be registered: take a nick of your own (/nick NAME), "
            "then /register PASSWORD"
        )
    ]
    core.nick = "alice"
    assert core.receive_line(b"/register short", 0) == [
        proto.Tell("not registered: a password is at least 8 characters")
    ]
    assert core.receive_line(b"/register " + b"x" * 257, 0) == [
        proto.Tell("not registered: a password is at most 256 characters")
    ]
    assert core.receive_line(b"/register " + SECRET.encode(), 0) == [proto.CreateAccount(SECRET)]
    assert core.receive_line(b"/password a b", 0) == [
        proto.Tell("log in first: /login NICK PASSWORD")
    ]
    assert core.receive_line(b"/logout", 0) == [proto.Tell("you are not logged in")]
    assert core.receive_line(b"/login #room x", 0) == [
        proto.Tell("nick '#room' contains '#'; use only letters A-Z, digits, '_', '-' and '.'")
    ]


# -- hashes and delays -----------------------------------------------------------------


def test_a_record_says_its_parameters_and_verifies_only_its_password() -> None:
    record = rules.make_record(SECRET, b"s" * 16, FAST)
    assert record.startswith("scrypt$4$1$1$")
    assert SECRET not in record
    assert rules.verify_record(SECRET, record)
    assert not rules.verify_record(SECRET + " ", record)
    assert not rules.verify_record(SECRET, "scrypt$4$1$1$bad$record")
    assert rules.needs_rehash(record)  # weaker than today's
    assert not rules.needs_rehash(rules.make_record(SECRET, b"s" * 16))
    assert rules.make_record(SECRET, b"t" * 16, FAST) != record  # the salt counts


def test_failed_logins_wait_twice_as_long_each_time_per_account_and_per_address() -> None:
    failed = rules.FailedLogins()
    waits = [failed.failed("alice", "10.0.0.1", now=0) for _ in range(4)]
    assert waits == [0.5, 1.0, 2.0, 4.0]
    # another address, the same account: the account's count goes on
    assert failed.failed("alice", "10.0.0.2", now=0) == 8.0
    # another account from the first address: the address's count goes on
    assert failed.failed("bob", "10.0.0.1", now=0) == 8.0
    failed.succeeded("alice")
    assert failed.failed("alice", "10.0.0.3", now=0) == 0.5
    assert max(failed.failed("carol", "10.0.0.9", now=0) for _ in range(20)) == 30.0
    assert failed.failed("carol", "10.0.0.9", now=10_000) == 0.5  # forgotten after a while


async def test_the_hasher_runs_off_the_loop_at_most_its_limit_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running, most = 0, 0
    lock = threading.Lock()
    pairs = threading.Barrier(2, timeout=10)  # two at once, whatever the OS's scheduling
    derive = rules.derive

    def counted(password: str, salt: bytes, parameters: rules.ScryptParameters) -> bytes:
        nonlocal running, most
        assert threading.current_thread() is not threading.main_thread()
        with lock:
            running += 1
            most = max(most, running)
        try:
            pairs.wait()  # a limit of 1 would never let a partner come: it breaks
            return derive(password, salt, rules.ScryptParameters(log2_n=10, r=8, p=1))
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(rules, "derive", counted)
    hasher = Hasher(limit=2, parameters=FAST)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(hasher.record, SECRET)
    assert most == 2
    assert hasher.computed == 8


# -- the stores --------------------------------------------------------------------------


async def _exercise(accounts: Accounts) -> None:
    alice = Account("alice", "Alice", "scrypt$4$1$1$a$b", 1)
    assert await accounts.get("alice") is None
    assert await accounts.create(alice)
    assert not await accounts.create(Account("alice", "ALICE", "other", 2))
    assert await accounts.get("alice") == alice
    assert await accounts.set_record("alice", "scrypt$new")
    found = await accounts.get("alice")
    assert found is not None
    assert found.record == "scrypt$new"
    assert not await accounts.set_record("nobody", "x")
    # offline messages: bounded, oldest first, taken once
    assert [await accounts.keep_offline("alice", b"m%d" % n, 3) for n in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert await accounts.take_offline("alice") == [b"m0", b"m1", b"m2"]
    assert await accounts.take_offline("alice") == []


async def test_accounts_in_memory() -> None:
    await _exercise(MemoryAccounts())


async def test_accounts_in_the_sqlite_file_survive_a_reopen_and_are_its_owners_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "chat.sqlite3"
    async with SqliteAccounts(path) as accounts:
        await _exercise(accounts)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    async with SqliteAccounts(path) as again:
        found = await again.get("alice")
        assert found is not None
        assert (found.nick, found.record) == ("Alice", "scrypt$new")


async def test_accounts_in_redis() -> None:
    pytest.importorskip("coredis")
    from triosock._accounts._redis import RedisAccounts

    from .redistools import redis_server

    with trio.fail_after(GUARD):
        async with redis_server() as redis, RedisAccounts(redis.url) as accounts:
            await _exercise(accounts)


# -- the chat over TCP -------------------------------------------------------------------


async def tcp_user(port: int, nick: bytes | None = None, host: str = "127.0.0.1") -> LineSocket:
    """A TCP user in the room, welcomed, named ``nick`` if given."""
    user = await LineSocket.connect(port, host=host)
    await user.read_until(b"welcome to triosock chat")
    if nick is not None:
        await user.send(b"/nick " + nick + b"\n")
        await user.read_until(b"is now known as " + nick)
    return user


async def registered(port: int, nick: bytes, password: str, host: str = "127.0.0.1") -> None:
    """``nick`` registered with ``password`` by a user who then quits: nobody holds it."""
    user = await tcp_user(port, nick, host)
    await user.send(b"/register " + password.encode() + b"\n/quit\n")
    await user.read_until(b"is yours")
    await user.read_to_eof()
    user.close()


async def test_a_registered_nick_is_its_owners_and_a_guest_who_took_it_is_renamed(
    patient_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with chat_servers(chat) as (tcp, _, _):
            watcher = await tcp_user(tcp.port, b"watcher")
            alice = await tcp_user(tcp.port, b"alice")
            await alice.send(b"/register " + PLAIN.encode() + b"\n")
            assert await alice.read_until(b"is yours") == (
                b"-!- alice is yours: log in with /login alice PASSWORD from now on"
            )
            await alice.send(b"/quit\n")
            await alice.read_to_eof()
            alice.close()
            # a guest cannot take it...
            guest = await tcp_user(tcp.port)
            await guest.send(b"/nick alice\n")
            assert await guest.read_until(b"registered") == (
                b"-!- alice is registered: /login alice PASSWORD if it is yours"
            )
            # ...nor log in with a wrong password: slowed, twice as long each time
            waits = []
            for attempt in range(3):
                asked = trio.current_time()
                await guest.send(b"/login alice wrong password %d\n" % attempt)
                assert await guest.read_until(b"login failed") == (
                    b"-!- login failed: wrong nick or password for alice"
                )
                waits.append(round(trio.current_time() - asked, 2))
            assert waits == [0.5, 1.0, 2.0]
            # a guest took a free nick; alice, back as a guest, logs in and gets hers
            await guest.send(b"/nick alice2\n")
            await guest.read_until(b"is now known as alice2")
            back = await tcp_user(tcp.port)
            await back.send(b"/identify " + PLAIN.encode() + b"\n")  # (its guest nick)
            assert b"login failed" in await back.read_until(b"login failed")
            await back.send(b"/login alice " + PLAIN.encode() + b"\n")
            assert await back.read_until(b"logged in") == b"-!- you are logged in as alice"
            await watcher.read_until(b"is now known as alice")
            # change the password, then log out: a guest again
            await back.send(b"/password " + PLAIN.encode() + b" a new one here\n")
            assert await back.read_until(b"password changed") == b"-!- password changed"
            await back.send(b"/logout\n")
            out = await back.read_until(b"logged out")
            assert out.startswith(b"-!- logged out: you are guest")
            await back.send(b"/login alice " + PLAIN.encode() + b"\n")  # the old one
            assert b"login failed" in await back.read_until(b"login failed")
            await back.send(b"/login alice a new one here\n")
            assert await back.read_until(b"logged in") == b"-!- you are logged in as alice"
            figures = chat.statistics()
            assert (figures.registered, figures.logins, figures.logins_failed) == (1, 2, 5)
            for user in (watcher, guest, back):
                user.close()
            everything = b"\n".join(watcher.lines + guest.lines + back.lines)
    assert PLAIN.encode() not in everything
    assert b"a new one here" not in everything
    assert PLAIN not in caplog.text
    assert "a new one here" not in caplog.text
    assert "failed login for alice from 127.0.0.1 (wrong password); answered in 0.5 s" in (
        caplog.text
    )


async def test_logging_in_again_takes_the_nick_from_the_accounts_detached_session(
    patient_clock: trio.testing.MockClock,
) -> None:
    """alice's connection drops (her session waits for a resume, holding her nick); she
    logs in from a new connection instead: the nick is hers there, and the detached
    session becomes a guest."""
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with chat_servers(chat) as (tcp, _, _):
            watcher = await tcp_user(tcp.port, b"watcher")
            alice = await tcp_user(tcp.port, b"alice")
            await alice.send(b"/register " + SECRET.encode() + b"\n")
            await alice.read_until(b"is yours")
            alice.close()  # no /quit: detached, still alice
            await detached(chat, "alice")
            again = await tcp_user(tcp.port)
            await again.send(b"/login alice " + SECRET.encode() + b"\n")
            assert await again.read_until(b"logged in") == b"-!- you are logged in as alice"
            renamed = await watcher.read_until(b"is now known as guest")
            assert renamed.startswith(b"* alice is now known as guest")
            await watcher.read_until(b" is now known as alice")
            await again.send(b"hello\n")
            assert await watcher.read_until(b"hello") == b"[#lobby] alice: hello"
            for user in (watcher, again):
                user.close()


async def test_a_message_to_a_registered_user_who_is_away_is_kept_for_their_login(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with chat_servers(chat) as (tcp, _, _):
            await registered(tcp.port, b"alice", SECRET)
            bob = await tcp_user(tcp.port, b"bob")
            await bob.send(b"/msg alice psst, are you there?\n")
            assert await bob.read_until(b"[dm to alice]") == b"[dm to alice] psst, are you there?"
            assert await bob.read_until(b"kept") == (
                b"-!- alice is away: your message is kept for their next login"
            )
            await bob.send(b"/msg nobody hello\n")
            assert await bob.read_until(b"no user") == b"-!- no user named nobody"
            # a guest who is not alice never sees them: the nick is refused anyway
            back = await tcp_user(tcp.port)
            await back.send(b"/login alice " + SECRET.encode() + b"\n")
            assert await back.read_until(b"logged in") == b"-!- you are logged in as alice"
            start = await back.read_until(b"earlier line")
            assert start.startswith(b"-!- messages kept while you were away: 1 earlier line")
            kept = await back.read_until(b"[dm from bob]")
            assert re.fullmatch(rb"\[\d\d:\d\d:\d\d\] \[dm from bob\] psst, are you there\?", kept)
            assert await back.read_until(b"end of earlier") == (
                b"-!- end of earlier lines of messages kept while you were away"
            )
            # they were given once: a second login shows nothing kept
            await back.send(b"/logout\n/login alice " + SECRET.encode() + b"\n")
            await back.read_until(b"logged out")
            await back.read_until(b"logged in")
            await back.send(b"/who\n")
            assert (await back.read_until(b"in #lobby:")).startswith(b"-!- in #lobby:")
            assert sum(line.startswith(b"-!- messages kept") for line in back.lines) == 1
            # at most OFFLINE_LIMIT wait: the next is refused, and the sender told
            await back.send(b"/quit\n")
            await back.read_to_eof()
            back.close()
            await bob.send(b"".join(b"/msg alice %d\n" % n for n in range(OFFLINE_LIMIT + 1)))
            assert await bob.read_until(b"was not kept") == (
                b"-!- alice is away and 100 messages wait for them already: yours was not kept"
            )
            assert chat.statistics().kept_offline == 1 + OFFLINE_LIMIT
            bob.close()


async def test_a_websocket_client_registers_and_logs_in_with_json_events(
    patient_clock: trio.testing.MockClock,
) -> None:
    """The page's protocol has the account events; a password in one never reaches the
    room, and a malformed one is refused without repeating it."""
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with (
            web_chat(chat) as (tcp, _, web),
            connect(ws_url(web)) as ws,
        ):
            watcher = await tcp_user(tcp, b"watcher")
            events = Events(ws)
            await events.next(type="hello")
            await ws.send(json.dumps({"type": "nick", "nick": "alice"}))
            await events.next(type="nick", new="alice")
            await ws.send(json.dumps({"type": "register", "password": SECRET}))
            registered = await events.next(type="notice")
            assert (
                registered["text"]
                == "alice is yours: log in with /login alice PASSWORD from now on"
            )
            await ws.send(json.dumps({"type": "logout"}))
            out = await events.next(type="notice")
            assert str(out["text"]).startswith("logged out: you are guest")
            bad = {"type": "login", "nick": "alice", "password": "two\nlines " + SECRET}
            await ws.send(json.dumps(bad))
            refused = await events.next(type="notice")
            assert refused["text"] == "refused: the 'password' of a login event is on one line"
            await ws.send(json.dumps({"type": "login", "nick": "alice", "password": SECRET}))
            assert (await events.next(type="notice"))["text"] == "you are logged in as alice"
            await watcher.read_until(b"is now known as alice")
            watcher.close()
    assert SECRET.encode() not in b"\n".join(watcher.lines)


async def test_unicode_passwords_nicks_differing_in_case_and_a_mebibyte_of_junk(
    patient_clock: trio.testing.MockClock,
) -> None:
    unicode = "pässwörd 密码 🔑 with spaces"
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with chat_servers(chat) as (tcp, _, _):
            watcher = await tcp_user(tcp.port, b"watcher")
            await registered(tcp.port, b"Alice", unicode)
            guest = await tcp_user(tcp.port)
            await guest.send(b"/nick ALICE\n")  # one account whatever the case
            assert await guest.read_until(b"registered") == (
                b"-!- ALICE is registered: /login ALICE PASSWORD if it is yours"
            )
            junk = b"/register " + b"\xff" * (1 << 20)
            await guest.send(junk + b"\n")
            refused = await guest.read_until(b"line refused")
            assert refused.startswith(b"-!- line refused (")
            await guest.send(b"/login alice " + unicode.encode() + b"\n")
            assert await guest.read_until(b"logged in") == b"-!- you are logged in as Alice"
            await guest.send(b"hi\n")
            assert await watcher.read_until(b": hi") == b"[#lobby] Alice: hi"
            for user in (watcher, guest):
                user.close()
    assert b"\xff\xff" not in b"".join(watcher.lines)
