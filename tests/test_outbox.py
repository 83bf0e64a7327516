"""Outbox: one peer's queue of whole frames, over real sockets and in-memory streams.

The stream tests use a ``socket.socketpair()`` with small kernel buffers: our end is a
RawSocketStream (so ``put`` can write without waiting), the peer's end a plain
non-blocking socket the test reads, or does not read, as it needs. Frames are numbered
and their bodies differ, so a torn, duplicated or reordered frame changes the bytes the
peer receives. Timed tests run on virtual time (``autojump_clock``).
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from itertools import accumulate

import pytest
import trio
import trio.testing

from triosock import UDPPeer, UDPServer, open_udp_channel, serve_udp
from triosock._transport.outbox import DatagramSink, Outbox, OutboxStalled, StreamSink
from triosock._transport.rawsocket import RawSocketStream

from .conftest import GUARD, QuietStream, reset_on_close

#: The kernel buffer size asked for (Linux doubles it): a few kilobytes fill it.
SMALL_BUFFER = 4096
#: A frame larger than the kernel buffers: put() can write only its beginning.
BIG = 200_000


def frame(i: int, size: int = 1000) -> bytes:
    """Frame number ``i``, ``size`` bytes long."""
    head = b"<%05d:" % i
    return head + bytes([65 + i % 26]) * (size - len(head) - 1) + b">"


@asynccontextmanager
async def outbox_and_peer() -> AsyncIterator[tuple[Outbox, RawSocketStream, socket.socket]]:
    """An Outbox over one end of a socketpair with small buffers, and the other end."""
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    peer.setblocking(False)
    stream = RawSocketStream(ours)
    try:
        yield Outbox(StreamSink(stream)), stream, peer
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()
        peer.close()


def read_available(sock: socket.socket) -> bytes:
    """Everything the non-blocking socket holds right now."""
    data = bytearray()
    with contextlib.suppress(BlockingIOError):
        while chunk := sock.recv(65536):
            data += chunk
    return bytes(data)


async def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from the non-blocking socket, waiting for them (each pass reads some)."""
    data = bytearray()
    while len(data) < size:
        await trio.lowlevel.wait_readable(sock)
        chunk = sock.recv(size - len(data))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


def put_until_queued(outbox: Outbox, waiting: int) -> list[bytes]:
    """put() numbered frames until ``waiting`` of them wait; return all that were put."""
    sent: list[bytes] = []
    for i in range(10_000):
        sent.append(frame(i))
        outbox.put(sent[-1])
        if outbox.frames >= waiting:
            return sent
    raise AssertionError("the socket never filled up")


def clog(stream: RawSocketStream) -> bytes:
    """Fill the kernel's send buffer behind the outbox's back; return what was written."""
    written = 0
    for _ in range(10_000):
        taken = stream.try_send(b"j" * 1024)
        written += taken
        if not taken:
            return b"j" * written
    raise AssertionError("the socket never filled up")


