"""FramedChannel over in-memory streams, and trio's stream conformance checks."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from triosock import (
    FramedChannel,
    FramingError,
    LengthPrefixFramer,
    LineFramer,
    MessageTooLargeError,
    open_tcp_channel,
)
from triosock._liveness import IdleTimer
from triosock._transport.rawsocket import RawSocketStream
from triosock._transport.tcp import TCPConnection, TCPServer
from triosock._transport.websocket import WebSocketStream

from .conftest import GUARD, QuietStream, reset_on_close, running_tcp_server, tls_contexts


def channel_pair(
    framer: type[LineFramer] | type[LengthPrefixFramer] = LineFramer,
) -> tuple[FramedChannel, FramedChannel]:
    left, right = trio.testing.memory_stream_pair()
    return FramedChannel(left, framer()), FramedChannel(right, framer())


@pytest.mark.parametrize("framer", [LineFramer, LengthPrefixFramer])
async def test_messages_round_trip_and_eof(
    framer: type[LineFramer] | type[LengthPrefixFramer],
) -> None:
    a, b = channel_pair(framer)
    await a.send(b"hello")
    await a.send_many([b"x", b"", b"y"])
    await a.send_eof()
    assert [m async for m in b] == [b"hello", b"x", b"", b"y"]
    with pytest.raises(trio.EndOfChannel):
        await b.receive()


async def test_receive_nowait_serves_a_burst() -> None:
    a, b = channel_pair()
    await a.send_many([b"1", b"2", b"3"])
    assert await b.receive() == b"1"
    assert b.receive_nowait() == b"2"
    assert b.receive_nowait() == b"3"
    with pytest.raises(trio.WouldBlock):
        b.receive_nowait()


async def test_an_oversized_line_comes_after_the_good_ones_once_and_the_channel_goes_on() -> None:
    left, right = trio.testing.memory_stream_pair()
    receiver = FramedChannel(right, LineFramer(max_line_length=8))
    await left.send_all(b"short\n" + b"x" * 20 + b"\nafter\n" + b"y" * 9)
    assert await receiver.receive() == b"short"
    with pytest.raises(MessageTooLargeError, match="limit of 8"):
        await receiver.receive()
    # What came after it in the same read, without another read:
    assert receiver.receive_nowait() == b"after"
    with pytest.raises(MessageTooLargeError):  # the unterminated 9 bytes: refused early
        await receiver.receive()
    await left.send_all(b"yyy\nlast\n")
    assert await receiver.receive() == b"last"
    await left.aclose()
    with pytest.raises(trio.EndOfChannel):
        await receiver.receive()


async def test_a_length_prefixed_stream_cut_short_raises_once_then_ends() -> None:
    left, right = trio.testing.memory_stream_pair()
    receiver = FramedChannel(right, LengthPrefixFramer(max_size=8))
    await left.send_all(b"\x00\x00\x00\x02ok\x00\x00\x00\x05ab")
    await left.aclose()
    assert await receiver.receive() == b"ok"
    with pytest.raises(FramingError, match="ended inside a message"):
        await receiver.receive()
    with pytest.raises(trio.EndOfChannel):
        await receiver.receive()


async def test_a_message_over_the_limit_is_not_sent_and_the_channel_goes_on() -> None:
    a, b = channel_pair()
    limited = FramedChannel(a.stream, LineFramer(max_line_length=4))
    with pytest.raises(MessageTooLargeError):
        await limited.send(b"12345")
    await limited.send(b"1234")
    assert await b.receive() == b"1234"


async def test_concurrent_receive_is_busy() -> None:
    a, b = channel_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(b.receive)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await b.receive()
        await a.send(b"unblock")


async def test_concurrent_sends_are_never_interleaved() -> None:
    # A lockstep stream makes every send_all wait for the reader, so the two senders
    # really overlap; the lock must keep their frames whole.
    left, right = trio.testing.lockstep_stream_pair()
    sender = FramedChannel(left, LengthPrefixFramer(max_size=1 << 20))
    receiver = FramedChannel(right, LengthPrefixFramer(max_size=1 << 20))
    big_a, big_b = b"a" * 100_000, b"b" * 100_000
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender.send, big_a)
        nursery.start_soon(sender.send, big_b)
        got.append(await receiver.receive())
        got.append(await receiver.receive())
    assert sorted(got) == [big_a, big_b]


async def test_closed_channel_refuses() -> None:
    a, b = channel_pair()
    await a.send(b"pending")
    await b.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await b.receive()
    with pytest.raises(trio.ClosedResourceError):
        await b.send(b"x")


async def test_send_eof_needs_a_half_closeable_stream() -> None:
    ssl_like = FramedChannel(_NotHalfCloseable())
    with pytest.raises(Exception, match="cannot half-close"):
        await ssl_like.send_eof()


class _NotHalfCloseable(QuietStream):
    """Not a HalfCloseableStream."""


# -- TCPConnection is exposed as a Stream: run trio's conformance checks on it ----------


def _wrap(stream: trio.abc.Stream) -> TCPConnection:
    # Server-made objects have no public constructor: the test makes them as the server
    # does.
    server = TCPServer._create([], grace_period=0, idle_timeout=None)
    return TCPConnection._create(stream, server, IdleTimer(None))


async def _memory_pair() -> tuple[TCPConnection, TCPConnection]:
    left, right = trio.testing.memory_stream_pair()
    return _wrap(left), _wrap(right)


async def _socket_pair() -> tuple[TCPConnection, TCPConnection]:
    left, right = trio.socket.socketpair()
    return _wrap(trio.SocketStream(left)), _wrap(trio.SocketStream(right))


async def _clogged_socket_pair() -> tuple[TCPConnection, TCPConnection]:
    left, right = socket.socketpair()
    # Fill the kernel's buffers both ways so that the next send_all blocks (the check
    # flips the pair to test the other direction too).
    for sock in (left, right):
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                sock.send(b"x" * 65536)
    return (
        _wrap(trio.SocketStream(trio.socket.from_stdlib_socket(left))),
        _wrap(trio.SocketStream(trio.socket.from_stdlib_socket(right))),
    )


async def test_tcp_connection_conforms_to_half_closeable_stream() -> None:
    await trio.testing.check_half_closeable_stream(_memory_pair, None)


async def test_tcp_connection_over_sockets_conforms() -> None:
    with trio.fail_after(30):
        await trio.testing.check_half_closeable_stream(_socket_pair, _clogged_socket_pair)


# -- RawSocketStream, the stream serve_tcp accepts: the same conformance checks ---------


async def _raw_pair() -> tuple[RawSocketStream, RawSocketStream]:
    left, right = socket.socketpair()
    return RawSocketStream(left), RawSocketStream(right)


async def _clogged_raw_pair() -> tuple[RawSocketStream, RawSocketStream]:
    left, right = await _raw_pair()
    for sock in (left.socket, right.socket):
        with contextlib.suppress(BlockingIOError):
            while True:
                sock.send(b"x" * 65536)
    return left, right


async def test_raw_socket_stream_conforms_to_half_closeable_stream() -> None:
    with trio.fail_after(30):
        await trio.testing.check_half_closeable_stream(_raw_pair, _clogged_raw_pair)


class _Steps(trio.abc.Instrument):
    """Counts the scheduler steps of one task: a call that yields ends a step."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


