"""serve_tcp and the TCP client over real loopback sockets."""

from __future__ import annotations

import contextlib
import socket
import ssl
import tracemalloc
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from triosock import (
    BindError,
    ConnectError,
    FramedChannel,
    LineFramer,
    MessageTooLargeError,
    TCPConnection,
    open_tcp_channel,
    open_tcp_stream,
    serve_tcp,
)
from triosock._transport.rawsocket import RawSocketStream
from triosock.services import echo_handler

from .conftest import GUARD, reset_on_close, running_tcp_server, tls_contexts


async def test_two_hundred_clients_each_get_their_own_messages_back() -> None:
    with trio.fail_after(GUARD):
        async with running_tcp_server(echo_handler) as (server, _):
            # A hog sends without ever reading: its handler blocks in send_all once the
            # buffers fill, and must slow nobody else.
            hog = await open_tcp_stream("127.0.0.1", server.port)
            hog_sent = 0

            async def flood() -> None:
                nonlocal hog_sent
                chunk = b"h" * 65536
                for _ in range(256):
                    await hog.send_all(chunk)
                    hog_sent += len(chunk)

            results: dict[int, list[bytes]] = {}

            async def client(n: int) -> None:
                chan = await open_tcp_channel("127.0.0.1", server.port)
                got = []
                for i in range(100):
                    await chan.send(b"client %d message %d" % (n, i))
                    got.append(await chan.receive())
                results[n] = got
                await chan.aclose()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                async with trio.open_nursery() as clients:
                    for n in range(200):
                        clients.start_soon(client, n)
                # The hog is still stuck: the kernel buffers cannot hold 16 MiB.
                assert hog_sent < 256 * 65536
                nursery.cancel_scope.cancel()
            await hog.aclose()
    assert len(results) == 200
    for n, got in results.items():
        assert got == [b"client %d message %d" % (n, i) for i in range(100)]


async def test_a_bulk_echo_comes_back_whole_when_sends_come_up_short() -> None:
    # The client reads back in small pieces while it sends 8 MiB: the buffers fill, the
    # echo's sends come up short, and the rest must follow, byte for byte, in order.
    payload = bytes(range(256)) * (8 * 4096)
    received = bytearray()
    with trio.fail_after(GUARD):
        async with running_tcp_server(echo_handler) as (server, _):
            client = await open_tcp_stream("127.0.0.1", server.port)

            async def send() -> None:
                await client.send_all(payload)
                await client.send_eof()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                while data := await client.receive_some(1024):
                    received.extend(data)
            await client.aclose()
    assert received == payload


class _EndlessPeer:
    """A socket whose peer always has the next message ready and reads every reply
    (for 1000 messages, then it half-closes): a stream on it never has to wait."""

    family = socket.AF_UNIX

    def __init__(self) -> None:
        self.replies = 0

    def setblocking(self, flag: bool) -> None:
        pass

    def recv(self, size: int) -> bytes:
        return b"x" * 64 if self.replies < 1000 else b""

    def send(self, data: bytes | memoryview) -> int:
        self.replies += 1
        return len(data)


async def test_an_echo_that_never_waits_still_stops_at_once_when_cancelled() -> None:
    # A peer that keeps the echo busy never lets it wait for data; every receive_some
    # and send_all is still a cancel point, so a server stop or idle timeout gets in.
    peer = _EndlessPeer()
    stream = RawSocketStream(peer)  # type: ignore[arg-type]
    with trio.fail_after(GUARD):
        async for data in stream:
            await stream.send_all(data)
    assert peer.replies == 1000
    peer.replies = 0
    with trio.fail_after(GUARD), trio.CancelScope() as scope:
        async for data in stream:
            await stream.send_all(data)
            if peer.replies == 10:
                scope.cancel()
    assert scope.cancelled_caught
    assert peer.replies == 10


async def line_echo_with_a_framed_channel(conn: TCPConnection) -> None:
    """The line echo a user writes: a ``FramedChannel`` over the connection."""
    chan = FramedChannel(conn)
    async for line in chan:
        await chan.send(line)


async def echo_with_the_stream_api(conn: TCPConnection) -> None:
    """An echo written the way a user writes one: ``receive_some`` and ``send_all``."""
    async for data in conn:
        await conn.send_all(data)


