"""The history in Redis Streams (:class:`RedisStore`) with a real redis-server: ids given
atomically with the publish, the same everywhere; a stretch missed by one server read back
in order; the epoch kept by a Redis with its data and changed by one without.

Redis keeps time in real seconds, so these tests run on real time, each under an absolute
guard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio
from coredis.tokens import PureToken
from websockets.trio.client import connect

from triosock._directory._redis import RedisDirectory
from triosock._hub._redis import RedisHub
from triosock._redis import redis_client
from triosock._sansio import chat as proto
from triosock._services.chat._server import HISTORY_RESET, HUB_BACK, HUB_HELD
from triosock._store._redis import RedisStore
from triosock.chat import ChatServer

from .chattools import Events, LineSocket, web_chat
from .conftest import GUARD
from .redistools import RedisProcess, chat_node, chat_users, redis_proxy, redis_server
from .test_chat_web import ws_url

pytest.importorskip("coredis")

TOPIC = "room:#t"
#: A line shown as history: its time first.
EARLIER = re.compile(rb"^\[\d\d:\d\d:\d\d\] \[#lobby\] ")


def _said(i: int) -> proto.Message:
    return proto.Message("#t", "alice", f"line {i}")


async def _ids(sub: object, count: int) -> list[tuple[int, str]]:
    got = []
    for _ in range(count):
        event = json.loads(await sub.receive())  # type: ignore[attr-defined]
        got.append((event["id"], event["text"]))
    return got


async def test_lines_get_ids_in_redis_in_the_order_every_server_delivers_them() -> None:
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            RedisHub(redis.url) as hub_a,
            RedisHub(redis.url) as hub_b,
            RedisStore(hub_a, 3) as a,
            RedisStore(hub_b, 3) as b,
            hub_a.subscribe(TOPIC) as here,
            hub_b.subscribe(TOPIC) as there,
        ):
            for i in range(5):  # from both servers, interleaved
                (a if i % 2 else b).deliver_nowait(TOPIC, _said(i))
            # Each server, the sender's own too, in one order: the ids'.
            got_here, got_there = await _ids(here, 5), await _ids(there, 5)
            assert got_here == got_there
            assert [i for i, _ in got_here] == [1, 2, 3, 4, 5]
            # The stream keeps about the last 3 (MAXLEN ~: whole nodes), with their times.
            page = await a.last(TOPIC, 3)
            assert [(r.id, json.loads(r.data)["text"]) for r in page.records] == got_here[2:]
            assert page.last == 5
            assert page.epoch == b.epoch == a.epoch
            assert all(json.loads(r.data)["time"] == r.time > 0 for r in page.records)
            after = await b.after(TOPIC, 3, 10)
            assert [r.id for r in after.records] == [4, 5]
            before = await b.before(TOPIC, 5, 1)
            assert [r.id for r in before.records] == [4]


async def test_a_batch_sent_again_after_a_timeout_is_recorded_once() -> None:
    with trio.fail_after(GUARD):
        async with redis_server() as redis, RedisHub(redis.url) as hub, RedisStore(hub) as store:
            item = (7).to_bytes(8, "big") + b'"room":"#t",\0"type":"message"}'
            async with redis_client(redis.url) as client:
                for _ in range(2):  # Redis ran the first sending after all
                    async with client.pipeline(transaction=False) as pipe:
                        store.queue(pipe, b"triosock:" + TOPIC.encode(), TOPIC, b"o*", [item])
                assert await client.xlen("triosock:history:" + TOPIC) == 1
            assert (await store.last(TOPIC, 5)).last == 1


async def test_a_server_that_missed_a_stretch_reads_it_back_in_order() -> None:
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            redis_proxy(redis) as proxy,
            RedisHub(redis.url) as hub_a,
            RedisHub(proxy.url) as hub_b,  # its subscriber connection can be cut off
            RedisStore(hub_a) as a,
            RedisStore(hub_b),
            hub_b.subscribe(TOPIC) as there,
        ):
            a.deliver_nowait(TOPIC, _said(1))
            assert await _ids(there, 1) == [(1, "line 1")]
            back = trio.Event()
            hub_b.add_health_listener(lambda healthy, _: healthy and back.set())
            proxy.cut()
            async with redis_client(redis.url) as client:
                await client.client_kill(type_=PureToken.PUBSUB)  # every subscriber connection
                for i in (2, 3, 4):  # said while server b cannot hear
                    a.deliver_nowait(TOPIC, _said(i))
                while True:  # until Redis has them (the hub sends in the background)
                    if await client.xlen("triosock:history:" + TOPIC) == 4:
                        break
                    await trio.sleep(0.01)
            proxy.heal()
            await back.wait()
            a.deliver_nowait(TOPIC, _said(5))
            assert await _ids(there, 4) == [(i, f"line {i}") for i in (2, 3, 4, 5)]
            assert hub_b.statistics().repaired == 3
            assert hub_b.statistics().unrepaired == 0


@pytest.mark.parametrize("persist", [False, True])
async def test_the_epoch_and_history_outlive_a_restart_only_with_persistence(
    persist: bool, tmp_path: Path
) -> None:
    with trio.fail_after(GUARD):
        async with redis_server(tmp_path if persist else None) as redis:
            async with RedisHub(redis.url) as hub, RedisStore(hub) as store:
                async with hub.subscribe(TOPIC) as sub:
                    store.deliver_nowait(TOPIC, _said(1))
                    await sub.receive()
                before = store.epoch
            await redis.kill()
            await redis.start()
            async with RedisHub(redis.url) as hub, RedisStore(hub) as store:
                page = await store.last(TOPIC, 5)
                if persist:
                    assert store.epoch == before
                    assert [r.id for r in page.records] == [1]
                else:
                    assert store.epoch != before
                    assert page.records == ()
                    assert page.last == 0


async def test_a_newcomer_on_another_server_sees_the_rooms_history() -> None:
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            chat_node(redis.url, "127.0.0.2", history=100) as (_, a),
            chat_node(redis.url, "127.0.0.3", history=100) as (_, b),
        ):
            (alice,) = await chat_users(a, "127.0.0.2", 1)
            await alice.send(b"/nick alice\n")
            await alice.read_until(b"is now known as alice")
            for i in range(5):
                await alice.send(b"line %d\n" % i)
            await alice.read_until(b"alice: line 4")
            (bob,) = await chat_users(b, "127.0.0.3", 1)
            await bob.read_until(b"alice: line 4")
            earlier = [line for line in bob.lines if EARLIER.search(line)]
            assert [line.rsplit(b": ", 1)[1] for line in earlier] == [
                b"line %d" % i for i in range(5)
            ]
            await alice.send(b"live\n")
            assert (await bob.read_until(b"live")).endswith(b"alice: live")
            alice.close()
            bob.close()


async def test_users_are_told_when_redis_comes_back_without_the_history() -> None:
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            RedisHub(redis.url) as hub,
            RedisDirectory(redis.url) as directory,
            RedisStore(hub) as store,
        ):
            chat = ChatServer(hub, directory, store=store, rate=None)
            await _told_of_the_reset(redis, chat)


async def _told_of_the_reset(redis: RedisProcess, chat: ChatServer) -> None:
    async with (
        web_chat(chat) as (tcp, _, web),
        connect(ws_url(web)) as ws,
    ):
        events = Events(ws)
        hello = await events.next(type="hello")
        alice = await LineSocket.connect(tcp)
        await alice.read_until(b"welcome")
        await alice.send(b"before\n")
        said = await events.next(type="message")
        assert said["text"] == "before"
        await redis.kill()
        assert await alice.read_until(b"degraded") == b"-!- " + HUB_HELD.encode()
        await redis.start()  # the same port, empty
        assert await alice.read_until(b"reset") == b"-!- " + HISTORY_RESET.encode()
        # The page's cue to forget the ids it holds, before the notice, and before any
        # line of the new history.
        before_reset = [await events.next()]
        while before_reset[-1]["type"] != "epoch":
            before_reset.append(await events.next())
        assert [e["type"] for e in before_reset] == ["notice", "notice", "epoch"]
        assert before_reset[1] == {"text": HUB_BACK, "type": "notice"}
        reset = before_reset[-1]
        assert reset == {"epoch": chat.store.epoch, "type": "epoch"}
        assert reset["epoch"] != hello["epoch"]
        assert await events.next() == {"text": HISTORY_RESET, "type": "notice"}
        await alice.send(b"after\n")
        again = await events.next(type="message")
        assert (again["text"], again["id"]) == ("after", 1)
        alice.close()


async def test_a_line_and_the_leave_after_it_keep_their_order_on_the_senders_server() -> None:
    """Lines said go through Redis (it gives their ids); a join or leave on the same room
    goes the same way, so that a sender's last words come before its leaving, on its
    own server as on the others."""
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            chat_node(redis.url, "127.0.0.2", history=100) as (_, a),
            chat_node(redis.url, "127.0.0.3", history=100) as (_, b),
        ):
            (bob, here) = await chat_users(a, "127.0.0.2", 2)
            (there,) = await chat_users(b, "127.0.0.3", 1)
            await bob.send(b"/nick bob\n")
            for user in (here, there):
                await user.read_until(b"is now known as bob")
            await bob.send(b"bye\n/quit\n")
            for user in (here, there):
                await user.read_until(b"bob left")
                said = [line for line in user.lines if b"bob" in line]
                assert said[-2:] == [b"[#lobby] bob: bye", b"* bob left #lobby"]
            for user in (bob, here, there):
                user.close()
