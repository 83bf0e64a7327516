"""Two chat servers over one real redis-server, through the faults that leases and nicks
must survive: Redis restarted empty while a user takes another's nick, Redis paused past
the lease, one server cut off from Redis alone past the lease.

Redis keeps time in real seconds (its key expiry, a paused process), so these tests run
on real time, each under an absolute guard; the lease is shortened to keep them short.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from triosock import TCPServer
from triosock._services.chat._presence import NICK_LOST

from .chattools import LineSocket
from .conftest import GUARD
from .redistools import (
    RedisProcess,
    RedisProxy,
    chat_node,
    chat_users,
    redis_proxy,
    redis_server,
    watch_log,
)

pytest.importorskip("coredis")

#: The lease of these tests' servers: renewed every 0.5 s, reaped 1.5 s after the last.
LEASE = 1.5
#: Seconds after a Redis restart by which a nick claimed meanwhile has one owner again.
ONE_OWNER = 1.5
#: How long Redis is paused: four leases, and past the timeout of a command.
PAUSE = 4 * LEASE
#: The reaping pass of the Redis directory, every second.
REAP_INTERVAL = 1.0


@asynccontextmanager
async def behind_a_proxy(
    **options: Any,
) -> AsyncIterator[tuple[RedisProcess, RedisProxy, TCPServer, TCPServer]]:
    """A redis-server, two chat servers on it (TCP on 127.0.0.2 and 127.0.0.3; more
    ChatServer ``options``), the first one's directory through a proxy that can cut it
    off alone."""
    async with (
        redis_server() as redis,
        redis_proxy(redis) as proxy,
        chat_node(redis.url, "127.0.0.2", lease=LEASE, directory_url=proxy.url, **options) as (
            _,
            a,
        ),
        chat_node(redis.url, "127.0.0.3", lease=LEASE, **options) as (_, b),
    ):
        yield redis, proxy, a, b


async def answer(user: LineSocket, *texts: bytes) -> bytes:
    """The next line containing any of ``texts``."""
    while True:
        while user._cursor < len(user.lines):
            line = user.lines[user._cursor]
            user._cursor += 1
            if any(text in line for text in texts):
                return line
        assert not user.eof, user.lines[-5:]
        await user.read_some()


async def nick(user: LineSocket, name: bytes, *watchers: LineSocket) -> None:
    await user.send(b"/nick " + name + b"\n")
    for watcher in (user, *watchers):
        await watcher.read_until(b"is now known as " + name)


async def test_a_nick_taken_while_its_owner_was_lost_goes_back_to_the_earlier_claim() -> None:
    """Redis restarts empty while carol's server cannot reach it: bob, on the other server,
    takes the nick carol meanwhile. When carol's server reaches Redis again, the earlier
    claim (carol's) keeps the nick, as after an IRC netsplit; bob becomes a guest, is told
    why, and his room sees the change: one carol in /who, /msg carol reaches carol."""
    with trio.fail_after(GUARD):
        async with behind_a_proxy() as (redis, proxy, a, b):
            (carol,) = await chat_users(a, "127.0.0.2", 1)
            bob, dave = await chat_users(b, "127.0.0.3", 2)
            await nick(carol, b"carol", bob, dave)
            await nick(dave, b"dave", bob, carol)
            proxy.cut()  # carol's server cannot re-assert her yet
            await redis.kill()
            await redis.start()  # empty: carol's claim is gone with it
            while True:  # b re-asserts its users within 0.25 s of the return
                await bob.send(b"/nick carol\n")
                said = await answer(bob, b"is now known as carol", b"-!- ")
                if b"is now known as carol" in said:
                    break  # the nick looked free: the race is on
                await trio.sleep(0.1)  # polling b's reconnection
            while True:
                await bob.send(b"/who\n")
                who = await answer(bob, b"in #lobby:", b"-!- the chat's directory")
                if who == b"-!- in #lobby: carol, dave":  # carol's server is not back
                    break
                await trio.sleep(0.1)  # polling b's re-assertion
            proxy.heal()
            healed = trio.current_time()
            # Carol's server re-asserts her with her claim's stamp, earlier than bob's:
            # bob gets a guest nick in the same script; b hears at its next renewal
            # (lease / 3) and tells him at its next reaping pass.
            told = await bob.read_until(b"went back to")
            assert trio.current_time() - healed <= LEASE / 3 + REAP_INTERVAL + 1
            guest = told.rsplit(b" ", 1)[1]
            assert guest.startswith(b"guest")
            assert told == b"-!- " + NICK_LOST.format(nick="carol", guest=guest.decode()).encode()
            await dave.read_until(b"carol is now known as " + guest)
            await dave.send(b"/who\n")
            who = await dave.read_until(b"in #lobby:")
            assert who == b"-!- in #lobby: " + b", ".join(sorted([b"carol", b"dave", guest]))
            await dave.send(b"/msg carol only the first carol\n")
            assert await carol.read_until(b"only the first") == (
                b"[dm from dave] only the first carol"
            )
            await bob.send(b"marker\n")
            for user in (carol, bob, dave):
                await user.read_until(b"marker")
            # The one who kept her nick was never renamed nor told anything.
            assert not any(b"went back" in line for line in carol.lines)
            assert sum(b"went back to" in line for line in bob.lines) == 1
            for user in (carol, bob, dave):
                user.close()


async def test_a_nick_claimed_right_after_a_restart_ends_with_one_owner_the_first() -> None:
    """No proxy: Redis killed and restarted empty, bob claims carol's nick as soon as his
    server is back. Whether his claim lands before carol's server re-asserts her (he is
    renamed) or after (the nick is taken), carol keeps it: one owner, within
    :data:`ONE_OWNER` of the restart, though no renewal comes in that time."""
    lease = 60.0  # renewed every 20 s: not while the test runs
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            chat_node(redis.url, "127.0.0.2", lease=lease) as (_, a),
            chat_node(redis.url, "127.0.0.3", lease=lease) as (_, b),
        ):
            (carol,) = await chat_users(a, "127.0.0.2", 1)
            (bob,) = await chat_users(b, "127.0.0.3", 1)
            await nick(carol, b"carol", bob)
            await redis.kill()
            await redis.start()
            restarted = trio.current_time()
            while True:
                await bob.send(b"/nick carol\n")
                said = await answer(bob, b"is now known as carol", b"-!- ")
                if b"is now known as carol" in said or b"is taken" in said:
                    break
                await trio.sleep(0.05)  # polling b's reconnection
            while True:
                await bob.send(b"/who\n")
                who = await answer(bob, b"in #lobby:", b"-!- the chat's directory")
                if who.count(b"carol") == 1 and who.count(b"guest") == 1:
                    break
                await trio.sleep(0.1)  # polling a's re-assertion
            # Carol's server re-asserts her as soon as its hub finds Redis back (it
            # retries every 0.25 s), not at its next renewal (20 s from its start).
            assert trio.current_time() - restarted <= ONE_OWNER
            # If his claim landed first, he is renamed and told: after its loss, his
            # server renews every 0.25 s for a lease, and so learns it at once.
            if b"is now known as carol" in said:
                await bob.read_until(b"went back to")
                assert trio.current_time() - restarted <= ONE_OWNER
            (guest,) = [n for n in who.split(b": ", 1)[1].split(b", ") if n != b"carol"]
            await bob.send(b"/msg carol to the one carol\n")
            assert await carol.read_until(b"to the one") == (
                b"[dm from " + guest + b"] to the one carol"
            )
            carol.close()
            bob.close()


def presence_lines(user: LineSocket, nick: bytes) -> list[bytes]:
    """The join and leave lines of ``nick`` that ``user`` saw."""
    return [
        line
        for line in user.lines
        if line in (b"* " + nick + b" joined #lobby", b"* " + nick + b" left #lobby")
    ]


async def test_redis_paused_past_the_lease_announces_nobody_as_gone() -> None:
    """Redis stopped (SIGSTOP) for four times the lease: every lease ran out in Redis, but
    because Redis was away, not the servers. Nobody is reaped: no room hears a single
    "left" line, every user is still listed and still talks."""
    per_server = 3
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            chat_node(redis.url, "127.0.0.2", lease=LEASE) as (_, a),
            chat_node(redis.url, "127.0.0.3", lease=LEASE) as (_, b),
        ):
            here = await chat_users(a, "127.0.0.2", per_server)
            there = await chat_users(b, "127.0.0.3", per_server)
            everyone = [*here, *there]
            for i, user in enumerate(everyone):
                await nick(user, b"u%d" % i)
            assert await redis.pttl("triosock:seen") == -1  # Redis's clock is kept
            redis.pause()
            # The fault itself: Redis stopped past the lease, and past the commands' timeout
            # (the servers' reapers ask again meanwhile, on new connections).
            await trio.sleep(PAUSE)
            redis.resume()
            # Past a lease and two reaping passes after the return: any reaping is done.
            await trio.sleep(LEASE + 2 * REAP_INTERVAL)
            await everyone[0].send(b"/who\n")
            who = await everyone[0].read_until(b"in #lobby:")
            assert who == b"-!- in #lobby: " + b", ".join(b"u%d" % i for i in range(6))
            await everyone[-1].send(b"still here\n")
            for user in everyone:
                await user.read_until(b"u5: still here")
                assert not any(b" left #lobby" in line for line in user.lines)
            for user in everyone:
                user.close()


async def test_a_server_cut_off_alone_past_the_lease_leaves_then_joins_each_once() -> None:
    """Only server a's directory is cut off from Redis, past the lease: b's reaper takes
    a's users out and their room hears they left, once. When a reaches Redis again it
    writes them back, and the room hears they joined, once: left then joined. A nick
    taken meanwhile goes back to its first owner, as after a Redis restart. (Without
    resumes: sessions that can resume are adopted instead, see test_cluster_resume.)"""
    with trio.fail_after(GUARD):
        async with behind_a_proxy(resume_window=0) as (_, proxy, a, b):
            alice, amy = await chat_users(a, "127.0.0.2", 2)
            bob, bea = await chat_users(b, "127.0.0.3", 2)
            await nick(alice, b"alice", bob, bea)
            await nick(amy, b"amy", bob, bea)
            await nick(bob, b"bob", alice)
            await nick(bea, b"bea", alice)
            proxy.cut()
            cut = trio.current_time()
            left = [await bob.read_until(b" left #lobby") for _ in range(2)]
            assert sorted(left) == [b"* alice left #lobby", b"* amy left #lobby"]
            # Its lease ends at most a lease after the cut; then a reaping pass.
            assert LEASE - LEASE / 3 <= trio.current_time() - cut <= LEASE + REAP_INTERVAL + 1
            await bob.send(b"/who\n")
            assert await bob.read_until(b"in #lobby:") == b"-!- in #lobby: bea, bob"
            await nick(bea, b"amy", bob)  # free, since amy left
            proxy.heal()
            healed = trio.current_time()
            joined = [await bob.read_until(b" joined #lobby") for _ in range(2)]
            assert sorted(joined) == [b"* alice joined #lobby", b"* amy joined #lobby"]
            assert trio.current_time() - healed <= LEASE / 3 + REAP_INTERVAL + 1
            # amy's claim is the earlier one: she keeps her nick, bea is renamed and told.
            told = await bea.read_until(b"went back to")
            assert told.startswith(b"-!- your nick amy went back to another server's user")
            guest = told.rsplit(b" ", 1)[1]
            await bob.send(b"/who\n")
            who = await bob.read_until(b"in #lobby:")
            assert who == b"-!- in #lobby: " + b", ".join(sorted([b"alice", b"amy", b"bob", guest]))
            await alice.send(b"marker\n")
            for user in (alice, amy, bob, bea):
                await user.read_until(b"alice: marker")
            assert b"* amy is now known as " + guest in bob.lines  # (before or after joins)
            for user in (bob, bea):
                for name in (b"alice", b"amy"):
                    assert presence_lines(user, name)[-2:] == [
                        b"* " + name + b" left #lobby",
                        b"* " + name + b" joined #lobby",
                    ]
                    assert presence_lines(user, name).count(b"* " + name + b" left #lobby") == 1
            for user in (alice, amy, bob, bea):
                user.close()


async def test_servers_back_one_after_the_other_within_a_lease_of_redis_are_not_reaped() -> None:
    """Redis hears from nobody past the lease (both servers cut off, as when Redis itself
    is away), then server a reaches it again, then b, within a lease of a: a's reaper
    must not take b's users for gone, since Redis was away, not b. Nobody is reaped."""
    lease = 3.0  # a lease of grace from Redis's return: 3 s
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            redis_proxy(redis) as to_a,
            redis_proxy(redis) as to_b,
            chat_node(
                redis.url, "127.0.0.2", lease=lease, directory_url=to_a.url, resume_window=0
            ) as (_, a),
            chat_node(
                redis.url, "127.0.0.3", lease=lease, directory_url=to_b.url, resume_window=0
            ) as (_, b),
        ):
            (ann,) = await chat_users(a, "127.0.0.2", 1)
            (ben,) = await chat_users(b, "127.0.0.3", 1)
            await nick(ann, b"ann", ben)
            await nick(ben, b"ben", ann)
            with watch_log("triosock.directory", "re-asserting its users") as back:
                to_a.cut()
                to_b.cut()
                await trio.sleep(lease + 1)  # Redis hears from nobody past the lease
                to_a.heal()
                await back.wait(1)  # a is back, and reaps once a second from now on
                await trio.sleep(REAP_INTERVAL + 0.5)  # b stays away meanwhile
                to_b.heal()
                await back.wait(2)
            await trio.sleep(lease)  # the grace ends: any reaping would be done by now
            await ben.send(b"/who\n")
            assert await ben.read_until(b"in #lobby:") == b"-!- in #lobby: ann, ben"
            await ben.send(b"marker\n")
            for user in (ann, ben):
                await user.read_until(b"ben: marker")
                assert not any(b" left #lobby" in line for line in user.lines)
                user.close()


