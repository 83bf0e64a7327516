"""Idle timers, heartbeats and the expiry rule, on virtual time."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from triosock import IdleTimer, expiry_after, send_heartbeats


def test_expiry_rule() -> None:
    assert expiry_after(5) == 10
    assert expiry_after(5, 3) == 15
    with pytest.raises(ValueError, match="positive"):
        expiry_after(0)
    with pytest.raises(ValueError, match="positive"):
        expiry_after(math.inf)
    with pytest.raises(ValueError, match="at least 1"):
        expiry_after(5, 0.5)


async def test_idle_timer_fires_exactly_timeout_after_the_last_touch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    timer = IdleTimer(10)
    with timer.scope:
        for _ in range(4):
            await trio.sleep(7)
            timer.touch()
        await trio.sleep_forever()
    assert timer.expired
    assert trio.current_time() - start == pytest.approx(4 * 7 + 10)


async def test_idle_timer_disabled_never_fires(autojump_clock: trio.testing.MockClock) -> None:
    timer = IdleTimer(None)
    with trio.move_on_after(1e6) as outer:
        with timer.scope:
            await trio.sleep_forever()
    assert outer.cancelled_caught
    assert not timer.expired
    with pytest.raises(ValueError, match="positive"):
        IdleTimer(0)


async def test_an_outer_cancel_is_not_an_expiry(autojump_clock: trio.testing.MockClock) -> None:
    timer = IdleTimer(10)
    with trio.move_on_after(3):
        with timer.scope:
            await trio.sleep_forever()
    assert not timer.expired


async def test_heartbeats_keep_their_rhythm_even_when_sending_is_slow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    beats: list[float] = []

    async def beat() -> None:
        beats.append(trio.current_time() - start)
        await trio.sleep(0.5)  # a slow send must not make the beat drift

    with trio.move_on_after(10.1):
        await send_heartbeats(beat, 2)
    assert beats == pytest.approx([2, 4, 6, 8, 10])


async def test_expiry_tolerates_a_late_heartbeat_but_not_silence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Heartbeats every 5 s, expiry after 2 x 5 s: a beat up to almost a whole interval
    # late is tolerated; silence for two intervals is not.
    interval = 5.0
    timer = IdleTimer(expiry_after(interval))
    arrivals = [5, 10, 19.9, 25, 34.5]  # the third and fifth beats are 4.9 and 4.5 s late
    start = trio.current_time()

    async def beats() -> None:
        for at in arrivals:
            await trio.sleep_until(start + at)
            timer.touch()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(beats)
        with timer.scope:
            await trio.sleep_forever()
    assert timer.expired
    assert trio.current_time() - start == pytest.approx(34.5 + 10)
