"""The numbers of the chat's flow-control rules, pinned on virtual time with members in
memory: how long the rate limit holds a sender, and the byte at which a reader that
stopped is disconnected.

Each test measures the number itself, not only that the rule fired: a rate limit that
paused a tenth (or twice) of its time, or a backlog bound checked at the wrong
threshold, fails them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from triosock.chat import ChatServer

from .chattools import MemoryMember, MemorySink


@asynccontextmanager
async def members_of(chat: ChatServer, *members: MemoryMember) -> AsyncIterator[None]:
    """``chat`` running, with ``members`` arrived in order (guest1, guest2, ...)."""
    async with chat, trio.open_nursery() as nursery:
        for member in members:
            nursery.start_soon(chat.serve_member, member)
            await trio.testing.wait_all_tasks_blocked()
        yield
        for member in members:
            member.close()


async def test_lines_past_the_burst_go_out_one_a_pause_of_exactly_one_over_the_rate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 25 lines at once against a burst of 5 and 10 lines a second: the first 5 at once,
    # then one every 0.1 s, the last (25 - 5) / 10 = 2 s after the first.
    rate, burst, count = 10.0, 5, 25
    chat = ChatServer(rate=rate, burst=burst)
    witness, talker = MemoryMember("witness"), MemoryMember("talker")
    with trio.fail_after(100):
        async with members_of(chat, witness, talker):
            await witness.sink.wait_for(b"* guest2 joined #lobby")
            start = trio.current_time()
            talker.say(*(b"line %d" % i for i in range(count)))
            await witness.sink.wait_for(b"guest2: line %d" % (count - 1))
    said = [
        (when - start, line)
        for when, line in witness.sink.lines()
        if line.startswith(b"[#lobby] guest2: line ")
    ]
    assert [line for _, line in said] == [b"[#lobby] guest2: line %d" % i for i in range(count)]
    expected = [max(0, i + 1 - burst) / rate for i in range(count)]
    assert [when for when, _ in said] == pytest.approx(expected, abs=1e-6)
    assert said[-1][0] == pytest.approx((count - burst) / rate, abs=1e-6)
    assert chat.statistics().paced == count - burst


async def test_the_slow_reader_is_disconnected_by_the_first_line_over_max_backlog_not_at_it(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="triosock.chat")
    limit = 1000
    # only the byte rule; a dropped reader leaves at once (detaching: test_chat_resume)
    chat = ChatServer(max_backlog=limit, stall_timeout=None, resume_window=0)
    stopped = MemoryMember("stopped", MemorySink(taking=False))  # guest1: takes nothing
    talker = MemoryMember("talker")
    with trio.fail_after(100):
        async with members_of(chat, stopped, talker):
            waiting = stopped.outbox.queued  # its welcome and the two joins
            assert 0 < waiting < limit // 2
            frame = len(b"[#lobby] guest2: \n")
            # A line that brings the bytes waiting to exactly the limit: no rule broken.
            talker.say(b"x" * (limit - waiting - frame))
            await trio.testing.wait_all_tasks_blocked()
            assert stopped.outbox.queued == limit
            assert chat.statistics().disconnected_slow == 0
            assert await chat.users() == ["guest1", "guest2"]
            # One more line, 19 bytes over: disconnected by that line, not a later one.
            talker.say(b"y")
            await trio.testing.wait_all_tasks_blocked()
            assert chat.statistics().disconnected_slow == 1
            await talker.sink.wait_for(b"* guest1 left #lobby")
            assert await chat.users() == ["guest2"]
    over = limit + frame + 1
    assert [r.getMessage() for r in caplog.records if "disconnecting" in r.getMessage()] == [
        f"disconnecting guest1 (mem stopped): {over} bytes were waiting for it, over the "
        f"limit of {limit}"
    ]