@asynccontextmanager
async def counting_steps() -> AsyncIterator[_Steps]:
    steps = _Steps(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(steps)
    try:
        yield steps
    finally:
        trio.lowlevel.remove_instrument(steps)


@asynccontextmanager
async def open_raw_pair() -> AsyncIterator[tuple[RawSocketStream, RawSocketStream]]:
    left, right = await _raw_pair()
    try:
        yield left, right
    finally:
        await left.aclose()
        await right.aclose()


async def yields(steps: _Steps, call: Awaitable[object]) -> bool:
    before = steps.steps
    await call
    return steps.steps > before


async def test_the_answer_to_a_receive_rides_on_its_schedule_point() -> None:
    # The documented contract: receive_some always yields (even with data waiting);
    # the first send_all after it does not; every other send_all does.
    async with open_raw_pair() as (left, right), counting_steps() as steps:
        with trio.fail_after(GUARD):
            await right.send_all(b"request")  # a socketpair: readable as soon as sent
            assert await yields(steps, left.receive_some())
            assert not await yields(steps, left.send_all(b"reply"))
            assert await yields(steps, left.send_all(b"more"))
            for _ in range(3):  # a task that only sends yields on every send
                assert await yields(steps, left.send_all(b"x"))
            await right.send_all(b"again")
            assert await yields(steps, left.receive_some())
            assert await yields(steps, left.send_eof())  # no answer in a half-close


async def test_a_send_that_answers_a_receive_is_still_a_cancel_point() -> None:
    async with open_raw_pair() as (left, right):
        await right.send_all(b"request")
        assert await left.receive_some() == b"request"
        with trio.CancelScope() as scope:
            scope.cancel()
            await left.send_all(b"reply")
        assert scope.cancelled_caught
        await left.send_all(b"after")
        with trio.fail_after(GUARD):
            assert await right.receive_some() == b"after"  # the cancelled one wrote nothing


async def test_a_busy_request_reply_loop_lets_other_tasks_run() -> None:
    # A peer that always has the next request ready: the loop never waits, yet another
    # task runs between every two round trips.
    other_runs = 0
    round_trips = 0

    async def other() -> None:
        nonlocal other_runs
        while True:
            other_runs += 1
            await trio.lowlevel.checkpoint()

    async with open_raw_pair() as (left, right), trio.open_nursery() as nursery:
        with trio.fail_after(GUARD):
            await right.send_all(b"x" * 50_000)  # stays in the kernel, ready to read
            nursery.start_soon(other)
            start = other_runs
            while round_trips < 200:
                await left.receive_some(100)
                await left.send_all(b"y")
                round_trips += 1
            assert other_runs - start >= 150  # one scheduler pass per round trip
            nursery.cancel_scope.cancel()


async def test_a_websocket_stream_half_closes_while_its_writer_waits_for_room() -> None:
    # websockets half-closes after its close frame while the chat's writer for the member
    # waits for room on the same socket (the soak's fuzz met it as BusyResourceError).
    left, right = await _clogged_raw_pair()
    stream = WebSocketStream(left)
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(left.wait_send_all_might_not_block)  # the writer's wait
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_eof()
            while await right.receive_some(65536):  # the peer drains: the waiter wakes
                pass
        with pytest.raises((trio.ClosedResourceError, trio.BrokenResourceError)):
            await stream.send_all(b"after the half-close")  # refused, not sent
        await stream.aclose()
        await right.aclose()


async def test_raw_socket_stream_translates_errors() -> None:
    left, right = await _raw_pair()
    reset_on_close(right.socket)
    await right.aclose()  # with SO_LINGER 0: a reset

    async def send_until_broken() -> None:
        for _ in range(100):
            await left.send_all(b"x" * 65536)

    with pytest.raises(trio.BrokenResourceError):
        await send_until_broken()
    await left.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await left.receive_some()


# -- RawSocketStream.try_send: a write that never waits ---------------------------------


def _tcp_socket_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def _read_available(sock: socket.socket) -> bytes:
    """Everything the (non-blocking) socket holds right now."""
    data = bytearray()
    with contextlib.suppress(BlockingIOError):
        while chunk := sock.recv(65536):
            data += chunk
    return bytes(data)


async def test_try_send_writes_at_once_and_returns_zero_when_the_buffer_is_full() -> None:
    ours, peer = await _raw_pair()
    assert ours.can_try_send
    with trio.testing.assert_no_checkpoints():
        assert ours.try_send(b"hello") == 5
        assert ours.try_send(bytearray(b" and")) == 4
        assert ours.try_send(memoryview(b" more")) == 5
    assert _read_available(peer.socket) == b"hello and more"
    taken = []
    for _ in range(10_000):
        taken.append(ours.try_send(b"x" * 65536))
        if taken[-1] == 0:
            break
    assert taken[-1] == 0
    assert _read_available(peer.socket) == b"x" * sum(taken)  # the counts were exact
    await ours.aclose()
    await peer.aclose()


async def test_try_send_is_refused_while_a_send_all_is_in_progress() -> None:
    ours, peer = await _clogged_raw_pair()
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ours.send_all, b"more")
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                ours.try_send(b"x")
            nursery.cancel_scope.cancel()
    await ours.aclose()
    await peer.aclose()


