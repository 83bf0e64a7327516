"""Accounts under attack: a thousand wrong passwords for one account from a thousand
addresses at once, wrong passwords from one address for many accounts, a registration
flood, and a store that fails in the middle of a login. Each is answered, paced by the
documented numbers, and costs no more hashing than one attempt at a time.

The chat tests run on virtual time whose jumps wait for a second of real idleness (the
hashing runs in worker threads; see ``test_accounts``).
"""

from __future__ import annotations

import collections
import contextlib

import pytest
import trio
import trio.testing

from triosock._accounts import Account, Hasher, MemoryAccounts
from triosock._sansio import accounts as rules
from triosock._services.chat._accounts import ACCOUNTS_DOWN
from triosock.chat import ChatServer

from .chattools import LineSocket, chat_servers
from .test_accounts import FAST, PLAIN, patient_clock, registered

__all__ = ["patient_clock"]  # a fixture, used by name


def test_attempts_are_refused_unchecked_while_one_is_checked_and_after_it_failed() -> None:
    failed = rules.FailedLogins()
    assert failed.begin("alice", "10.0.0.1", now=0) is None
    assert failed.begin("alice", "10.0.0.2", now=0) == (
        "a login for alice is being checked; try again in a moment"
    )
    assert failed.begin("bob", "10.0.0.1", now=0) == (
        "a login from your address is being checked; try again in a moment"
    )
    assert failed.failed("alice", "10.0.0.1", now=0) == 0.5
    failed.end("alice", "10.0.0.1")
    # a failure's delay holds the account and the address; then they are free again
    assert failed.begin("alice", "10.0.0.3", now=0.25) == (
        "too many failed logins: try again in 1 s"
    )
    assert failed.begin("carol", "10.0.0.1", now=0.25) == (
        "too many failed logins: try again in 1 s"
    )
    assert failed.begin("alice", "10.0.0.3", now=0.5) is None


def test_a_thousand_addresses_raise_one_accounts_delay_to_its_ceiling_and_no_further() -> None:
    failed = rules.FailedLogins()
    delays = [
        failed.failed("alice", f"10.0.{n // 256}.{n % 256}", now=n * 60.0) for n in range(1000)
    ]
    assert delays[:8] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert set(delays[6:]) == {30.0}


def test_registrations_are_paced_per_address() -> None:
    paced = rules.Registrations()
    assert [paced.allow("10.0.0.1", now=0) for _ in range(10)] == [0.0] * 10
    assert paced.allow("10.0.0.1", now=0) == 30.0
    assert paced.allow("10.0.0.1", now=15) == 15.0
    assert paced.allow("10.0.0.2", now=15) == 0.0  # another address
    assert paced.allow("10.0.0.1", now=30) == 0.0
    assert paced.allow("10.0.0.1", now=30) == 30.0


def source(n: int) -> str:
    """The ``n``-th of a thousand loopback addresses."""
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


def close_all(users: list[LineSocket]) -> None:
    for user in users:
        user.close()


async def answer_to(user: LineSocket, line: bytes) -> bytes:
    """The answer to a login (``login failed: ...`` or ``you are logged in ...``): the
    next line that is one (a resume token may hold the letters "log")."""
    await user.send(line)
    while True:
        answer = await user.next_line()
        if answer.startswith((b"-!- login failed", b"-!- you are logged in")):
            return answer


async def test_a_thousand_wrong_passwords_at_once_cost_one_hash_and_the_owner_gets_in(
    patient_clock: trio.testing.MockClock,
) -> None:
    hasher = Hasher(parameters=FAST)
    chat = ChatServer(rate=None, hasher=hasher)
    with trio.fail_after(600), contextlib.ExitStack() as stack:
        async with chat_servers(chat) as (tcp, _, _):
            await registered(tcp.port, b"alice", PLAIN)
            users: list[LineSocket] = []
            stack.callback(close_all, users)  # whatever happens
            for n in range(1000):
                user = await LineSocket.connect(tcp.port, source=source(n))
                users.append(user)
            for user in users:
                await user.read_until(b"welcome")
            hashed = hasher.computed
            answers: list[bytes] = [b""] * len(users)
            started = trio.current_time()
            failed_at = 0.0

            async def guess(n: int) -> None:
                nonlocal failed_at
                answers[n] = await answer_to(users[n], b"/login alice wrong-guess-%d\n" % n)
                if b"wrong nick" in answers[n]:
                    failed_at = trio.current_time()

            async with trio.open_nursery() as nursery:
                for n in range(len(users)):
                    nursery.start_soon(guess, n)
            assert collections.Counter(answers) == {
                b"-!- login failed: wrong nick or password for alice": 1,
                b"-!- login failed: not checked: a login for alice is being checked; "
                b"try again in a moment": 999,
            }
            assert hasher.computed - hashed == 1
            assert failed_at - started == pytest.approx(0.5)  # the first failure's delay
            owner = await LineSocket.connect(tcp.port)
            assert await answer_to(owner, b"/login alice " + PLAIN.encode() + b"\n") == (
                b"-!- you are logged in as alice"
            )
            assert chat.statistics().logins_refused == 999
            owner.close()


