"""FramedChannel over in-memory streams, and trio's stream conformance checks."""

from __future__ import annotations

import contextlib
import socket

import pytest
import trio
import trio.testing

from triosock import FramedChannel, LengthPrefixFramer, LineFramer, MessageTooLargeError
from triosock._liveness import IdleTimer
from triosock._transport.rawsocket import RawSocketStream
from triosock._transport.tcp import TCPConnection, TCPServer


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


async def test_oversized_line_comes_after_the_good_ones_and_sticks() -> None:
    left, right = trio.testing.memory_stream_pair()
    receiver = FramedChannel(right, LineFramer(max_line_length=8))
    await left.send_all(b"short\n" + b"x" * 20 + b"\n")
    assert await receiver.receive() == b"short"
    with pytest.raises(MessageTooLargeError, match="limit of 8"):
        await receiver.receive()
    with pytest.raises(MessageTooLargeError):
        await receiver.receive()


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


class _NotHalfCloseable(trio.abc.Stream):
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return b""

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


# -- TCPConnection is exposed as a Stream: run trio's conformance checks on it ----------


def _wrap(stream: trio.abc.Stream) -> TCPConnection:
    server = TCPServer([], grace_period=0, idle_timeout=None)
    return TCPConnection(stream, server, IdleTimer(None))


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


async def test_raw_socket_stream_translates_errors() -> None:
    left, right = await _raw_pair()
    right.socket.setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
    )
    await right.aclose()  # with SO_LINGER 0: a reset

    async def send_until_broken() -> None:
        for _ in range(100):
            await left.send_all(b"x" * 65536)

    with pytest.raises(trio.BrokenResourceError):
        await send_until_broken()
    await left.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await left.receive_some()
