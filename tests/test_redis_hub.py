"""The Redis hub on its own, through a real redis-server: what one process's hub sends and
how another's receives it (the chat over Redis is in ``test_cluster.py``).

Redis keeps time in real seconds, so these tests run on real time, each under an
absolute guard.
"""

from __future__ import annotations

import dataclasses
import random
from contextlib import AsyncExitStack

import pytest
import trio

import triosock.hub
from triosock._hub import HubStatistics, ReadyQueue
from triosock._hub._redis import RedisHub, RedisHubStatistics
from triosock._redis import COMMAND_TIMEOUT

from .conftest import GUARD
from .redistools import free_port, redis_server, watch_log

pytest.importorskip("coredis")

#: An origin id of the length every hub's has (16 hex digits), for the wire format.
ORIGIN = b"0123456789abcdef"


def interleaved(count: int, topics: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """``count`` numbered messages over ``topics``, in runs of 1 to 4 for one topic, each
    run's topic another than the previous run's: packing has runs to pack, and every
    switch of topic is an order a regrouping would break."""
    rng = random.Random(868)
    script: list[tuple[str, bytes]] = []
    topic = topics[0]
    while len(script) < count:
        for _ in range(rng.randint(1, 4)):
            script.append((topic, b"%s %d" % (topic.encode(), len(script))))
        topic = rng.choice([t for t in topics if t != topic])
    return script[:count]


async def test_a_burst_for_one_room_travels_packed_and_arrives_whole_and_in_order() -> None:
    # A room's lines that wait together for Redis go in one PUBLISH; lines for another
    # room between them split the run.
    script = (
        [("lobby", i) for i in range(300)] + [("dm", 0)] + [("lobby", i) for i in range(300, 1000)]
    )
    script += [("dm", 1), ("dm", 2)] + [("lobby", 1000 + i) for i in range(5)]
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            RedisHub(redis.url) as sender,
            RedisHub(redis.url) as receiver,
            receiver.subscribe("lobby", buffer=2000, policy="block") as lobby,
            receiver.subscribe("dm", buffer=10, policy="block") as dm,
        ):
            await sender.wait_connected()
            for topic, n in script:  # no checkpoint between: they wait together
                sender.publish_nowait(topic, b"%s %d " % (topic.encode(), n) + b"x" * (n % 7))
            got: dict[str, list[bytes]] = {"lobby": [], "dm": []}
            for topic, sub in (("lobby", lobby), ("dm", dm)):
                while len(got[topic]) < sum(1 for t, _ in script if t == topic):
                    got[topic].append(await sub.receive())
            publishes = await redis.publish_count()
    for topic in ("lobby", "dm"):
        assert got[topic] == [
            b"%s %d " % (topic.encode(), n) + b"x" * (n % 7) for t, n in script if t == topic
        ]
    assert publishes <= 10, publishes  # 1,008 messages; a batch is at most 512


def test_pack_sends_each_run_of_one_channel_in_one_publish_in_the_queues_order() -> None:
    hub = RedisHub("redis://127.0.0.1:1")  # not running: _pack is plain computation
    hub.origin = ORIGIN
    batch = [
        (b"t:a", b"a0", None),
        (b"t:b", b"b1", None),
        (b"t:a", b"a2", None),
        (b"t:a", b"a33", None),
        (b"t:a", b"", None),
        (b"t:b", b"b5", None),
    ]
    assert hub._pack(batch) == [
        (b"t:a", ORIGIN + b"|a0", None),
        (b"t:b", ORIGIN + b"|b1", None),
        # A run: each message after its length, 4 bytes big-endian (an empty one too).
        (b"t:a", ORIGIN + b"#\0\0\0\x02a2\0\0\0\x03a33\0\0\0\0", None),
        (b"t:b", ORIGIN + b"|b5", None),
    ]
    assert hub._pack([]) == []


async def test_a_receiver_gets_interleaved_topics_in_the_order_they_were_published() -> None:
    """The receiver's hub reads every channel on one connection, in the order Redis
    delivers, and hands each message on synchronously; its ``block`` subscriptions of
    one message each report to a ReadyQueue once per message, so the order of the
    reports is the order of arrival across topics (a regrouping sender shows here)."""
    topics = ("lobby", "dm", "ops")
    script = interleaved(400, topics)  # under a batch (512): one pipeline carries it all
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            RedisHub(redis.url) as sender,
            RedisHub(redis.url) as receiver,
            AsyncExitStack() as subscribed,
        ):
            ready: ReadyQueue[bytes] = ReadyQueue()
            for topic in topics:
                # One message each, and "block": the receiving hub hands on the next
                # message for a topic only once the last was taken.
                subscription = await subscribed.enter_async_context(
                    receiver.subscribe(topic, buffer=1, policy="block")
                )
                ready.watch(subscription)
            await sender.wait_connected()
            for topic, message in script:  # no checkpoint between: they wait together
                sender.publish_nowait(topic, message)
            arrived: list[tuple[str, bytes]] = []
            while len(arrived) < len(script):
                for subscription in await ready.wait():
                    arrived.append((subscription.topic, subscription.receive_nowait()))
    assert arrived == script


# -- statistics -------------------------------------------------------------------------