@pytest.mark.parametrize(
    "handler",
    [echo_handler, echo_with_the_stream_api, line_echo_with_a_framed_channel],
    ids=["echo service", "stream api", "framed channel"],
)
async def test_idle_timeout_closes_a_silent_connection_at_exactly_the_timeout(
    autojump_clock: trio.testing.MockClock, handler: Callable[[TCPConnection], Awaitable[None]]
) -> None:
    with trio.fail_after(1000):
        async with running_tcp_server(handler, idle_timeout=30) as (server, _):
            silent = await open_tcp_stream("127.0.0.1", server.port)
            chatty = await open_tcp_stream("127.0.0.1", server.port)
            start = trio.current_time()

            async def talk() -> None:
                for i in range(5):
                    await trio.sleep(20)
                    await chatty.send_all(b"ping %d\n" % i)
                    assert await chatty.receive_some() == b"ping %d\n" % i

            async with trio.open_nursery() as nursery:
                nursery.start_soon(talk)
                assert await silent.receive_some() == b""
                assert trio.current_time() - start == pytest.approx(30)
            # The chatty one outlived the silent one by far, and goes 30 s after its last word.
            last_word = trio.current_time()
            assert last_word - start == pytest.approx(100)
            assert await chatty.receive_some() == b""
            assert trio.current_time() - last_word == pytest.approx(30)
            assert server.statistics().idle_timeouts == 2
            await silent.aclose()
            await chatty.aclose()


async def test_a_line_service_that_catches_a_refusal_receives_the_next_line() -> None:
    # A user's handler: it catches MessageTooLargeError, answers it, and goes on.
    lines: list[bytes] = []
    refused: list[int] = []
    order: list[str] = []

    async def handler(conn: TCPConnection) -> None:
        chan = FramedChannel(conn, LineFramer(max_line_length=100))
        while True:
            try:
                line = await chan.receive()
            except MessageTooLargeError as exc:
                refused.append(exc.size)
                order.append("refused")
                await chan.send(b"refused")
                continue
            except trio.EndOfChannel:
                return
            lines.append(line)
            order.append("line")
            await chan.send(b"ok " + line)

    with trio.fail_after(GUARD):
        async with running_tcp_server(handler) as (server, _):
            client = await open_tcp_channel("127.0.0.1", server.port)
            stream = client.stream
            await stream.send_all(b"x" * 1000 + b"\nfirst\n")
            assert await client.receive() == b"refused"
            assert await client.receive() == b"ok first"
            # 10 MiB without a newline: refused as soon as it passes the limit, then
            # skipped as it arrives. The server holds none of it: its memory stays flat.
            chunk = b"y" * 65536
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for _ in range(160):
                    await stream.send_all(chunk)
                await stream.send_all(b"\nsecond\n")
                assert await client.receive() == b"refused"
                assert await client.receive() == b"ok second"
                grown = tracemalloc.get_traced_memory()[1] - before
            finally:
                tracemalloc.stop()
            assert grown < 2 * 1024 * 1024, grown  # a fifth of what was sent, at most
            await client.aclose()
    # One refusal per refused line, each in its place; the whole line's size when it came
    # whole, the bytes seen when it passed the limit otherwise (at most one read's worth).
    assert order == ["refused", "line", "refused", "line"]
    assert lines == [b"first", b"second"]
    assert refused[0] == 1000
    assert 100 < refused[1] <= 256 * 1024 + 100


async def goodbye_on_idle(conn: TCPConnection) -> None:
    """A line service that says why it closes, as the README shows: the idle timeout
    cancels its stop scope, not the handler, and ``idle_expired`` says so."""
    chan = FramedChannel(conn)
    with conn.stop_scope():
        async for line in chan:
            await chan.send(line)
    if conn.idle_expired:
        await chan.send(b"bye: idle for 30 s")
    # Lingers past its goodbye, reading what still comes: the grace period ends that.
    async for _ in chan:
        pass


async def test_an_idle_timeout_lets_the_handler_say_goodbye_within_the_grace_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        async with running_tcp_server(goodbye_on_idle, idle_timeout=30, grace_period=4) as (
            server,
            _,
        ):
            chan = await open_tcp_channel("127.0.0.1", server.port)
            await trio.sleep(10)
            await chan.send(b"hello")
            assert await chan.receive() == b"hello"
            last_word = trio.current_time()
            # The goodbye comes 30 s after the last byte received...
            assert await chan.receive() == b"bye: idle for 30 s"
            assert trio.current_time() - last_word == pytest.approx(30)
            # ...what the peer says now does not put it off, and the handler, which lingers,
            # is cancelled at the end of the grace period: the connection closes then.
            await trio.sleep(2)
            await chan.send(b"too late")
            with pytest.raises(trio.EndOfChannel):
                await chan.receive()
            assert trio.current_time() - last_word == pytest.approx(34)
            assert server.statistics().idle_timeouts == 1
            await chan.aclose()


async def test_without_a_stop_scope_an_idle_timeout_cancels_the_handler_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[bool] = []

    async def lingers(conn: TCPConnection) -> None:
        try:
            await trio.sleep_forever()
        finally:
            seen.append(conn.idle_expired)  # a finally block can tell why

    with trio.fail_after(1000):
        async with running_tcp_server(lingers, idle_timeout=30, grace_period=4) as (server, _):
            stream = await open_tcp_stream("127.0.0.1", server.port)
            start = trio.current_time()
            assert await stream.receive_some() == b""
            assert trio.current_time() - start == pytest.approx(30)
            assert seen == [True]
            await stream.aclose()