async def test_try_send_after_aclose_or_send_eof_raises_closed() -> None:
    closed, peer = await _raw_pair()
    await closed.aclose()
    with pytest.raises(trio.ClosedResourceError):
        closed.try_send(b"x")
    half_closed, other_peer = await _raw_pair()
    await half_closed.send_eof()
    with pytest.raises(trio.ClosedResourceError):
        half_closed.try_send(b"x")
    assert _read_available(other_peer.socket) == b""  # nothing was written
    for stream in (peer, half_closed, other_peer):
        await stream.aclose()


def _try_send_until_it_raises(stream: RawSocketStream) -> None:
    for _ in range(1000):
        stream.try_send(b"x" * 1024)


async def test_try_send_after_the_peer_reset_the_connection_raises_broken() -> None:
    ours_sock, theirs = _tcp_socket_pair()
    ours = RawSocketStream(ours_sock)
    reset_on_close(theirs)
    theirs.close()  # with SO_LINGER 0: a reset
    with pytest.raises(trio.BrokenResourceError):
        _try_send_until_it_raises(ours)
    await ours.aclose()


async def test_send_many_with_a_bad_message_writes_nothing() -> None:
    a, b = channel_pair()
    with pytest.raises(FramingError):
        await a.send_many([b"good", b"bad\nline"])
    await a.send(b"next")
    assert await b.receive() == b"next"