async def flush_while_reading(outbox: Outbox, peer: socket.socket, size: int) -> bytes:
    """Run ``outbox.flush()`` while the peer reads ``size`` bytes; return them."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.flush)
        return await read_exactly(peer, size)


async def flush_within(scope: trio.CancelScope, outbox: Outbox) -> None:
    """``outbox.flush()`` inside ``scope``, for the test to cancel."""
    with scope:
        await outbox.flush()


async def returns_without_parking(wait: Callable[[], Awaitable[object]]) -> bool:
    """Whether ``wait()`` returns before every task is blocked (it is cancelled if not)."""
    done = False

    async def run() -> None:
        nonlocal done
        await wait()
        done = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    return done


# -- writing at once, queueing what the socket does not take ---------------------------


async def test_put_with_room_writes_at_once_without_a_checkpoint() -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, stream, peer):
            assert StreamSink(stream).can_try_send
            with trio.testing.assert_no_checkpoints():
                outbox.put(b"one\n")
                outbox.put(b"two\nthree\n", 2)
            assert (outbox.written, outbox.queued, outbox.frames) == (3, 0, 0)
            assert read_available(peer) == b"one\ntwo\nthree\n"


async def test_a_peer_that_does_not_read_gets_every_frame_whole_and_in_order_on_flush() -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, _, peer):
            with trio.testing.assert_no_checkpoints():
                sent = put_until_queued(outbox, 20)
            waiting = outbox.frames
            sizes = [len(f) for f in sent]
            assert outbox.written == len(sent) - waiting
            # Only the head frame may be partly written: the ones behind it wait whole.
            assert sum(sizes[len(sent) - waiting + 1 :]) < outbox.queued
            assert outbox.queued <= sum(sizes[len(sent) - waiting :])
            wire = b"".join(sent)
            got = read_available(peer)  # the kernel holds exactly what was not queued
            assert got == wire[: len(wire) - outbox.queued]
            got += await flush_while_reading(outbox, peer, outbox.queued)
            assert got == wire
            assert read_available(peer) == b""  # nothing written twice
            assert (outbox.written, outbox.frames, outbox.queued) == (len(sent), 0, 0)


async def test_a_cancelled_flush_leaves_the_rest_queued_for_the_next_flush() -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, _, peer):
            sent = put_until_queued(outbox, 40)
            wire = b"".join(sent)
            scope = trio.CancelScope()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flush_within, scope, outbox)
                got = await read_exactly(peer, len(wire) // 2)  # the flush makes progress
                await trio.testing.wait_all_tasks_blocked()  # then waits for the socket
                assert outbox.frames
                scope.cancel()
            assert scope.cancelled_caught
            assert outbox.queued > 0
            got += read_available(peer)
            assert got == wire[: len(wire) - outbox.queued]
            got += await flush_while_reading(outbox, peer, outbox.queued)
            assert got == wire
            assert read_available(peer) == b""


async def test_puts_during_a_blocked_flush_only_append() -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, _, peer):
            sent = put_until_queued(outbox, 40)
            got = bytearray()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(outbox.flush)
                for _ in range(20):
                    await trio.testing.wait_all_tasks_blocked()
                    assert outbox.frames  # the flush waits for the socket
                    for _ in range(2):
                        sent.append(frame(len(sent)))
                        before = outbox.queued
                        with trio.testing.assert_no_checkpoints():
                            outbox.put(sent[-1])
                        assert outbox.queued == before + len(sent[-1])  # nothing written
                    got += peer.recv(2048)  # a little: the flush goes on, then waits again
                wire = b"".join(sent)
                got += await read_exactly(peer, len(wire) - len(got))
            assert bytes(got) == wire
            assert outbox.written == len(sent)


# -- dropping what waits ---------------------------------------------------------------


async def test_drops_keep_a_partly_written_head_and_drop_unstarted_frames_oldest_first() -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, _, peer):
            head = frame(0, BIG)
            outbox.put(head)
            rest = outbox.queued
            assert 0 < rest < len(head)
            for i in range(1, 7):
                outbox.put(frame(i), i)
            assert outbox.drop_oldest(rest + 3000) == 1 + 2 + 3
            assert (outbox.frames, outbox.queued) == (4, rest + 3000)
            assert outbox.drop_oldest(0) == 4 + 5 + 6  # the partly written head stays
            assert (outbox.frames, outbox.queued) == (1, rest)
            outbox.put(frame(7), 2)
            assert outbox.drop_waiting() == 2
            assert (outbox.frames, outbox.queued) == (1, rest)
            outbox.put(b"after\n")  # the outbox goes on after a drop
            got = await flush_while_reading(outbox, peer, len(head) + 6)
            assert got == head + b"after\n"
            assert read_available(peer) == b""
            assert outbox.written == 2


async def test_drops_take_an_unstarted_head_but_keep_frames_with_no_message() -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, stream, peer):
            junk = clog(stream)
            a, notice, b, c, d = (frame(i) for i in range(5))
            for f, count in ((a, 1), (notice, 0), (b, 2), (c, 3)):
                outbox.put(f, count)
            assert outbox.queued == 4000  # the socket took none of them
            assert outbox.drop_oldest(2000) == 1 + 2
            assert (outbox.frames, outbox.queued) == (2, 2000)
            assert outbox.drop_waiting() == 3
            assert (outbox.frames, outbox.queued) == (1, 1000)  # the notice stays
            outbox.put(d)
            got = await flush_while_reading(outbox, peer, len(junk) + 2000)
            assert got == junk + notice + d
            assert read_available(peer) == b""
            assert outbox.written == 1


async def test_a_put_after_a_drop_under_a_waiting_flush_still_goes_out() -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, stream, peer):
            junk = clog(stream)
            outbox.put(b"first\n")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(outbox.flush)
                await trio.testing.wait_all_tasks_blocked()  # waiting for the socket
                assert outbox.drop_waiting() == 1
                outbox.put(b"next\n")
                assert outbox.error is None
                got = await read_exactly(peer, len(junk))
            got += await flush_while_reading(outbox, peer, 5)
            assert got == junk + b"next\n"


# -- the stall clock, on virtual time --------------------------------------------------


@pytest.mark.parametrize(("read_at", "stalls_at"), [(None, 5), (3, 8)])
async def test_flush_stalls_stall_timeout_after_the_socket_last_took_anything(
    autojump_clock: trio.testing.MockClock, read_at: float | None, stalls_at: float
) -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, _, peer):
            start = trio.current_time()
            outbox.put(frame(0, BIG))
            assert outbox.waiting_since == start

            async def read_once() -> None:
                if read_at is not None:
                    await trio.sleep(read_at)
                    assert read_available(peer)  # the socket can take more from now on

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_once)
                await trio.sleep(2)  # the clock runs from the put, not from the flush
                with pytest.raises(OutboxStalled) as stalled:
                    await outbox.flush(stall_timeout=5)
            assert trio.current_time() - start == pytest.approx(stalls_at)
            assert outbox.waiting_since - start == pytest.approx(stalls_at - 5)
            assert stalled.value.seconds == pytest.approx(5)
            assert stalled.value.queued == outbox.queued > 0


async def test_a_slow_but_steady_reader_never_stalls_the_flush(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, _, peer):
            sent = [frame(i) for i in range(20)]
            for f in sent:
                outbox.put(f)
            wire = b"".join(sent)
            got = bytearray()
            start = trio.current_time()

            async def read_every_3s() -> None:
                for _ in range(100):
                    await trio.sleep(3)
                    got.extend(read_available(peer))  # a small buffer's worth
                    if len(got) >= len(wire):
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_every_3s)
                await outbox.flush(stall_timeout=5)
                took = trio.current_time() - start
            assert bytes(got) == wire
            assert took > 5  # longer than the timeout overall, never 5 s without progress
            assert took / 3 == pytest.approx(round(took / 3))


# -- a failing socket ------------------------------------------------------------------


async def test_a_peer_reset_fails_the_outbox_quietly_and_the_writer_gets_broken() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    outbox = Outbox(StreamSink(RawSocketStream(ours)))
    with trio.fail_after(GUARD), ours, theirs:
        outbox.put(frame(0, 2_000_000))
        assert outbox.queued
        reset_on_close(theirs)
        theirs.close()
        outbox.put(b"behind the head\n")  # appended: the socket is not touched
        assert (outbox.error, outbox.frames) == (None, 2)
        for _ in range(100):  # the reset is there at once, as a rule
            await trio.lowlevel.wait_writable(ours)
            try:
                outbox.write_nowait()  # the error is not raised, but remembered
            except trio.WouldBlock:
                continue
            break
        assert isinstance(outbox.error, trio.BrokenResourceError)
        assert (outbox.frames, outbox.queued) == (0, 0)
        outbox.put(b"ignored\n")
        assert (outbox.frames, outbox.queued, outbox.written) == (0, 0, 0)
        with pytest.raises(trio.BrokenResourceError) as broken:
            await outbox.flush()
        assert broken.value.__cause__ is outbox.error
        with pytest.raises(trio.BrokenResourceError):
            await outbox.write_some(stall_timeout=5)


async def test_a_closed_stream_fails_put_quietly_and_wakes_wait_queued() -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, stream, peer):
            woke = False

            async def writer() -> None:
                nonlocal woke
                await outbox.wait_queued()
                woke = True

            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                await trio.testing.wait_all_tasks_blocked()
                await stream.aclose()
                outbox.put(b"lost\n")  # does not raise
                await trio.testing.wait_all_tasks_blocked()
                assert woke
            assert isinstance(outbox.error, trio.ClosedResourceError)
            outbox.put(b"ignored\n")
            assert (outbox.frames, outbox.queued, outbox.written) == (0, 0, 0)
            assert await returns_without_parking(outbox.wait_queued)
            with pytest.raises(trio.BrokenResourceError):
                await outbox.flush()
            assert read_available(peer) == b""


# -- wait_queued -----------------------------------------------------------------------


async def test_wait_queued_parks_until_a_put_leaves_something_waiting() -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, _, peer):
            assert not await returns_without_parking(outbox.wait_queued)
            woke = trio.Event()

            async def writer() -> None:
                await outbox.wait_queued()
                woke.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                await trio.testing.wait_all_tasks_blocked()
                outbox.put(b"taken at once\n")
                await trio.testing.wait_all_tasks_blocked()
                assert not woke.is_set()
                outbox.put(frame(0, BIG))  # more than the socket takes
                await woke.wait()
            assert outbox.frames == 1
            assert await returns_without_parking(outbox.wait_queued)
            assert read_available(peer).startswith(b"taken at once\n")


# -- a stream without try_send (TLS): only the writer writes, batch by whole batch -----


class GatedStream(QuietStream):
    """Records each ``send_all``; writes half of it, waits for ``gate``, writes the rest."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.wire = bytearray()
        self.gate = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        self.calls.append(data)
        self.wire += data[: len(data) // 2]
        await self.gate.wait()
        self.wire += data[len(data) // 2 :]


async def test_without_try_send_put_never_writes_and_flush_sends_whole_batches() -> None:
    left, right = trio.socket.socketpair()
    with left, right:
        assert not StreamSink(trio.SocketStream(left)).can_try_send
    assert not StreamSink(trio.testing.memory_stream_pair()[0]).can_try_send
    stream = GatedStream()
    stream.gate.set()
    outbox = Outbox(StreamSink(stream))
    sent = [frame(i, 100_000) for i in range(5)]
    with trio.testing.assert_no_checkpoints():
        for f in sent:
            outbox.put(f, 2)
    assert (outbox.written, outbox.frames, stream.calls) == (0, 5, [])
    await outbox.flush()
    assert bytes(stream.wire) == b"".join(sent)
    assert len(stream.calls) > 1  # batches are bounded, and each is whole frames
    ends = set(accumulate(len(f) for f in sent))
    assert set(accumulate(len(call) for call in stream.calls)) <= ends
    assert (outbox.written, outbox.frames, outbox.queued) == (10, 0, 0)


async def test_cancelling_a_flush_without_try_send_never_tears_the_batch_under_way() -> None:
    stream = GatedStream()
    outbox = Outbox(StreamSink(stream))
    a, b, c = frame(0), frame(1), frame(2)
    outbox.put(a)
    outbox.put(b)
    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(flush_within, scope, outbox)
        await trio.testing.wait_all_tasks_blocked()  # half of a + b is written
        outbox.put(c)
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert len(stream.wire) == len(a + b) // 2  # shielded: still under way
        stream.gate.set()
    assert scope.cancelled_caught
    assert bytes(stream.wire) == a + b  # finished, and nothing begun after it
    assert (outbox.written, outbox.frames, outbox.queued) == (2, 1, len(c))
    await outbox.flush()
    assert bytes(stream.wire) == a + b + c


async def test_drop_oldest_during_a_batch_write_never_tears_a_frame() -> None:
    stream = GatedStream()
    outbox = Outbox(StreamSink(stream))
    a, b, c = b"A" * 10, b"B" * 10, b"C" * 30
    outbox.put(a)
    outbox.put(b)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.flush)
        await trio.testing.wait_all_tasks_blocked()  # a + b under way, in one send_all
        outbox.put(c)
        lost = outbox.drop_oldest(40)
        stream.gate.set()
    await outbox.flush()
    assert bytes(stream.wire) in (a + b, a + b + c)  # whole frames only
    assert outbox.written + lost == 3
    assert outbox.queued == 0


# -- a datagram sink: one frame, one datagram ------------------------------------------


async def test_a_datagram_sink_sends_each_frame_as_one_datagram_in_order() -> None:
    sent = [b"datagram %d " % i + b"x" * i for i in range(50)]
    written: list[int] = []

    async def handler(peer: UDPPeer) -> None:
        await peer.receive()
        outbox = Outbox(DatagramSink(peer))
        for data in sent:
            outbox.put(data, 2)
        await outbox.flush()
        written.append(outbox.written)

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: UDPServer = await nursery.start(
                lambda task_status: serve_udp(handler, 0, grace_period=0, task_status=task_status)
            )
            client = await open_udp_channel("127.0.0.1", server.port)
            await client.send(b"hello")
            got = [await client.receive() for _ in sent]
            await client.aclose()
            nursery.cancel_scope.cancel()
    assert got == sent
    assert written == [100]
    assert not DatagramSink.joinable


async def test_closing_the_stream_under_a_waiting_flush_is_a_failed_socket() -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, stream, _peer):
            clog(stream)
            outbox.put(frame(1))
            async with trio.open_nursery() as nursery:

                async def flush_expecting_broken() -> None:
                    with pytest.raises(trio.BrokenResourceError):
                        await outbox.flush()

                nursery.start_soon(flush_expecting_broken)
                await trio.testing.wait_all_tasks_blocked()
                await stream.aclose()
            assert isinstance(outbox.error, trio.ClosedResourceError)
            assert outbox.queued == outbox.frames == 0