async def test_statistics_is_a_frozen_record_of_the_hub_here_and_its_redis_traffic() -> None:
    # Each hub: one subscriber here, six messages handed to it, none lost.
    expected = RedisHubStatistics(
        topics=1,
        subscribers=1,
        published=6,
        delivered=6,
        dropped=0,
        healthy=True,
        sent=0,
        received=0,
        dropped_remote=0,
        dropped_outgoing=0,
    )
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            RedisHub(redis.url) as sender,
            RedisHub(redis.url) as receiver,
            sender.subscribe("lobby", buffer=10) as here,
            receiver.subscribe("lobby", buffer=10) as there,
        ):
            await sender.wait_connected()
            await receiver.wait_connected()
            for n in range(5):
                sender.publish_nowait("lobby", b"line %d" % n)
            assert [await there.receive() for _ in range(5)] == [b"line %d" % n for n in range(5)]
            # The publisher sends a batch once Redis took the one before: with this
            # second one received, the first is counted.
            sender.publish_nowait("lobby", b"line 5")
            assert await there.receive() == b"line 5"
            sent = sender.statistics()
            assert receiver.statistics() == dataclasses.replace(expected, received=6)
            assert here.drain_nowait() == [b"line %d" % n for n in range(6)]
    # Its own messages, echoed by Redis, are not counted as received.
    assert dataclasses.replace(sent, sent=0) == expected
    assert sent.sent in (5, 6)  # the second batch's reply may still be on its way
    assert isinstance(sent, HubStatistics)
    assert triosock.hub.RedisHubStatistics is RedisHubStatistics
    with pytest.raises(dataclasses.FrozenInstanceError):
        sent.sent = 0  # type: ignore[misc]
    for figure in ("sent", "received", "dropped_remote", "dropped_outgoing"):
        assert not hasattr(sender, figure)  # only in the record


async def test_statistics_count_what_an_unreachable_redis_cost() -> None:
    with trio.fail_after(GUARD):
        url = f"redis://127.0.0.1:{free_port()}"  # nothing listens there
        async with RedisHub(url, max_pending=3) as hub:
            with watch_log("triosock.hub", "messages for redis dropped") as warned:
                for n in range(5):
                    hub.publish_nowait("lobby", b"line %d" % n)
            figures = hub.statistics()
    assert (figures.healthy, figures.sent, figures.dropped_outgoing) == (False, 0, 2)
    assert (figures.published, figures.delivered) == (5, 0)  # nobody here subscribed
    assert warned.messages() == ["1 messages for redis dropped: it is unreachable and 3 wait"]


async def test_statistics_count_what_a_slow_block_subscriber_here_cost() -> None:
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            RedisHub(redis.url) as sender,
            RedisHub(redis.url, max_pending=2) as receiver,
            receiver.subscribe("lobby", buffer=1, policy="block") as slow,
        ):
            await sender.wait_connected()
            with watch_log("triosock.hub", "messages from redis dropped") as warned:
                for n in range(4):  # one run: one PUBLISH, handed on in one go
                    sender.publish_nowait("lobby", b"line %d" % n)
                await warned.wait()
            # 0 is queued for the subscriber, 1 and 2 wait (max_pending), 3 pushes out 1.
            figures = receiver.statistics()
            assert (figures.received, figures.dropped_remote) == (4, 1)
            assert (figures.published, figures.delivered) == (1, 1)
            assert [await slow.receive() for _ in range(3)] == [b"line 0", b"line 2", b"line 3"]
            assert receiver.statistics().published == 3
    assert warned.messages() == ["1 messages from redis dropped: subscribers here fell 2 behind"]


async def test_messages_waiting_for_a_full_subscriber_refill_it_in_one_pass() -> None:
    """Behind a full ``block`` subscriber, messages from Redis wait in order; once it has
    room, as many as fit go in at once, so that its reader takes them as one batch (one
    write to a chat user), not one message a pass."""
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            RedisHub(redis.url) as sender,
            RedisHub(redis.url) as receiver,
            receiver.subscribe("lobby", buffer=8, policy="block") as sub,
        ):
            await sender.wait_connected()
            for n in range(40):
                sender.publish_nowait("lobby", b"line %d" % n)
            while True:  # polling Redis's delivery (real time)
                if receiver.statistics().received == 40:
                    break
                await trio.sleep(0.01)
            got = sub.drain_nowait()  # the buffer-full that waited
            batches = [len(got)]
            while len(got) < 40:
                got.append(await sub.receive())  # woken by the first of the next ones
                more = sub.drain_nowait()
                batches.append(1 + len(more))
                got += more
            assert got == [b"line %d" % n for n in range(40)]
            assert batches == [8] * 5  # a full buffer each time, never a message at a time


async def test_a_batch_sent_again_after_a_timeout_redis_ran_anyway_arrives_once() -> None:
    """Redis paused past the commands' timeout: the sender's PUBLISH times out and its
    batch goes again on a new connection, and when Redis resumes it runs both. Each
    message carries its number in its sender's sequence: the receiver skips the second
    copy, and counts it."""
    lines = 20
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            RedisHub(redis.url) as sender,
            RedisHub(redis.url) as receiver,
            receiver.subscribe("lobby", buffer=100, policy="block") as there,
        ):
            await sender.wait_connected()
            await receiver.wait_connected()
            sender.publish_nowait("lobby", b"before")
            assert await there.receive() == b"before"
            redis.pause()
            for n in range(lines):  # one batch, sent once the publisher runs
                sender.publish_nowait("lobby", b"line %d" % n)
            # The fault: Redis stopped past the commands' timeout, not past the pub/sub
            # keepalive (a PING after 15 s without a message): the receiver's subscription
            # stays, the sender's PUBLISH times out and its batch goes again.
            await trio.sleep(COMMAND_TIMEOUT + 1)
            redis.resume()
            got = [await there.receive() for _ in range(lines)]
            sender.publish_nowait("lobby", b"after")
            assert await there.receive() == b"after"  # (after any second copy)
            figures = receiver.statistics()
    assert got == [b"line %d" % n for n in range(lines)]
    assert figures.received == lines + 2
    assert figures.duplicates == lines  # the whole batch, once more