# -- TCPConnection: try_send only without TLS -------------------------------------------


async def _report_try_send(conn: TCPConnection) -> None:
    chan = FramedChannel(conn)
    try:
        conn.try_send(b"")
    except trio.WouldBlock:
        refused = True
    else:
        refused = False
    await chan.send(b"%d %d" % (conn.can_try_send, refused))


@pytest.mark.parametrize(("tls", "report"), [(False, b"1 0"), (True, b"0 1")])
async def test_a_tcp_connection_can_try_send_only_without_tls(tls: bool, report: bytes) -> None:
    server_ctx: ssl.SSLContext | None = None
    client_ctx: ssl.SSLContext | None = None
    if tls:
        server_ctx, client_ctx = tls_contexts()
    with trio.fail_after(GUARD):
        async with running_tcp_server(_report_try_send, ssl_context=server_ctx) as (server, _):
            chan = await open_tcp_channel(
                "127.0.0.1", server.port, ssl_context=client_ctx, server_hostname="localhost"
            )
            assert await chan.receive() == report
            await chan.aclose()


async def test_a_refusal_carries_no_message_the_channel_delivered_already() -> None:
    # MessageTooLargeError.messages is for a framer's caller; a channel delivers them
    # from receive(), so a handler that followed the attribute would deliver them twice.
    left, right = trio.testing.memory_stream_pair()
    receiver = FramedChannel(right, LineFramer(max_line_length=4))
    await left.send_all(b"a\nb\n" + b"x" * 9 + b"\n")
    assert [await receiver.receive(), await receiver.receive()] == [b"a", b"b"]
    with pytest.raises(MessageTooLargeError) as refused:
        await receiver.receive()
    assert refused.value.messages == []