async def test_a_server_still_away_a_lease_after_redis_returned_is_reaped_then() -> None:
    """Redis hears from nobody past the lease, then server a reaches it again and b does
    not: b's users are reaped a lease after a's return (the grace), not at once; when b
    comes back, they join again."""
    lease = 2.0
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            redis_proxy(redis) as to_a,
            redis_proxy(redis) as to_b,
            chat_node(
                redis.url, "127.0.0.2", lease=lease, directory_url=to_a.url, resume_window=0
            ) as (_, a),
            chat_node(
                redis.url, "127.0.0.3", lease=lease, directory_url=to_b.url, resume_window=0
            ) as (_, b),
        ):
            (ann,) = await chat_users(a, "127.0.0.2", 1)
            (ben,) = await chat_users(b, "127.0.0.3", 1)
            await nick(ann, b"ann", ben)
            await nick(ben, b"ben", ann)
            with watch_log("triosock.directory", "re-asserting its users") as back:
                to_a.cut()
                to_b.cut()
                await trio.sleep(lease + 1)  # Redis hears from nobody past the lease
                to_a.heal()
                await back.wait(1)
            returned = trio.current_time()  # (a's first script marked Redis back)
            assert await ann.read_until(b" left #lobby") == b"* ben left #lobby"
            waited = trio.current_time() - returned
            assert lease - 0.3 <= waited <= lease + REAP_INTERVAL + 0.5, waited
            to_b.heal()
            assert await ann.read_until(b" joined #lobby") == b"* ben joined #lobby"
            for user in (ann, ben):
                user.close()