async def test_wrong_passwords_from_one_address_wait_twice_as_long_each_time(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with chat_servers(chat) as (tcp, _, _):
            for n in range(5):
                await registered(tcp.port, b"user%d" % n, PLAIN)
            guesser = await LineSocket.connect(tcp.port, source="127.0.0.77")
            await guesser.read_until(b"welcome")
            delays = []
            for n in range(5):
                before = trio.current_time()
                answer = await answer_to(guesser, b"/login user%d not-the-password\n" % n)
                assert answer == b"-!- login failed: wrong nick or password for user%d" % n
                delays.append(trio.current_time() - before)
            assert delays == pytest.approx([0.5, 1, 2, 4, 8])
            # at once, from one address, for many accounts: one is checked
            others = [await LineSocket.connect(tcp.port, source="127.0.0.78") for _ in range(5)]
            for other in others:
                await other.read_until(b"welcome")
            answers: list[bytes] = []

            async def guess(n: int) -> None:
                answers.append(await answer_to(others[n], b"/login user%d nope-nope\n" % n))

            async with trio.open_nursery() as nursery:
                for n in range(5):
                    nursery.start_soon(guess, n)
            refused = b"not checked: a login from your address is being checked"
            assert sum(refused in answer for answer in answers) == 4
            for user in [guesser, *others]:
                user.close()


async def test_a_registration_flood_from_one_address_is_paced(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with chat_servers(chat) as (tcp, _, _):
            flooder = await LineSocket.connect(tcp.port, source="127.0.0.90")
            await flooder.read_until(b"welcome")
            answers = []
            for n in range(11):
                await flooder.send(b"/nick flood%d\n/register %s\n" % (n, PLAIN.encode()))
                answers.append(await flooder.read_until(b"registered" if n == 10 else b"is yours"))
            assert answers[-1] == (
                b"-!- not registered: too many registrations from your address; try again in 30 s"
            )
            assert chat.statistics().registered == 10
            elsewhere = await LineSocket.connect(tcp.port, source="127.0.0.91")
            await elsewhere.send(b"/nick calm\n/register " + PLAIN.encode() + b"\n")
            await elsewhere.read_until(b"calm is yours")
            await trio.sleep(30)
            await flooder.send(b"/nick flood11\n/register " + PLAIN.encode() + b"\n")
            await flooder.read_until(b"flood11 is yours")
            flooder.close()
            elsewhere.close()


class Failing(MemoryAccounts):
    """Accounts whose store fails while ``failing`` is set."""

    failing = False

    async def get(self, key: str) -> Account | None:
        if self.failing:
            raise OSError("disk unplugged")
        return await super().get(key)


async def test_a_store_that_fails_mid_login_is_told_and_leaves_nothing_held(
    patient_clock: trio.testing.MockClock,
) -> None:
    accounts = Failing()
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST), accounts=accounts)
    with trio.fail_after(300):
        async with chat_servers(chat) as (tcp, _, _):
            await registered(tcp.port, b"alice", PLAIN)
            user = await LineSocket.connect(tcp.port)
            await user.read_until(b"welcome")
            accounts.failing = True
            await user.send(b"/login alice " + PLAIN.encode() + b"\n")
            assert await user.read_until(b"accounts") == b"-!- " + ACCOUNTS_DOWN.encode()
            await user.send(b"still talking\n")
            await user.read_until(b"still talking")  # the session goes on
            accounts.failing = False
            assert await answer_to(user, b"/login alice " + PLAIN.encode() + b"\n") == (
                b"-!- you are logged in as alice"
            )  # not "being checked": the failed attempt let go of the account
            user.close()
