"""The Redis hub on its own, through a real redis-server: what one process's hub sends and
how another's receives it (the chat over Redis is in ``test_cluster.py``).

Redis keeps time in real seconds, so these tests run on real time, each under an
absolute guard.
"""

from __future__ import annotations

import random
from contextlib import AsyncExitStack

import pytest
import trio

from triosock._hub import ReadyQueue
from triosock._hub._redis import RedisHub

from .conftest import GUARD
from .redistools import redis_server

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
        (b"t:a", b"a0"),
        (b"t:b", b"b1"),
        (b"t:a", b"a2"),
        (b"t:a", b"a33"),
        (b"t:a", b""),
        (b"t:b", b"b5"),
    ]
    assert hub._pack(batch) == [
        (b"t:a", ORIGIN + b"|a0"),
        (b"t:b", ORIGIN + b"|b1"),
        # A run: each message after its length, 4 bytes big-endian (an empty one too).
        (b"t:a", ORIGIN + b"#\0\0\0\x02a2\0\0\0\x03a33\0\0\0\0"),
        (b"t:b", ORIGIN + b"|b5"),
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