async def test_max_connections_queues_the_next_one_until_a_slot_frees(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        async with running_tcp_server(echo_handler, max_connections=2) as (server, _):
            first = await open_tcp_stream("127.0.0.1", server.port)
            second = await open_tcp_stream("127.0.0.1", server.port)
            for stream in (first, second):
                await stream.send_all(b"hi")
                assert await stream.receive_some() == b"hi"
            third = await open_tcp_stream("127.0.0.1", server.port)  # the kernel completes it
            await third.send_all(b"waiting")
            with trio.move_on_after(60) as waited:
                await third.receive_some()
            assert waited.cancelled_caught, "the third connection was served beyond the limit"
            assert server.statistics().open_connections == 2
            # The first two keep being served meanwhile.
            await second.send_all(b"still here")
            assert await second.receive_some() == b"still here"
            await first.aclose()
            assert await third.receive_some() == b"waiting"
            assert server.statistics().open_connections == 2
            await second.aclose()
            await third.aclose()


async def test_graceful_stop_with_cooperating_handlers_is_prompt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: serve_tcp(
                    echo_handler, 0, grace_period=10, task_status=task_status
                )
            )
            clients = [await open_tcp_stream("127.0.0.1", server.port) for _ in range(5)]
            await clients[0].send_all(b"mid-conversation")
            assert await clients[0].receive_some() == b"mid-conversation"
            start = trio.current_time()
            nursery.cancel_scope.cancel()
        assert trio.current_time() - start < 1
        for client in clients:
            assert await client.receive_some() == b""  # a clean EOF
            await client.aclose()


async def test_graceful_stop_cancels_stubborn_handlers_after_the_grace_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finished: list[str] = []

    async def stubborn(conn: TCPConnection) -> None:
        try:
            await trio.sleep_forever()  # ignores conn.stopping
        finally:
            finished.append(conn.peer)

    async def polite(conn: TCPConnection) -> None:
        with conn.stop_scope():
            await trio.sleep_forever()
        assert conn.stopping
        await conn.send_all(b"goodbye\n")
        finished.append("polite")

    async def handler(conn: TCPConnection) -> None:
        first = await conn.receive_some()
        await (polite if first == b"polite" else stubborn)(conn)

    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: serve_tcp(handler, 0, grace_period=7, task_status=task_status)
            )
            a = await open_tcp_stream("127.0.0.1", server.port)
            b = await open_tcp_stream("127.0.0.1", server.port)
            await a.send_all(b"polite")
            await b.send_all(b"stubborn")
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            server.stop()
        # serve_tcp returned after exactly the grace period, and no handler outlived it.
        assert trio.current_time() - start == pytest.approx(7)
        assert sorted(finished)[-1] == "polite"
        assert len(finished) == 2
        assert await a.receive_some() == b"goodbye\n"
        assert await a.receive_some() == b""
        assert await b.receive_some() == b""
        await a.aclose()
        await b.aclose()


class RecordingLineFramer(LineFramer):
    """A LineFramer that remembers the most it ever buffered."""

    most_buffered = 0

    def feed(self, data: bytes) -> list[bytes]:
        try:
            return super().feed(data)
        finally:
            RecordingLineFramer.most_buffered = max(self.most_buffered, self.buffered)


async def line_echo(conn: TCPConnection) -> None:
    chan = FramedChannel(conn, RecordingLineFramer(max_line_length=64 * 1024))
    try:
        async for line in chan:
            await chan.send(line)
    except MessageTooLargeError as exc:
        await conn.send_all(b"error: %s\n" % str(exc).encode())


async def test_a_ten_mib_line_gets_an_error_and_a_close_and_spares_the_others() -> None:
    with trio.fail_after(GUARD):
        async with running_tcp_server(line_echo) as (server, _):
            big = await open_tcp_stream("127.0.0.1", server.port)
            sent = 0
            received = bytearray()

            async def send_big_line() -> None:
                nonlocal sent
                chunk = b"x" * 65536
                try:
                    for _ in range(160):  # 10 MiB, no newline
                        await big.send_all(chunk)
                        sent += len(chunk)
                except trio.BrokenResourceError:
                    pass  # the server closed on us, as it should

            async def others(n: int) -> None:
                chan = await open_tcp_channel("127.0.0.1", server.port)
                for i in range(50):
                    await chan.send(b"%d:%d" % (n, i))
                    assert await chan.receive() == b"%d:%d" % (n, i)
                await chan.aclose()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_big_line)
                for n in range(5):
                    nursery.start_soon(others, n)
                # The close shows as EOF, or as a reset when the server closed with our
                # unread bytes in its buffer; the error line comes first either way.
                with contextlib.suppress(trio.BrokenResourceError):
                    async for data in big:
                        received += data
            await big.aclose()
    assert received.startswith(b"error: message of ")
    assert b"limit of 65536 bytes" in received
    assert sent < 10 * 1024 * 1024, "the server read the whole 10 MiB instead of closing"
    assert RecordingLineFramer.most_buffered <= 64 * 1024