async def test_a_late_flush_is_no_stall_when_the_peer_drained_meanwhile(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, stream, peer):
            junk = clog(stream)
            outbox.put(frame(1))
            await trio.sleep(10)  # longer than the stall timeout, nobody flushing
            assert read_available(peer) == junk  # the peer drains, then the flush starts
            async with trio.open_nursery() as nursery:
                # The socket took nothing for 10 s, but the peer has drained since.
                nursery.start_soon(functools.partial(outbox.flush, stall_timeout=5.0))
                assert await read_exactly(peer, len(frame(1))) == frame(1)
            assert outbox.queued == 0


async def test_two_tasks_flushing_at_once_share_the_writes_and_tear_nothing() -> None:
    # The chat member's writer and websockets' own writes (pings, pongs, the close) flush
    # one outbox from two tasks: one waits for the socket, the other for its progress.
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, _, peer):
            sent = put_until_queued(outbox, 20)
            finished: list[str] = []

            async def flush(name: str) -> None:
                await outbox.flush()
                finished.append(name)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flush, "writer")
                nursery.start_soon(flush, "protocol")
                await trio.testing.wait_all_tasks_blocked()
                assert finished == []  # both wait: the peer reads nothing yet
                sent.append(frame(len(sent)))
                outbox.put(sent[-1])  # queued behind the rest, as a pong would be
                wire = b"".join(sent)
                got = await read_exactly(peer, len(wire))
            assert got == wire
            assert sorted(finished) == ["protocol", "writer"]


