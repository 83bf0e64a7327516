"""Tests of the broadcast hub (triosock._hub)."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing

import triosock.hub
from triosock._errors import TriosockError
from triosock._hub import (
    Hub,
    HubStatistics,
    InProcessHub,
    Policy,
    ReadyQueue,
    SlowSubscriberError,
    SubscriberStatistics,
    Subscription,
)

#: Seconds (virtual ones under `autojump_clock`) after which a waiting test fails instead of
#: hanging, should a bug lose a wake-up.
LIMIT = 30


@asynccontextmanager
async def deadline() -> AsyncIterator[None]:
    with trio.fail_after(LIMIT):
        yield


def queued(subscription: Subscription[int]) -> list[int]:
    """Everything queued for `subscription` (an empty list if nothing is)."""
    return subscription.drain_nowait()


# -- arguments, types, the interface


@pytest.mark.parametrize("buffer", [0, -1])
def test_buffer_must_be_positive(buffer: int) -> None:
    hub = InProcessHub[int]()
    with pytest.raises(ValueError, match="buffer must be at least 1"):
        hub.subscribe("t", buffer=buffer)  # raises when called, before `async with`


def test_unknown_policy() -> None:
    hub = InProcessHub[int]()
    with pytest.raises(ValueError, match="unknown policy 'drop'"):
        hub.subscribe("t", policy="drop")  # type: ignore[arg-type]


def test_buffer_must_be_an_integer() -> None:
    hub = InProcessHub[int]()
    with pytest.raises(TypeError):
        hub.subscribe("t", buffer=2.5)  # type: ignore[arg-type]


def test_slow_subscriber_error() -> None:
    exc = SlowSubscriberError("room", 16)
    assert isinstance(exc, trio.BrokenResourceError)
    assert isinstance(exc, TriosockError)
    assert "'room'" in str(exc)
    assert "16" in str(exc)
    assert (exc.topic, exc.buffer) == ("room", 16)
    copy = pickle.loads(pickle.dumps(exc))
    assert (type(copy), copy.topic, copy.buffer, str(copy)) == (
        SlowSubscriberError,
        "room",
        16,
        str(exc),
    )


async def test_types_and_defaults() -> None:
    hub = InProcessHub[int]()
    assert isinstance(hub, Hub)
    async with hub.subscribe("t") as sub:
        assert isinstance(sub, Subscription)
        assert isinstance(sub, trio.abc.ReceiveChannel)
        assert (sub.topic, sub.policy, sub.buffer) == ("t", "drop_oldest", 256)
        assert sub.statistics() == SubscriberStatistics(
            topic="t",
            policy="drop_oldest",
            buffer=256,
            queued=0,
            delivered=0,
            dropped=0,
            missed_unreported=0,
            disconnected=False,
        )


# -- basic delivery


async def test_publish_without_subscribers() -> None:
    hub = InProcessHub[int]()
    assert hub.publish_nowait("nobody", 1) == 0
    assert await hub.publish("nobody", 2) == 0
    assert hub.statistics() == HubStatistics(
        topics=0, subscribers=0, published=2, delivered=0, dropped=0
    )
    assert hub.topics() == frozenset()


async def test_publish_delivers_to_every_subscriber_of_the_topic_only() -> None:
    hub = InProcessHub[str]()
    async with hub.subscribe("a") as a1, hub.subscribe("a") as a2, hub.subscribe("b") as b:
        assert hub.publish_nowait("a", "x") == 2
        assert hub.publish_nowait("b", "y") == 1
        assert a1.drain_nowait() == ["x"]
        assert a2.drain_nowait() == ["x"]
        assert b.drain_nowait() == ["y"]
        assert a1.drain_nowait() == []
        with pytest.raises(trio.WouldBlock):
            a1.receive_nowait()


async def test_receive_waits_for_a_message(autojump_clock: trio.testing.MockClock) -> None:
    hub = InProcessHub[int]()
    got: list[tuple[int, float]] = []
    async with hub.subscribe("t") as sub:

        async def reader() -> None:
            got.append((await sub.receive(), trio.current_time()))

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(2)
            assert got == []
            t0 = trio.current_time()
            hub.publish_nowait("t", 7)
        assert got == [(7, t0)]


async def test_concurrent_receivers_each_get_different_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    got: list[int] = []
    async with hub.subscribe("t") as sub:

        async def reader() -> None:
            got.append(await sub.receive())

        async with deadline(), trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(reader)
            await trio.sleep(1)  # all three are waiting
            assert got == []
            for i in range(3):
                hub.publish_nowait("t", i)
        assert sorted(got) == [0, 1, 2]


async def test_receive_is_a_checkpoint_and_publish_is_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    async with deadline(), hub.subscribe("t") as sub:
        with trio.testing.assert_no_checkpoints():
            hub.publish_nowait("t", 1)
            hub.publish_nowait("t", 2)
        with trio.testing.assert_checkpoints():
            assert await sub.receive() == 1
        # a cancelled receive raises Cancelled even though a message is ready, and keeps it
        with trio.CancelScope() as scope:
            scope.cancel()
            await sub.receive()
        assert scope.cancelled_caught
        assert sub.receive_nowait() == 2
        hub.close()
        with trio.testing.assert_checkpoints(), pytest.raises(trio.EndOfChannel):
            await sub.receive()


# -- drop_oldest / drop_newest


async def test_drop_oldest_keeps_the_newest_and_reports_missed() -> None:
    hub = InProcessHub[int]()
    async with (
        hub.subscribe("t", buffer=3, policy="drop_oldest") as small,
        hub.subscribe("t", buffer=100) as big,
    ):
        counts = [hub.publish_nowait("t", i) for i in range(1, 6)]
        assert counts == [2, 2, 2, 2, 2]  # drop_oldest still queues the new message
        assert small.statistics() == SubscriberStatistics(
            topic="t",
            policy="drop_oldest",
            buffer=3,
            queued=3,
            delivered=5,
            dropped=2,
            missed_unreported=2,
            disconnected=False,
        )
        assert queued(small) == [3, 4, 5]
        assert queued(big) == [1, 2, 3, 4, 5]
        assert big.take_missed() == 0
        assert small.take_missed() == 2
        assert small.take_missed() == 0
        assert small.statistics().missed_unreported == 0
        assert small.statistics().dropped == 2  # the running total is not reset
        assert hub.statistics() == HubStatistics(
            topics=1, subscribers=2, published=5, delivered=10, dropped=2
        )
        # after reading it has room again: nothing more is dropped
        hub.publish_nowait("t", 6)
        assert queued(small) == [6]
        assert small.take_missed() == 0


async def test_drop_newest_keeps_the_oldest_and_reports_missed() -> None:
    hub = InProcessHub[int]()
    async with (
        hub.subscribe("t", buffer=3, policy="drop_newest") as small,
        hub.subscribe("t", buffer=100) as big,
    ):
        counts = [hub.publish_nowait("t", i) for i in range(1, 6)]
        assert counts == [2, 2, 2, 1, 1]
        assert small.statistics() == SubscriberStatistics(
            topic="t",
            policy="drop_newest",
            buffer=3,
            queued=3,
            delivered=3,
            dropped=2,
            missed_unreported=2,
            disconnected=False,
        )
        assert queued(small) == [1, 2, 3]
        assert queued(big) == [1, 2, 3, 4, 5]
        assert small.take_missed() == 2
        assert small.take_missed() == 0
        assert hub.statistics() == HubStatistics(
            topics=1, subscribers=2, published=5, delivered=8, dropped=2
        )
        hub.publish_nowait("t", 6)
        assert queued(small) == [6]


# -- block


async def test_block_publish_is_all_or_nothing() -> None:
    hub = InProcessHub[int]()
    # the lossy subscriber comes first, so a publish that delivered in order and only then
    # found the full blocker would already have touched it
    async with (
        hub.subscribe("t", buffer=10) as lossy,
        hub.subscribe("t", buffer=2, policy="block") as slow,
    ):
        assert hub.publish_nowait("t", 1) == 2
        assert hub.publish_nowait("t", 2) == 2
        with trio.testing.assert_no_checkpoints(), pytest.raises(trio.WouldBlock):
            hub.publish_nowait("t", 3)
        assert lossy.statistics().delivered == 2
        assert slow.statistics() == SubscriberStatistics(
            topic="t",
            policy="block",
            buffer=2,
            queued=2,
            delivered=2,
            dropped=0,
            missed_unreported=0,
            disconnected=False,
        )
        assert hub.statistics() == HubStatistics(
            topics=1, subscribers=2, published=2, delivered=4, dropped=0
        )
        assert queued(lossy) == [1, 2]
        assert queued(slow) == [1, 2]


async def test_publish_wait_waits_exactly_until_the_slow_subscriber_reads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    async with (
        hub.subscribe("t", buffer=10) as fast,
        hub.subscribe("t", buffer=2, policy="block") as slow,
    ):
        hub.publish_nowait("t", 1)
        hub.publish_nowait("t", 2)
        t0 = trio.current_time()
        done: list[tuple[int, float]] = []

        async def publisher() -> None:
            count = await hub.publish("t", 3)
            done.append((count, trio.current_time()))

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(publisher)
            await trio.sleep(4.5)
            # still waiting, and nobody has the message yet
            assert done == []
            assert fast.statistics().queued == 2
            assert slow.statistics().queued == 2
            await trio.sleep(0.5)
            assert slow.receive_nowait() == 1  # at t0 + 5: room for one
        [(count, finished)] = done
        assert count == 2
        assert finished == pytest.approx(t0 + 5, abs=1e-9)
        assert queued(fast) == [1, 2, 3]
        assert queued(slow) == [2, 3]
        assert hub.statistics().published == 3


async def test_publish_wait_waits_for_every_full_blocker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    async with (
        hub.subscribe("t", buffer=1, policy="block") as first,
        hub.subscribe("t", buffer=1, policy="block") as second,
    ):
        hub.publish_nowait("t", 0)
        t0 = trio.current_time()
        finished: list[float] = []

        async def publisher() -> None:
            await hub.publish("t", 1)
            finished.append(trio.current_time())

        async def read_later(sub: Subscription[int], delay: float) -> None:
            await trio.sleep(delay)
            assert sub.receive_nowait() == 0

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(publisher)
            nursery.start_soon(read_later, second, 1)
            nursery.start_soon(read_later, first, 3)
        assert finished == [pytest.approx(t0 + 3, abs=1e-9)]
        assert queued(first) == [1]
        assert queued(second) == [1]


async def test_drain_makes_room_for_publish_wait(autojump_clock: trio.testing.MockClock) -> None:
    hub = InProcessHub[int]()
    async with hub.subscribe("t", buffer=2, policy="block") as slow:
        hub.publish_nowait("t", 1)
        hub.publish_nowait("t", 2)
        t0 = trio.current_time()
        finished: list[float] = []

        async def publisher() -> None:
            await hub.publish("t", 3)
            finished.append(trio.current_time())

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(publisher)
            await trio.sleep(2)
            assert slow.drain_nowait() == [1, 2]
        assert finished == [pytest.approx(t0 + 2, abs=1e-9)]
        assert queued(slow) == [3]


async def test_publish_wait_is_cancellable_and_delivers_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    async with (
        hub.subscribe("t", buffer=10) as fast,
        hub.subscribe("t", buffer=1, policy="block") as slow,
    ):
        hub.publish_nowait("t", 1)
        t0 = trio.current_time()
        with trio.move_on_after(3) as scope:
            await hub.publish("t", 2)
        assert scope.cancelled_caught
        assert trio.current_time() == pytest.approx(t0 + 3, abs=1e-9)
        assert queued(fast) == [1]
        assert queued(slow) == [1]
        assert hub.statistics().published == 1
        # no stale waiter is left behind: room again means no waiting, but a checkpoint
        with trio.testing.assert_checkpoints():
            assert await hub.publish("t", 3) == 2
        assert trio.current_time() == pytest.approx(t0 + 3, abs=1e-9)
        assert queued(slow) == [3]


async def test_publish_wait_checks_cancellation_before_delivering() -> None:
    hub = InProcessHub[int]()
    async with hub.subscribe("t", policy="block") as sub:
        with trio.CancelScope() as scope:
            scope.cancel()
            await hub.publish("t", 1)
        assert scope.cancelled_caught
        assert queued(sub) == []
        assert hub.statistics().published == 0


async def test_publish_wait_goes_ahead_when_the_blocker_leaves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    async with hub.subscribe("t", buffer=10) as fast:
        done: list[tuple[int, float]] = []
        async with AsyncExitStack() as stack:
            slow = await stack.enter_async_context(hub.subscribe("t", buffer=1, policy="block"))
            hub.publish_nowait("t", 1)
            t0 = trio.current_time()

            async def publisher() -> None:
                count = await hub.publish("t", 2)
                done.append((count, trio.current_time()))

            async with deadline(), trio.open_nursery() as nursery:
                nursery.start_soon(publisher)
                await trio.sleep(2)
                assert done == []
                await stack.aclose()  # unsubscribes `slow`
        [(count, finished)] = done
        assert count == 1
        assert finished == pytest.approx(t0 + 2, abs=1e-9)
        assert queued(fast) == [1, 2]
        with pytest.raises(trio.ClosedResourceError):
            slow.receive_nowait()


async def test_publish_wait_raises_when_the_hub_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    async with hub.subscribe("t", buffer=1, policy="block") as slow:
        hub.publish_nowait("t", 1)

        async def closer() -> None:
            await trio.sleep(1)
            await hub.aclose()

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(closer)
            with pytest.raises(trio.ClosedResourceError):
                await hub.publish("t", 2)
        assert queued(slow) == [1]


# -- disconnect


async def test_disconnect_drops_only_the_slow_subscriber(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    async with (
        deadline(),
        hub.subscribe("t", buffer=2, policy="disconnect") as slow,
        hub.subscribe("t", buffer=100, policy="drop_oldest") as fast,
        hub.subscribe("t", buffer=100, policy="block") as lossless,
    ):
        t0 = trio.current_time()
        with trio.testing.assert_no_checkpoints():
            counts = [hub.publish_nowait("t", i) for i in range(1, 6)]
        assert trio.current_time() == t0  # publish never waited
        assert counts == [3, 3, 2, 2, 2]
        assert hub.subscriber_count("t") == 2
        assert slow.statistics() == SubscriberStatistics(
            topic="t",
            policy="disconnect",
            buffer=2,
            queued=2,
            delivered=2,
            dropped=1,
            missed_unreported=0,
            disconnected=True,
        )
        assert hub.statistics() == HubStatistics(
            topics=1, subscribers=2, published=5, delivered=12, dropped=1
        )
        # the slow one still gets what was queued before it was cut off, then the reason
        assert await slow.receive() == 1
        assert await slow.receive() == 2
        with pytest.raises(SlowSubscriberError, match=r"'t'.* 2 ") as info:
            await slow.receive()
        assert (info.value.topic, info.value.buffer) == ("t", 2)
        with pytest.raises(SlowSubscriberError):  # and it stays that way
            slow.receive_nowait()
        with pytest.raises(SlowSubscriberError):
            slow.drain_nowait()
        assert queued(fast) == [1, 2, 3, 4, 5]
        assert queued(lossless) == [1, 2, 3, 4, 5]
    assert hub.topics() == frozenset()
    assert hub.statistics().subscribers == 0


async def test_async_iteration_of_a_disconnected_subscriber_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    got: list[int] = []

    async def collect(subscription: Subscription[int]) -> None:
        async for message in subscription:
            got.append(message)

    async with deadline(), hub.subscribe("t", buffer=1, policy="disconnect") as slow:
        hub.publish_nowait("t", 1)
        hub.publish_nowait("t", 2)
        with pytest.raises(SlowSubscriberError):
            await collect(slow)
    assert got == [1]


# -- unsubscribing, topics, closing


async def test_unsubscribe_on_exit(autojump_clock: trio.testing.MockClock) -> None:
    hub = InProcessHub[int]()
    async with hub.subscribe("t") as sub:
        assert hub.topics() == frozenset({"t"})
        assert hub.subscriber_count("t") == 1
        hub.publish_nowait("t", 1)
    assert hub.topics() == frozenset()
    assert hub.subscriber_count("t") == 0
    assert hub.publish_nowait("t", 2) == 0
    with pytest.raises(trio.ClosedResourceError):
        sub.receive_nowait()  # closed: even the queued message is gone
    with trio.fail_after(LIMIT), pytest.raises(trio.ClosedResourceError):
        await sub.receive()
    with pytest.raises(trio.ClosedResourceError):
        sub.drain_nowait()


async def test_unsubscribe_when_the_body_raises() -> None:
    hub = InProcessHub[int]()

    class Boom(Exception):
        pass

    subscriptions: list[Subscription[int]] = []

    async def body() -> None:
        async with hub.subscribe("t") as one, hub.subscribe("t") as other:
            subscriptions.extend([one, other])
            assert hub.subscriber_count("t") == 2
            hub.publish_nowait("t", 1)
            raise Boom

    with pytest.raises(Boom):
        await body()
    assert len(subscriptions) == 2
    assert hub.topics() == frozenset()
    assert hub.statistics().subscribers == 0
    for subscription in subscriptions:
        with pytest.raises(trio.ClosedResourceError):
            subscription.receive_nowait()


async def test_unsubscribe_when_cancelled() -> None:
    hub = InProcessHub[int]()
    with trio.CancelScope() as scope:
        async with hub.subscribe("t") as sub:
            scope.cancel()
            await sub.receive()
    assert scope.cancelled_caught
    assert hub.topics() == frozenset()


async def test_a_subscribe_context_manager_is_single_use() -> None:
    hub = InProcessHub[int]()
    cm = hub.subscribe("t")
    async with cm:
        with pytest.raises(RuntimeError, match="only once"):
            await cm.__aenter__()
    assert hub.subscriber_count("t") == 0


async def test_empty_topics_are_dropped() -> None:
    hub = InProcessHub[int]()
    async with AsyncExitStack() as a_stack:
        a1 = await a_stack.enter_async_context(hub.subscribe("a"))
        async with hub.subscribe("a"), hub.subscribe("b"):
            assert hub.topics() == frozenset({"a", "b"})
            assert hub.statistics().topics == 2
            assert hub.statistics().subscribers == 3
        assert hub.topics() == frozenset({"a"})
        assert hub.subscriber_count("a") == 1
        assert hub.statistics().subscribers == 1
        await a1.aclose()  # closing the subscription itself unsubscribes too
        assert hub.topics() == frozenset()
        assert hub.statistics() == HubStatistics(
            topics=0, subscribers=0, published=0, delivered=0, dropped=0
        )
    # a topic can come back
    async with hub.subscribe("a"):
        assert hub.topics() == frozenset({"a"})


async def test_closing_a_subscription_wakes_its_receiver(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    async with hub.subscribe("t") as sub:

        async def closer() -> None:
            await trio.sleep(1)
            await sub.aclose()

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(closer)
            with pytest.raises(trio.ClosedResourceError):
                await sub.receive()
            assert trio.current_time() == pytest.approx(1, abs=1e-9)
        assert hub.subscriber_count("t") == 0


async def test_hub_close_ends_subscriptions_after_draining(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    async with deadline(), hub.subscribe("t") as full, hub.subscribe("t") as waiting:
        hub.publish_nowait("t", 1)
        hub.publish_nowait("t", 2)
        assert waiting.drain_nowait() == [1, 2]
        results: list[object] = []

        async def wait_for_end() -> None:
            try:
                await waiting.receive()
            except trio.EndOfChannel:
                results.append(("end", trio.current_time()))

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_end)
            await trio.sleep(1)
            assert results == []
            hub.close()
        assert results == [("end", pytest.approx(1, abs=1e-9))]
        assert [message async for message in full] == [1, 2]
        with pytest.raises(trio.EndOfChannel):
            full.receive_nowait()
        with pytest.raises(trio.EndOfChannel):
            full.drain_nowait()
        assert hub.topics() == frozenset()
        assert hub.statistics().subscribers == 0
        with pytest.raises(trio.ClosedResourceError):
            hub.publish_nowait("t", 3)
        with pytest.raises(trio.ClosedResourceError):
            await hub.publish("t", 3)
        with pytest.raises(trio.ClosedResourceError):
            async with hub.subscribe("t"):
                pass  # pragma: no cover
        hub.close()  # idempotent
    # leaving the subscriptions after the hub closed is fine, and closes them
    with pytest.raises(trio.ClosedResourceError):
        full.receive_nowait()


async def test_hub_is_an_async_context_manager() -> None:
    async with InProcessHub[int]() as hub, hub.subscribe("t") as sub:
        hub.publish_nowait("t", 1)
    assert hub.statistics().published == 1
    with pytest.raises(trio.ClosedResourceError):
        hub.publish_nowait("t", 2)
    with pytest.raises(trio.ClosedResourceError):
        sub.receive_nowait()


async def test_ten_thousand_subscribers() -> None:
    hub = InProcessHub[int]()
    n = 10_000
    async with AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(hub.subscribe("big")) for _ in range(n)]
        async with hub.subscribe("other") as other:
            assert hub.publish_nowait("big", 42) == n
            assert hub.publish_nowait("big", 43) == n
            assert all(sub.drain_nowait() == [42, 43] for sub in subs)
            assert all(sub.statistics().delivered == 2 for sub in subs)
            assert other.drain_nowait() == []
            assert hub.statistics() == HubStatistics(
                topics=2, subscribers=n + 1, published=2, delivered=2 * n, dropped=0
            )
    assert hub.topics() == frozenset()


async def test_wait_ended_wakes_on_disconnect_only_when_it_happens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub: InProcessHub[int] = InProcessHub()
    woke: list[float] = []
    async with hub.subscribe("t", buffer=1, policy="disconnect") as slow:

        async def watch() -> None:
            await slow.wait_ended()
            woke.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            hub.publish_nowait("t", 1)
            await trio.sleep(5)
            assert woke == []
            hub.publish_nowait("t", 2)  # over the buffer: disconnected
        assert woke == [5]
        assert slow.statistics().disconnected


# -- ReadyQueue: one wakeup for many subscriptions


async def test_ready_queue_reports_a_subscription_once_until_it_is_emptied() -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    async with hub.subscribe("t") as sub:
        ready.watch(sub)
        assert ready.ready_nowait() == []
        for i in range(3):
            hub.publish_nowait("t", i)
        assert ready.ready_nowait() == [sub]  # three publishes, one report
        assert ready.ready_nowait() == []
        hub.publish_nowait("t", 3)
        assert sub.receive_nowait() == 0  # taken in part only: stays quiet
        hub.publish_nowait("t", 4)
        assert ready.ready_nowait() == []
        assert sub.drain_nowait() == [1, 2, 3, 4]
        assert ready.ready_nowait() == []  # emptying is not news
        hub.publish_nowait("t", 5)
        assert ready.ready_nowait() == [sub]
        assert sub.receive_nowait() == 5  # emptied by receive_nowait counts too
        hub.publish_nowait("t", 6)
        assert ready.ready_nowait() == [sub]


async def test_watch_reports_a_subscription_that_already_holds_messages() -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    async with hub.subscribe("empty") as empty, hub.subscribe("full") as full:
        hub.publish_nowait("full", 1)
        ready.watch(empty)
        ready.watch(full)
        assert ready.ready_nowait() == [full]


@pytest.mark.parametrize("take", ["drain_nowait", "receive_nowait"])
@pytest.mark.parametrize(
    ("policy", "error"),
    [("drop_oldest", trio.EndOfChannel), ("disconnect", SlowSubscriberError)],
)
async def test_an_end_is_reported_and_reported_again_once_the_queue_is_taken(
    take: str, policy: Policy, error: type[Exception]
) -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    async with hub.subscribe("t", buffer=2, policy=policy) as sub:
        ready.watch(sub)
        hub.publish_nowait("t", 1)
        hub.publish_nowait("t", 2)
        assert ready.ready_nowait() == [sub]
        if policy == "disconnect":
            hub.publish_nowait("t", 3)  # over the buffer: disconnected
        else:
            hub.close()
        assert ready.ready_nowait() == [sub]  # ended, though not drained
        if take == "drain_nowait":
            assert sub.drain_nowait() == [1, 2]
        else:
            assert sub.receive_nowait() == 1
            assert ready.ready_nowait() == []  # a message is still ahead of the end
            assert sub.receive_nowait() == 2
        assert ready.ready_nowait() == [sub]  # now the end is what there is to take
        with pytest.raises(error):
            sub.drain_nowait()
        assert ready.ready_nowait() == []


async def test_an_end_with_nothing_queued_is_reported_and_so_is_watching_an_ended_one() -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    async with hub.subscribe("t") as watched, hub.subscribe("t") as later:
        ready.watch(watched)
        await hub.aclose()
        assert ready.ready_nowait() == [watched]
        ready.watch(later)
        assert ready.ready_nowait() == [later]
        with pytest.raises(trio.EndOfChannel):
            later.drain_nowait()


async def test_wait_blocks_until_something_is_ready_and_returns_all_of_it_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    got: list[tuple[list[Subscription[int]], float]] = []
    async with hub.subscribe("a") as a, hub.subscribe("b") as b, hub.subscribe("c") as c:
        for sub in (a, b, c):
            ready.watch(sub)

        async def waiter() -> None:
            got.append((await ready.wait(), trio.current_time()))

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(2)
            assert got == []
            t0 = trio.current_time()
            hub.publish_nowait("c", 1)
            hub.publish_nowait("a", 2)
        [(woken, at)] = got
        assert woken == [c, a]
        assert at == pytest.approx(t0, abs=1e-9)
        assert b.drain_nowait() == []


async def test_wait_is_a_checkpoint_even_when_something_is_ready() -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    async with hub.subscribe("t") as sub:
        ready.watch(sub)
        hub.publish_nowait("t", 1)
        with trio.CancelScope() as scope:
            scope.cancel()
            await ready.wait()
        assert scope.cancelled_caught
        with trio.testing.assert_checkpoints():
            assert await ready.wait() == [sub]  # the cancelled call kept the report


async def test_wait_does_not_return_empty_when_the_only_report_is_withdrawn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    got: list[list[Subscription[int]]] = []
    async with hub.subscribe("t") as stays:
        ready.watch(stays)

        async def waiter() -> None:
            got.append(await ready.wait())

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            async with hub.subscribe("u") as leaves:
                ready.watch(leaves)
                await trio.testing.wait_all_tasks_blocked()
                hub.publish_nowait("u", 1)  # wakes the waiter; closing withdraws the report at once
            await trio.sleep(1)
            assert got == []
            hub.publish_nowait("t", 2)
        assert got == [[stays]]


class _ScheduleCounter(trio.abc.Instrument):
    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.scheduled = 0

    def task_scheduled(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.scheduled += 1


async def test_a_publish_to_a_thousand_watched_subscribers_wakes_the_waiter_once() -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    got: list[list[Subscription[int]]] = []

    async def waiter(task_status: trio.TaskStatus[trio.lowlevel.Task]) -> None:
        task_status.started(trio.lowlevel.current_task())
        got.append(await ready.wait())

    async with AsyncExitStack() as stack:
        subs = [await stack.enter_async_context(hub.subscribe("big")) for _ in range(1000)]
        for sub in subs:
            ready.watch(sub)
        async with deadline(), trio.open_nursery() as nursery:
            task: trio.lowlevel.Task = await nursery.start(waiter)
            await trio.testing.wait_all_tasks_blocked()
            counter = _ScheduleCounter(task)
            trio.lowlevel.add_instrument(counter)
            try:
                assert hub.publish_nowait("big", 1) == 1000
                await trio.testing.wait_all_tasks_blocked()
            finally:
                trio.lowlevel.remove_instrument(counter)
        assert counter.scheduled == 1
        assert got == [subs]


async def test_unwatch_stops_reports_and_withdraws_a_pending_one() -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    async with hub.subscribe("t") as sub, hub.subscribe("t") as other:
        ready.watch(sub)
        ready.watch(other)
        hub.publish_nowait("t", 1)
        ready.unwatch(sub)
        assert ready.ready_nowait() == [other]
        ready.unwatch(sub)  # idempotent
        assert sub.drain_nowait() == [1]
        assert other.drain_nowait() == [1]
        hub.publish_nowait("t", 2)
        hub.close()
        assert ready.ready_nowait() == [other]  # neither the message nor the end of `sub`


async def test_closing_a_subscription_unwatches_it() -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    async with hub.subscribe("t") as stays:
        async with hub.subscribe("t") as leaves:
            ready.watch(leaves)
            ready.watch(stays)
            hub.publish_nowait("t", 1)
        assert ready.ready_nowait() == [stays]  # the report of `leaves` went with it
        ReadyQueue[int]().watch(leaves)  # and it has no watcher left to conflict with


async def test_a_subscription_has_at_most_one_watcher() -> None:
    hub = InProcessHub[int]()
    first, second = ReadyQueue[int](), ReadyQueue[int]()
    async with hub.subscribe("t") as sub:
        first.watch(sub)
        first.watch(sub)  # the same watcher again is fine
        with pytest.raises(RuntimeError, match="another ReadyQueue"):
            second.watch(sub)
        second.unwatch(sub)  # not its subscription: no effect
        hub.publish_nowait("t", 1)
        assert first.ready_nowait() == [sub]
        assert second.ready_nowait() == []
        first.unwatch(sub)
        second.watch(sub)
        assert second.ready_nowait() == [sub]


class _ForeignSubscription(Subscription[int]):
    """A subscription that is not InProcessHub's, as another hub implementation might have."""

    @property
    def topic(self) -> str:
        return "t"

    @property
    def policy(self) -> Policy:
        return "drop_oldest"

    @property
    def buffer(self) -> int:
        return 1

    def receive_nowait(self) -> int:
        raise trio.WouldBlock

    def drain_nowait(self, limit: int | None = None) -> list[int]:
        return []

    def take_missed(self) -> int:
        return 0

    def unsubscribe(self) -> None:
        pass

    def statistics(self) -> SubscriberStatistics:
        raise NotImplementedError

    async def wait_ended(self) -> None:
        await trio.sleep_forever()

    async def receive(self) -> int:
        await trio.sleep_forever()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_only_in_process_subscriptions_can_be_watched() -> None:
    assert triosock.hub.ReadyQueue is ReadyQueue
    ready = ReadyQueue[int]()
    foreign = _ForeignSubscription()
    assert not ready.supports(foreign)
    with pytest.raises(TypeError, match="not an in-process subscription"):
        ready.watch(foreign)
    ready.unwatch(foreign)  # harmless
    async with InProcessHub[int]() as hub, hub.subscribe("t") as sub:
        assert ready.supports(sub)