async def test_handler_errors_close_only_that_connection() -> None:
    async def fragile(conn: TCPConnection) -> None:
        data = await conn.receive_some()
        if data == b"boom":
            raise RuntimeError("handler bug")
        await conn.send_all(data)

    with trio.fail_after(GUARD):
        async with running_tcp_server(fragile) as (server, _):
            bad = await open_tcp_stream("127.0.0.1", server.port)
            await bad.send_all(b"boom")
            assert await bad.receive_some() == b""
            good = await open_tcp_stream("127.0.0.1", server.port)
            await good.send_all(b"fine")
            assert await good.receive_some() == b"fine"
            assert server.statistics().handler_errors == 1
            await bad.aclose()
            await good.aclose()


async def test_a_reset_seen_inside_a_handlers_nursery_is_an_ended_connection_not_a_bug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ended = trio.Event()

    async def nursery_handler(conn: TCPConnection) -> None:
        try:
            await conn.send_all(b"hi")
            async with trio.open_nursery() as nursery:  # wraps what it raises in a group
                nursery.start_soon(conn.receive_some)
                await trio.sleep_forever()
        finally:
            ended.set()

    with trio.fail_after(GUARD):
        async with running_tcp_server(nursery_handler) as (server, _):
            with trio.socket.socket() as client:
                await client.connect(("127.0.0.1", server.port))
                assert await client.recv(2) == b"hi"
                reset_on_close(client)
            # closed with an RST: the handler's receive fails with ECONNRESET
            await ended.wait()
            assert server.statistics().handler_errors == 0
            assert "handler failed" not in caplog.text


async def test_tls_through_the_same_api() -> None:
    server_ctx, client_ctx = tls_contexts()
    with trio.fail_after(GUARD):
        async with running_tcp_server(line_echo, ssl_context=server_ctx) as (server, _):
            chan = await open_tcp_channel(
                "127.0.0.1", server.port, ssl_context=client_ctx, server_hostname="localhost"
            )
            assert isinstance(chan.stream, trio.SSLStream)
            await chan.send(b"over tls")
            assert await chan.receive() == b"over tls"
            await chan.aclose()
            with pytest.raises(ConnectError, match="TLS handshake"):
                await open_tcp_stream(
                    "127.0.0.1", server.port, ssl_context=ssl.create_default_context()
                )


async def test_idle_timeout_over_tls_counts_what_the_peer_sends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Under TLS the socket stream underneath hears of the data: a chatty TLS client is
    # kept, a silent one closed at exactly the timeout.
    server_ctx, client_ctx = tls_contexts()
    with trio.fail_after(1000):
        async with running_tcp_server(line_echo, ssl_context=server_ctx, idle_timeout=30) as (
            server,
            _,
        ):
            silent = await open_tcp_channel(
                "127.0.0.1", server.port, ssl_context=client_ctx, server_hostname="localhost"
            )
            chatty = await open_tcp_channel(
                "127.0.0.1", server.port, ssl_context=client_ctx, server_hostname="localhost"
            )
            start = trio.current_time()
            for i in range(3):
                await trio.sleep(20)
                await chatty.send(b"ping %d" % i)
                assert await chatty.receive() == b"ping %d" % i
            with pytest.raises((trio.EndOfChannel, trio.BrokenResourceError)):
                await silent.receive()
            assert trio.current_time() - start == pytest.approx(60)  # read after the close
            assert server.statistics().idle_timeouts == 1
            with pytest.raises((trio.EndOfChannel, trio.BrokenResourceError)):
                await chatty.receive()
            assert trio.current_time() - start == pytest.approx(90)
            await silent.aclose()
            await chatty.aclose()


async def test_bind_and_connect_errors_are_triosock_errors() -> None:
    with trio.fail_after(GUARD):
        async with running_tcp_server(echo_handler) as (server, _):
            with pytest.raises(
                BindError, match=rf"127\.0\.0\.1:{server.port}: address already in use"
            ):
                await serve_tcp(echo_handler, server.port)
        with pytest.raises(ConnectError, match=r"cannot connect to 127\.0\.0\.1:"):
            await open_tcp_stream("127.0.0.1", server.port)  # nobody listens any more
        with pytest.raises(ValueError, match="port must be"):
            await open_tcp_stream("127.0.0.1", 70000)