async def test_a_sealed_outbox_writes_what_it_holds_and_drops_later_puts() -> None:
    with trio.fail_after(GUARD):
        async with outbox_and_peer() as (outbox, _, peer):
            sent = put_until_queued(outbox, 5)
            outbox.put(b"<close>", 0)
            outbox.seal()
            outbox.put(frame(99_999))  # after the close frame: never sent
            assert outbox.sealed
            wire = b"".join(sent) + b"<close>"
            got = await flush_while_reading(outbox, peer, len(wire))
            assert got == wire
            outbox.put(b"late")
            assert read_available(peer) == b""
            assert outbox.frames == 0


async def test_write_nowait_writes_what_the_socket_takes_and_says_wouldblock_for_the_rest() -> None:
    async with outbox_and_peer() as (outbox, _, peer):
        sent = put_until_queued(outbox, 3)
        waiting = outbox.queued
        with trio.testing.assert_no_checkpoints(), pytest.raises(trio.WouldBlock):
            outbox.write_nowait()  # nothing read yet: the socket takes nothing more
        assert outbox.queued == waiting
        received = read_available(peer)  # room again
        while outbox.frames:
            with contextlib.suppress(trio.WouldBlock):
                outbox.write_nowait()
            received += read_available(peer)
        outbox.write_nowait()  # nothing left: no WouldBlock
        assert outbox.queued == 0
        assert received + read_available(peer) == b"".join(sent)