async def test_a_parked_receiver_of_a_watched_subscription_still_gets_the_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    got: list[int] = []
    async with hub.subscribe("t") as sub:
        ready.watch(sub)

        async def reader() -> None:
            got.append(await sub.receive())

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            hub.publish_nowait("t", 7)
        assert got == [7]
        assert ready.ready_nowait() == [sub]  # reported too, though the receiver won it
        assert sub.drain_nowait() == []


async def test_two_parked_receivers_each_get_one_of_two_back_to_back_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    got: list[int] = []
    async with hub.subscribe("t") as sub:

        async def reader() -> None:
            got.append(await sub.receive())

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            hub.publish_nowait("t", 1)
            hub.publish_nowait("t", 2)  # before either woken receiver has run
        assert sorted(got) == [1, 2]


async def test_a_cancelled_receiver_leaves_no_trace_for_the_next_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    got: list[int] = []
    async with hub.subscribe("t") as sub:
        with trio.move_on_after(1):
            await sub.receive()

        async def reader() -> None:
            got.append(await sub.receive())

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            hub.publish_nowait("t", 1)
        assert got == [1]


async def test_every_publish_wait_on_a_full_blocker_resumes_when_it_is_drained(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    async with hub.subscribe("t", buffer=2, policy="block") as slow:
        hub.publish_nowait("t", 1)
        hub.publish_nowait("t", 2)
        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(hub.publish, "t", 3)
            nursery.start_soon(hub.publish, "t", 4)
            await trio.testing.wait_all_tasks_blocked()
            assert slow.statistics().queued == 2
            assert slow.drain_nowait() == [1, 2]
        assert sorted(slow.drain_nowait()) == [3, 4]


async def test_a_ready_queue_writer_gets_every_message_through_small_block_buffers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The fan-out writer's loop: wait, drain what was reported, until every watched
    # subscription has ended; publish relies on those drains to make room.
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    async with (
        hub.subscribe("t", buffer=3, policy="block") as a,
        hub.subscribe("t", buffer=5, policy="block") as b,
    ):
        got: dict[int, list[int]] = {id(a): [], id(b): []}
        for sub in (a, b):
            ready.watch(sub)

        async def writer() -> None:
            open_ones = {id(a), id(b)}
            while open_ones:
                for sub in await ready.wait():
                    try:
                        got[id(sub)] += sub.drain_nowait()
                    except trio.EndOfChannel:
                        open_ones.discard(id(sub))

        async def publisher() -> None:
            for i in range(100):
                await hub.publish("t", i)
            await hub.aclose()

        async with deadline(), trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            nursery.start_soon(publisher)
        assert got == {id(a): list(range(100)), id(b): list(range(100))}


async def test_unsubscribe_keeps_what_is_queued_then_ends_the_subscription() -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    async with hub.subscribe("t") as leaving, hub.subscribe("t") as staying:
        ready.watch(leaving)
        hub.publish_nowait("t", 1)
        hub.publish_nowait("t", 2)
        assert ready.ready_nowait() == [leaving]
        leaving.unsubscribe()
        assert hub.subscriber_count("t") == 1
        assert ready.ready_nowait() == [leaving]  # its end is news too
        hub.publish_nowait("t", 3)  # no longer for it
        assert await leaving.receive() == 1
        assert leaving.drain_nowait() == [2]
        assert ready.ready_nowait() == [leaving]  # now the end is next
        with pytest.raises(trio.EndOfChannel):
            await leaving.receive()
        assert not leaving.statistics().disconnected
        leaving.unsubscribe()  # idempotent
        assert staying.drain_nowait() == [1, 2, 3]
        await leaving.wait_ended()


async def test_unsubscribe_wakes_a_parked_receiver_with_the_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = InProcessHub[int]()
    with trio.fail_after(10):
        async with hub.subscribe("t") as sub, trio.open_nursery() as nursery:

            async def receiver() -> None:
                with pytest.raises(trio.EndOfChannel):
                    await sub.receive()

            nursery.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()
            sub.unsubscribe()


async def test_unsubscribe_after_close_or_end_does_nothing() -> None:
    hub = InProcessHub[int]()
    async with hub.subscribe("t") as closed:
        pass
    closed.unsubscribe()
    with pytest.raises(trio.ClosedResourceError):
        closed.receive_nowait()
    async with hub.subscribe("t", buffer=1, policy="disconnect") as dropped:
        hub.publish_nowait("t", 1)
        hub.publish_nowait("t", 2)  # full: disconnected
        dropped.unsubscribe()
        assert dropped.receive_nowait() == 1
        with pytest.raises(SlowSubscriberError):
            dropped.receive_nowait()


async def test_a_limited_drain_takes_the_oldest_and_leaves_the_rest_queued() -> None:
    hub = InProcessHub[int]()
    ready = ReadyQueue[int]()
    async with hub.subscribe("t", buffer=10, policy="block") as sub:
        ready.watch(sub)
        for n in range(5):
            hub.publish_nowait("t", n)
        assert ready.ready_nowait() == [sub]
        assert sub.drain_nowait(2) == [0, 1]
        hub.publish_nowait("t", 5)
        # Not empty in between: reported once only (the caller keeps what it left).
        assert ready.ready_nowait() == []
        assert sub.drain_nowait(10) == [2, 3, 4, 5]
        sub.unsubscribe()
        assert ready.ready_nowait() == [sub]  # its end is the next thing to receive
        with pytest.raises(trio.EndOfChannel):
            sub.drain_nowait(1)
        with pytest.raises(ValueError, match="at least 1"):
            sub.drain_nowait(0)
    hub.close()
