"""What a member whose socket falls behind gets under each policy, and the chat's
running rules (outside ``async with``, leaving the block, a hub of another kind)."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from triosock import TCPServer, serve_tcp
from triosock.chat import ChatServer, InProcessDirectory
from triosock.hub import (
    Hub,
    HubStatistics,
    InProcessHub,
    Policy,
    SubscriberStatistics,
    Subscription,
)

from .chattools import LineSocket, chat_servers, expect, join_over_udp
from .conftest import GUARD
from .test_chat_flow import CountingHub

TEXT = b"q" * 500


async def talk_until(
    talker: LineSocket, listener: LineSocket, count: int, *, nursery: trio.Nursery
) -> list[bytes]:
    """``count`` lines said by ``talker``, each seen by ``listener`` (which reads all)."""
    said = [b"%d %s" % (i, TEXT) for i in range(count)]

    async def drain(member: LineSocket) -> None:
        while not member.eof:
            await member.read_some()

    nursery.start_soon(drain, talker)
    await talker.send(b"".join(line + b"\n" for line in said))
    await listener.read_until(b": %d " % (count - 1))
    return said


async def three_members(port: int) -> tuple[LineSocket, LineSocket, LineSocket]:
    """guest1, with a small receive buffer (the one that falls behind), then a listener
    and a talker, all in the lobby."""
    behind = await LineSocket.connect(port, rcvbuf=4096)
    listener = await LineSocket.connect(port)
    await listener.read_until(b"guest2 joined")
    talker = await LineSocket.connect(port)
    await listener.read_until(b"guest3 joined")
    return behind, listener, talker


def room_lines(member: LineSocket, nick: bytes) -> list[bytes]:
    prefix = b"[#lobby] " + nick + b": "
    return [line[len(prefix) :] for line in member.lines if line.startswith(prefix)]


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
async def test_a_member_that_falls_behind_loses_whole_lines_and_is_told(
    autojump_clock: trio.testing.MockClock, policy: Policy
) -> None:
    chat = ChatServer(policy=policy, max_backlog=16 * 1024, stall_timeout=None)
    count = 8000  # ~4 MB: more than the kernel holds for a reader that stops
    with trio.fail_after(10 * count):
        async with chat_servers(chat) as (tcp, _, _):
            behind, listener, talker = await three_members(tcp.port)
            async with trio.open_nursery() as nursery:
                said = await talk_until(talker, listener, count, nursery=nursery)
                # Now the member that fell behind reads again, and catches up.
                await talker.send(b"caught up?\n")
                await behind.read_until(b"guest3: caught up?")
                await listener.read_until(b"guest3: caught up?")
                nursery.cancel_scope.cancel()
            assert await chat.users() == ["guest1", "guest2", "guest3"]
            stats = chat.statistics()
            for member in (behind, listener, talker):
                member.close()
    assert room_lines(listener, b"guest3") == [*said, b"caught up?"]
    got = room_lines(behind, b"guest3")
    assert got[-1] == b"caught up?"
    kept = got[:-1]
    assert all(line in said for line in kept)  # whole lines only
    indices = [int(line.split()[0]) for line in kept]
    assert indices == sorted(set(indices))  # in order, none twice
    assert 0 < stats.dropped < count
    assert len(kept) + stats.dropped == count
    notices = [line for line in behind.lines if line.endswith(b"you fell behind")]
    assert notices
    told = sum(int(n.split()[1]) for n in notices)  # "-!- N messages dropped: ..."
    assert told == stats.dropped
    if policy == "drop_newest":
        assert indices == list(range(len(kept)))  # what it kept is the oldest
    else:
        assert indices[-1] == count - 1  # what it kept includes the newest


async def test_block_delivers_everything_at_the_pace_of_the_slowest_reader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = CountingHub()
    chat = ChatServer(hub, policy="block", max_backlog=16 * 1024, rate=None)
    count = 8000
    with trio.fail_after(10 * count):
        async with chat_servers(chat) as (tcp, _, _):
            slow, listener, talker = await three_members(tcp.port)

            async def read_slowly() -> None:
                while not slow.eof:
                    await slow.read_some()
                    await trio.sleep(0.01)  # a slow terminal: virtual time

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_slowly)
                start = trio.current_time()
                said = await talk_until(talker, listener, count, nursery=nursery)
                took = trio.current_time() - start
                await slow.read_until(b": %d " % (count - 1))
                nursery.cancel_scope.cancel()
            for member in (slow, listener, talker):
                member.close()
    assert room_lines(slow, b"guest3") == said
    assert room_lines(listener, b"guest3") == said
    assert hub.waits > 0  # the publisher waited for the slow reader...
    assert took > 1  # ...so everyone got the lines at its pace (virtual seconds)
    assert chat.statistics().disconnected_slow == 0


async def test_handlers_refuse_to_serve_outside_async_with(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chat = ChatServer()  # never entered
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(chat.serve_tcp_client, 0, task_status=task_status)
            )
            client = await LineSocket.connect(server.port)
            assert await client.read_to_eof() == []
            client.close()
            nursery.cancel_scope.cancel()
    assert "not running: serve its handlers inside `async with chat:`" in caplog.text


async def test_leaving_async_with_tells_the_users_still_there_and_ends_them() -> None:
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            async with chat:
                server: TCPServer = await nursery.start(
                    lambda task_status: serve_tcp(chat.serve_tcp_client, 0, task_status=task_status)
                )
                user = await LineSocket.connect(server.port)
                await user.read_until(b"guest1 joined")
            lines = await user.read_to_eof()
            assert lines[-1] == b"-!- server closing: goodbye"
            user.close()
            nursery.cancel_scope.cancel()


# -- a hub whose subscriptions are not in-process: the fan-out cannot watch them -------


class _Wrapped(Subscription[bytes]):
    """A subscription that hides the in-process one behind it."""

    def __init__(self, inner: Subscription[bytes]) -> None:
        self._inner = inner

    topic = property(lambda self: self._inner.topic)
    policy = property(lambda self: self._inner.policy)
    buffer = property(lambda self: self._inner.buffer)

    async def receive(self) -> bytes:
        return await self._inner.receive()

    def receive_nowait(self) -> bytes:
        return self._inner.receive_nowait()

    def drain_nowait(self, limit: int | None = None) -> list[bytes]:
        return self._inner.drain_nowait(limit)

    def take_missed(self) -> int:
        return self._inner.take_missed()

    def statistics(self) -> SubscriberStatistics:
        return self._inner.statistics()

    def unsubscribe(self) -> None:
        self._inner.unsubscribe()

    async def wait_ended(self) -> None:
        await self._inner.wait_ended()

    async def aclose(self) -> None:
        await self._inner.aclose()


class OpaqueHub(Hub[bytes]):
    """An in-process hub seen through subscriptions a ReadyQueue does not know."""

    def __init__(self) -> None:
        self.inner: InProcessHub[bytes] = InProcessHub()

    def subscribe(
        self, topic: str, *, buffer: int = 256, policy: Policy = "drop_oldest"
    ) -> contextlib.AbstractAsyncContextManager[Subscription[bytes]]:
        @asynccontextmanager
        async def subscribing() -> AsyncIterator[Subscription[bytes]]:
            async with self.inner.subscribe(topic, buffer=buffer, policy=policy) as sub:
                yield _Wrapped(sub)

        return subscribing()

    def publish_nowait(self, topic: str, message: bytes) -> int:
        return self.inner.publish_nowait(topic, message)

    async def publish(self, topic: str, message: bytes) -> int:
        return await self.inner.publish(topic, message)

    def statistics(self) -> HubStatistics:
        return self.inner.statistics()

    def topics(self) -> frozenset[str]:
        return self.inner.topics()

    def subscriber_count(self, topic: str) -> int:
        return self.inner.subscriber_count(topic)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_hub_without_in_process_subscriptions_still_carries_the_chat(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    chat = ChatServer(OpaqueHub())
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            alice = await LineSocket.connect(tcp.port)
            bob = await LineSocket.connect(tcp.port)
            await alice.read_until(b"guest2 joined")
            await bob.send(b"hello\n/join #dev\nonly dev\n")
            assert await alice.read_until(b"hello") == b"[#lobby] guest2: hello"
            assert await bob.read_until(b"only dev") == b"[#dev] guest2: only dev"
            await alice.send(b"/msg guest2 psst\n")
            assert await bob.read_until(b"psst") == b"[dm from guest1] psst"
            await bob.send(b"/quit\n")
            assert (await bob.read_to_eof())[-1] == b"-!- bye"
            await alice.read_until(b"* guest2 left #lobby")
            for member in (alice, bob):
                member.close()
    assert "Traceback" not in caplog.text


async def test_a_client_asking_for_answers_it_never_reads_is_dropped_whatever_the_policy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Telnet answers are never dropped (a drop policy keeps them), so a client that sends
    # negotiation it never reads the answers to must hit a bound of its own. (With the
    # rate limit, each answer costs a token and they come 50 a second: off here, so
    # that the bound is reached at once.)
    caplog.set_level(logging.WARNING, logger="triosock.chat")
    chat = ChatServer(
        policy="drop_oldest", max_backlog=16 * 1024, stall_timeout=None, rate=None, resume_window=0
    )
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            watcher = await LineSocket.connect(tcp.port)
            await watcher.read_until(b"guest1 joined")
            pest = await LineSocket.connect(tcp.port, rcvbuf=4096)
            await watcher.read_until(b"guest2 joined")
            with contextlib.suppress(OSError):  # until the server closes on it
                for _ in range(100):  # ~6 MB of IAC DO ECHO at most: more than the kernel holds
                    await pest.send(b"\xff\xfd\x01" * 20_000)
            await watcher.read_until(b"* guest2 left #lobby")
            await watcher.send(b"still fine\n")
            assert await watcher.read_until(b"still fine") == b"[#lobby] guest1: still fine"
            for member in (watcher, pest):
                member.close()
    assert re.search(r"disconnecting guest2 .*bytes of answers to it were waiting", caplog.text)


async def test_a_sender_slowed_by_the_rate_limit_is_not_idle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The idle timeout counts silence from the user, not time the server keeps it waiting:
    # one read of short lines takes the rate limit 20 s, four times the idle timeout.
    chat = ChatServer()
    count = 1000
    with trio.fail_after(100 * count):
        async with chat_servers(chat, tcp_options={"idle_timeout": 5}) as (tcp, _, _):
            listener = await LineSocket.connect(tcp.port)
            talker = await LineSocket.connect(tcp.port)
            await listener.read_until(b"guest2 joined")
            said = [b"short %d" % i for i in range(count)]

            async def drain(member: LineSocket) -> None:
                while not member.eof:
                    await member.read_some()

            async def keep_alive() -> None:  # empty lines: life, and nothing said
                while True:
                    await trio.sleep(3)
                    await listener.send(b"\n")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_alive)
                nursery.start_soon(drain, talker)
                await talker.send(b"".join(line + b"\n" for line in said))
                await listener.read_until(b"short %d" % (count - 1))
                nursery.cancel_scope.cancel()
            assert tcp.statistics().idle_timeouts == 0
            assert chat.statistics().paced > 0
            for member in (listener, talker):
                member.close()
    assert room_lines(listener, b"guest2") == said


async def test_a_member_closed_while_the_room_waits_for_it_never_freezes_the_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Under "block" the room waits for a member that falls behind; closed then (here by
    # the idle timeout), it must leave the hub at once, or nobody would get anything again.
    chat = ChatServer(policy="block", max_backlog=16 * 1024, rate=None, resume_window=0)
    count = 8000  # ~4 MB: more than the kernel holds for the member that does not read
    with trio.fail_after(100 * count):
        async with chat_servers(chat, tcp_options={"idle_timeout": 5}) as (tcp, _, _):
            silent, listener, talker = await three_members(tcp.port)

            async def keep_alive(member: LineSocket) -> None:
                while True:
                    await trio.sleep(3)
                    await member.send(b"\n")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_alive, listener)
                nursery.start_soon(keep_alive, talker)
                said = await talk_until(talker, listener, count, nursery=nursery)
                assert b"* guest1 left #lobby" in listener.lines  # closed as idle...
                late = await LineSocket.connect(tcp.port)
                await late.send(b"after it\n")  # ...and the room goes on
                assert await listener.read_until(b"after it") == b"[#lobby] guest4: after it"
                nursery.cancel_scope.cancel()
            for member in (silent, listener, talker, late):
                member.close()
    # The idle timeout cancelled the silent session's stop scope: it left the room at
    # once, then had the grace period to hand over what it still held. Counted when its
    # connection closed: by now, with the servers stopped.
    assert tcp.statistics().idle_timeouts == 1
    assert room_lines(listener, b"guest3") == said


async def test_a_udp_peer_can_use_the_commands_and_is_told_of_what_it_sent_too_fast() -> None:
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with chat_servers(chat, queue_size=16) as (tcp, udp, _):
            alice = await LineSocket.connect(tcp.port)
            await alice.send(b"/nick alice\n")
            await alice.read_until(b"is now known as alice")
            peer = await join_over_udp(udp.port)
            name = (await alice.read_until(b"joined #lobby")).split()[1]
            await peer.send(b"/msg alice psst\n")
            assert await alice.read_until(b"psst") == b"[dm from " + name + b"] psst"
            await peer.send(b"/who")
            assert (
                await expect(peer, b"-!- in #lobby")
                == b"-!- in #lobby: " + b", ".join(sorted([b"alice", name])) + b"\n"
            )
            # A burst the peer's queue (16) cannot hold: what was dropped is told.
            for i in range(200):
                await peer.send(b"burst %d" % i)
            told = await expect(peer, b"datagrams dropped")
            assert re.fullmatch(
                rb"-!- \d+ datagrams dropped: you sent faster than the chat takes them "
                rb"\(it queues 16\)\n",
                told,
            )
            await peer.send(b"after the burst")
            await alice.read_until(b"after the burst")
            said = [line for line in alice.lines if b": burst " in line]
            assert [line.rsplit(b" ", 1)[1] for line in said] == sorted(
                (line.rsplit(b" ", 1)[1] for line in said), key=int
            )
            assert not any(b"psst" in line for line in alice.lines if line.startswith(b"[#"))
            alice.close()
            await peer.aclose()


async def test_a_cancelled_directory_call_changes_nothing() -> None:
    # A session cancelled while it registers (its client gone, the server stopping) must
    # leave no ghost user: each in-process step is all or nothing.
    directory = InProcessDirectory()
    with trio.CancelScope() as scope:
        scope.cancel()
        await directory.register("tcp")
    assert scope.cancelled_caught
    assert await directory.nicks() == []
    presence = await directory.register("tcp", "alice")
    with trio.CancelScope() as scope:
        scope.cancel()
        await directory.rename(presence.session, "bob")
    assert await directory.nicks() == ["alice"]
