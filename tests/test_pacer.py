"""The pacer: a burst of callers goes on a few per scheduler batch, in order."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import trio

from triosock._pacer import Pacer

from .conftest import Batches


async def test_a_burst_goes_on_a_few_per_batch_first_come_first_served() -> None:
    pacer, batches = Pacer(4), Batches()
    went: list[tuple[int, int]] = []  # (caller, batch)
    arrived: list[int] = []  # the order they asked in (within a batch, trio's choice)

    async def caller(i: int) -> None:
        arrived.append(i)
        await pacer.turn()
        went.append((i, batches.now))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(batches.run)
            await trio.lowlevel.checkpoint()  # the counter is running
            async with trio.open_nursery() as callers:
                for i in range(40):
                    callers.start_soon(caller, i)
            nursery.cancel_scope.cancel()
    assert sorted(i for i, _ in went) == list(range(40))  # nobody left waiting
    per_batch = Counter(batch for _, batch in went)
    assert max(per_batch.values()) <= 2 * 4, per_batch
    assert len(per_batch) >= 40 // 8
    # First come, first served: a later caller never goes more than a batch before an
    # earlier one (the counter's step falls anywhere in the batch its callers run in).
    batch_of = dict(went)
    released = [batch_of[i] for i in arrived]
    assert all(b >= a - 1 for a, b in itertools.pairwise(released)), released
    assert released[-1] >= 40 // 4 - 2
    assert pacer.waiting == 0


async def test_with_room_in_the_batch_a_turn_takes_no_step() -> None:
    pacer, batches = Pacer(4), Batches()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(batches.run)
            await trio.lowlevel.checkpoint()
            before = batches.now
            for _ in range(4):
                await pacer.turn()
            assert batches.now == before
            await pacer.turn()  # the fifth waits for a later batch
            assert batches.now > before
            nursery.cancel_scope.cancel()


async def test_a_waiter_cancelled_leaves_the_queue_and_the_others_go_on() -> None:
    pacer = Pacer(1)
    went: list[int] = []
    scope = trio.CancelScope()

    async def caller(i: int) -> None:
        with scope if i < 0 else trio.CancelScope():
            await pacer.turn()
            went.append(i)

    with trio.fail_after(5):
        await pacer.turn()  # the batch's one
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(caller, i)
            nursery.start_soon(caller, -1)  # last in the queue
            for _ in range(2):
                await trio.lowlevel.checkpoint()  # all six are waiting now
            assert pacer.waiting >= 5
            scope.cancel()
    assert sorted(went) == [0, 1, 2, 3, 4]
    assert scope.cancelled_caught
    assert pacer.waiting == 0


def test_per_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Pacer(0)
