"""The Redis directory on its own, through a real redis-server: the lease of a process,
what it costs Redis, and what it does when Redis lost it (the chat over Redis is in
``test_cluster.py``).

Leases expire in Redis's real seconds, so these tests run on real time, each under an
absolute guard.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from triosock._directory._redis import RedisDirectory

from .conftest import GUARD
from .redistools import LogWatch, RedisProcess, redis_server, watch_log

pytest.importorskip("coredis")

LOST = "the directory had lost this process's lease"


@asynccontextmanager
async def two_processes(
    lease: float,
) -> AsyncIterator[tuple[RedisProcess, RedisDirectory, RedisDirectory, LogWatch]]:
    """A redis-server, two processes' directories on it, and their lost-lease warnings."""
    async with (
        redis_server() as redis,
        RedisDirectory(redis.url, lease=lease) as here,
        RedisDirectory(redis.url, lease=lease) as there,
    ):
        with watch_log("triosock.directory", LOST) as warned:
            yield redis, here, there, warned


async def test_the_lease_costs_redis_the_same_for_one_session_or_three_hundred() -> None:
    """One lease per process: renewing it is a command or two, whatever the number of
    users; a process gone frees all its users at its lease's end, and the reaper tells."""
    with trio.fail_after(GUARD):
        async with redis_server() as redis:
            async with RedisDirectory(redis.url, lease=1.5) as gone:
                sessions = [await gone.register("tcp", f"user{i}") for i in range(300)]
                before = await redis.command_calls()
                await trio.sleep(3)  # about 6 renewals, every lease / 3
                during = await redis.command_calls() - before
                assert len(await gone.nicks("#lobby")) == 300  # still leased, all of them
                # 6 renewals of a lease per session would be 6 x 300 x 7 commands.
                assert during < 100, during
            # Its context left without unregistering anyone: as if the process died.
            async with RedisDirectory(redis.url, lease=1.5) as survivor:
                await trio.sleep(2)  # the lease (1.5 s, real time) runs out
                assert await survivor.nicks() == []
                assert await survivor.lookup("user7") is None
                taken = await survivor.register("tcp", "user7")
                assert taken.nick == "user7"  # free
                reaped: list[str] = []
                for _ in range(5):  # 100 per pass
                    reaped += [ghost.nick for ghost in await survivor.reap()]
                assert sorted(reaped) == sorted(s.nick for s in sessions)
                assert await survivor.nicks() == ["user7"]
                assert await survivor.rooms() == {"#lobby": 1}


async def test_a_fresh_directory_is_leased_from_its_start_and_warns_of_nothing() -> None:
    lease = 0.6  # renewed every 0.2 s
    with trio.fail_after(GUARD):
        async with redis_server() as redis:
            with watch_log("triosock.directory", LOST) as warned:
                async with RedisDirectory(redis.url, lease=lease) as directory:
                    key = f"triosock:proc:{directory.origin}"
                    # Nobody registered, and the process is known alive already.
                    assert 0 < await redis.pttl(key) <= 600
                    await trio.sleep(2 * lease)  # a few renewals, with and without users
                    await directory.register("tcp", "alice")
                    await trio.sleep(2 * lease)
                    # Renewed all along: a lease left alone would have ended by now.
                    assert 0 < await redis.pttl(key) <= 600
            assert warned.messages() == []


async def test_a_redis_emptied_under_directories_gets_their_users_back_within_a_renewal() -> None:
    lease = 0.9  # renewed every 0.3 s
    with trio.fail_after(GUARD):
        async with two_processes(lease) as (redis, here, there, warned):
            alice = await here.register("tcp", "alice")
            await here.register("tcp", "bob", "#ops")
            assert await there.nicks() == ["alice", "bob"]
            await trio.sleep(lease)  # each renews a few times, and says nothing
            assert warned.messages() == []
            await redis.flushall()  # as a Redis restarted empty, the connections kept
            flushed = trio.current_time()
            await warned.wait(2)  # each process finds its lease gone at its renewal
            assert trio.current_time() - flushed <= lease / 3 + 0.3
            assert await there.nicks() == ["alice", "bob"]
            assert await there.rooms() == {"#lobby": 1, "#ops": 1}
            assert await there.lookup("ALICE") == alice
            await trio.sleep(2 * lease)  # more renewals: each loss is told once
            assert await there.nicks() == ["alice", "bob"]
    assert len(warned.records) == 2  # one loss each, told once; nothing at their start
    assert sorted(warned.messages()) == sorted(
        f"{LOST}; re-asserting its users ({users}, process {directory.origin})"
        for users, directory in ((2, here), (0, there))
    )


async def test_a_user_arriving_after_the_loss_brings_every_user_back_not_only_himself() -> None:
    lease = 30.0  # no renewal while the test runs: the registration finds the loss
    with trio.fail_after(GUARD):
        async with two_processes(lease) as (redis, here, there, warned):
            await here.register("tcp", "alice")
            await redis.flushall()
            await here.register("tcp", "bob")
            assert await there.nicks() == ["alice", "bob"]
            assert await there.rooms() == {"#lobby": 2}
    assert warned.messages() == [f"{LOST}; re-asserting its users (2, process {here.origin})"]


async def test_a_process_resumes_its_own_session_only_while_nobody_took_it() -> None:
    """``take_own``: a session whose token this process shared (``keep_token``) is its to
    resume until another process takes it by that token, and then no longer, even
    before this process has heard (its next renewal); a session never shared is its own."""
    with trio.fail_after(GUARD):
        async with two_processes(lease=30) as (_, here, there, _):
            kept = await here.register("tcp", "bob")
            await here.keep_token(kept.session, b"\x01" * 32)
            assert await here.take_own(kept.session)  # its token, used up: a new one
            await here.keep_token(kept.session, b"\x02" * 32)
            taken = await there.take_session(b"\x02" * 32)
            assert taken is not None
            assert taken.session == kept.session
            assert not await here.take_own(kept.session)
            assert await there.take_session(b"\x02" * 32) is None  # used up
            alone = await here.register("tcp", "carol")
            assert await here.take_own(alone.session)  # never shared
