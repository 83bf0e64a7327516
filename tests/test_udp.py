"""serve_udp and the UDP client over real loopback sockets."""

from __future__ import annotations

import errno
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from triosock import (
    PeerUnreachableError,
    UDPChannel,
    UDPPeer,
    UDPServer,
    open_udp_channel,
    serve_udp,
)
from triosock._services.replies import REPLY_IDLE_TIMEOUT
from triosock._transport.udp import server as udp_server
from triosock._transport.udp import sockets as udp_sockets
from triosock.services import udp_echo_handler

from .conftest import GUARD


@asynccontextmanager
async def running_udp_server(
    handler: Callable[[UDPPeer], Awaitable[object]], **options: Any
) -> AsyncIterator[UDPServer]:
    options.setdefault("grace_period", 0)  # handlers here ignore the stop: end them at once
    async with trio.open_nursery() as nursery:
        server: UDPServer = await nursery.start(
            lambda task_status: serve_udp(handler, 0, task_status=task_status, **options)
        )
        yield server
        nursery.cancel_scope.cancel()


async def test_fifty_peers_each_in_its_own_task_see_only_their_own_datagrams() -> None:
    seen: dict[tuple[str, int], list[bytes]] = {}
    tasks: dict[tuple[str, int], trio.lowlevel.Task] = {}

    async def handler(peer: UDPPeer) -> None:
        tasks[peer.address] = trio.lowlevel.current_task()
        async for data in peer:
            seen.setdefault(peer.address, []).append(data)
            await peer.send(b"ack " + data)

    with trio.fail_after(GUARD):
        async with running_udp_server(handler) as server:
            clients = [await open_udp_channel("127.0.0.1", server.port) for _ in range(50)]

            async def talk(n: int) -> None:
                for i in range(20):
                    await clients[n].send(b"%d/%d" % (n, i))
                    assert await clients[n].receive() == b"ack %d/%d" % (n, i)

            async with trio.open_nursery() as nursery:
                for n in range(50):
                    nursery.start_soon(talk, n)
            for n, client in enumerate(clients):
                address = client.socket.getsockname()
                assert seen[address] == [b"%d/%d" % (n, i) for i in range(20)]
                await client.aclose()
            assert len(set(tasks.values())) == 50
            stats = server.statistics()
            assert (stats.peers, stats.datagrams_in, stats.datagrams_out) == (50, 1000, 1000)


async def test_a_silent_peer_expires_at_exactly_the_timeout_and_comes_back_fresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs: list[tuple[tuple[str, int], float]] = []
    ended: list[float] = []
    gone = trio.Event()

    async def handler(peer: UDPPeer) -> None:
        runs.append((peer.address, trio.current_time()))
        try:
            async for data in peer:
                await peer.send(data)
        finally:
            ended.append(trio.current_time())
            gone.set()

    with trio.fail_after(1000):
        async with running_udp_server(handler, peer_idle_timeout=10) as server:
            client = await open_udp_channel("127.0.0.1", server.port)
            await client.send(b"one")
            assert await client.receive() == b"one"
            start = trio.current_time()
            await trio.sleep(6)
            await client.send(b"two")  # life: the deadline moves to start + 16
            assert await client.receive() == b"two"
            await trio.testing.wait_all_tasks_blocked()
            assert server.statistics().peers == 1
            await gone.wait()
            assert ended[0] - start == pytest.approx(16)
            await trio.testing.wait_all_tasks_blocked()
            assert server.statistics().expired == 1
            assert server.statistics().peers == 0
            await client.send(b"back")
            assert await client.receive() == b"back"
            assert len(runs) == 2
            assert runs[0][0] == runs[1][0]
            await client.aclose()


async def test_ten_thousand_source_addresses_keep_the_table_at_its_maximum() -> None:
    started = 0

    async def hold(peer: UDPPeer) -> None:
        nonlocal started
        started += 1
        await trio.sleep_forever()

    with trio.fail_after(GUARD * 2):
        for when_full in ("refuse", "evict"):
            started = 0
            async with running_udp_server(hold, max_peers=100, when_full=when_full) as server:
                target = ("127.0.0.1", server.port)
                for batch in range(100):
                    for i in range(100):
                        # A distinct source address each: a new port on one of many
                        # loopback addresses.
                        n = batch * 100 + i
                        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                            sock.bind((f"127.1.{n // 250}.{n % 250 + 1}", 0))
                            sock.sendto(b"hello", target)
                    await trio.testing.wait_all_tasks_blocked()
                    assert server.statistics().peers <= 100
                stats = server.statistics()
                assert stats.datagrams_in == 10_000
                assert stats.peers == 100
                if when_full == "refuse":
                    assert stats.dropped_peer_limit == 9_900
                    assert started == 100
                else:
                    assert stats.evicted == 9_900
                    assert started == 10_000


async def test_a_peer_that_never_reads_starves_nobody() -> None:
    async def handler(peer: UDPPeer) -> None:
        first = await peer.receive()
        if first == b"lazy":
            await trio.sleep_forever()  # never reads again: its queue fills
        await peer.send(first)
        await udp_echo_handler(peer)

    with trio.fail_after(GUARD):
        async with running_udp_server(handler, queue_size=8) as server:
            lazy = await open_udp_channel("127.0.0.1", server.port)
            busy = await open_udp_channel("127.0.0.1", server.port)
            await lazy.send(b"lazy")
            for i in range(200):
                await lazy.send(b"flood %d" % i)
                await busy.send(b"busy %d" % i)
                assert await busy.receive() == b"busy %d" % i
            stats = server.statistics()
            assert stats.dropped_queue_full == 200 - 8
            await lazy.aclose()
            await busy.aclose()


async def test_bad_datagrams_are_dropped_or_delivered_never_fatal() -> None:
    with trio.fail_after(GUARD):
        async with running_udp_server(udp_echo_handler, max_datagram=100) as server:
            client = await open_udp_channel("127.0.0.1", server.port)
            await client.send(b"x" * 101)
            await client.send(b"")
            assert await client.receive() == b""
            await client.send(b"\xff\xfe not utf-8")
            assert await client.receive() == b"\xff\xfe not utf-8"
            assert server.statistics().dropped_oversize == 1
            await client.aclose()


async def test_stop_lets_handlers_say_bye() -> None:
    async def handler(peer: UDPPeer) -> None:
        with peer.stop_scope():
            async for data in peer:
                await peer.send(data)
        await peer.send(b"Bye!")

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: UDPServer = await nursery.start(
                lambda task_status: serve_udp(handler, 0, task_status=task_status)
            )
            clients = [await open_udp_channel("127.0.0.1", server.port) for _ in range(3)]
            for client in clients:
                await client.send(b"hi")
                assert await client.receive() == b"hi"
            server.stop()
        for client in clients:
            assert await client.receive() == b"Bye!"
            await client.aclose()


async def test_a_peers_datagrams_end_when_the_server_stops_after_the_queued_ones() -> None:
    # No stop scope needed: once the socket is read no more, receive() raises
    # EndOfChannel after what is queued, so an ``async for`` ends by itself.
    release = trio.Event()

    async def handler(peer: UDPPeer) -> None:
        first = await peer.receive()
        await peer.send(b"ack " + first)
        if first == b"ping":
            return
        await release.wait()  # meanwhile the next datagrams queue up
        rest = [data async for data in peer]
        await peer.send(b"%s then %s" % (first, b",".join(rest)))

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: UDPServer = await nursery.start(
                lambda task_status: serve_udp(handler, 0, task_status=task_status, grace_period=60)
            )
            client = await open_udp_channel("127.0.0.1", server.port)
            other = await open_udp_channel("127.0.0.1", server.port)
            await client.send(b"a")
            assert await client.receive() == b"ack a"
            for data in (b"b", b"c", b"d"):
                await client.send(data)
            await other.send(b"ping")  # read after b, c and d: they are queued by now
            assert await other.receive() == b"ack ping"
            server.stop()
            release.set()
            assert await client.receive() == b"a then b,c,d"
        await client.aclose()
        await other.aclose()


async def test_a_peer_has_one_receiver_at_a_time() -> None:
    async def handler(peer: UDPPeer) -> None:
        await peer.receive()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await peer.receive()
            await peer.send(b"busy, as it should be")
            nursery.cancel_scope.cancel()

    with trio.fail_after(GUARD):
        async with running_udp_server(handler) as server:
            client = await open_udp_channel("127.0.0.1", server.port)
            await client.send(b"hello")
            assert await client.receive() == b"busy, as it should be"
            await client.aclose()


async def test_icmp_port_unreachable_is_a_clear_error() -> None:
    with trio.fail_after(GUARD):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        client = await open_udp_channel("127.0.0.1", port)
        await client.send(b"anyone?")
        with pytest.raises(PeerUnreachableError, match=r"nothing listens at 127\.0\.0\.1"):
            await client.receive()
        await client.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await client.receive()


def where(client: UDPChannel) -> tuple[str, int]:
    """The client's address, as the server sees it."""
    host, port = client.socket.getsockname()[:2]
    return (host, port)


async def test_a_new_address_evicts_the_least_recently_active_peer_and_cancels_its_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cancelled: list[tuple[str, int]] = []

    async def handler(peer: UDPPeer) -> None:
        try:
            async for _ in peer:
                pass
        except trio.Cancelled:
            cancelled.append(peer.address)
            raise

    with trio.fail_after(100):
        async with running_udp_server(handler, max_peers=3, when_full="evict") as server:
            clients = [await open_udp_channel("127.0.0.1", server.port) for _ in range(4)]
            a, b, c, d = clients
            for client in (a, b, c):  # a is the least recently active...
                await client.send(b"hello")
                await trio.sleep(1)
            await a.send(b"again")  # ...until it speaks again: now b is
            await trio.sleep(1)
            await d.send(b"new")  # the table is full: b goes
            await trio.testing.wait_all_tasks_blocked()
            b_address = b.socket.getsockname()
            assert cancelled == [(b_address[0], b_address[1])]
            assert server.statistics().evicted == 1
            kept = {peer.address for peer in server.peers()}
            assert kept == {
                (x.socket.getsockname()[0], x.socket.getsockname()[1]) for x in (a, c, d)
            }
            for client in clients:
                await client.aclose()


async def test_a_request_reply_peer_is_forgotten_after_its_quiet_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # With the server's defaults (no idle timeout, refuse when full), a request/reply
    # handler still frees its entry: one-shot clients never fill the table.
    with trio.fail_after(1000):
        async with running_udp_server(udp_echo_handler, max_peers=2) as server:
            for n in range(5):
                client = await open_udp_channel("127.0.0.1", server.port)
                await client.send(b"ping %d" % n)
                assert await client.receive() == b"ping %d" % n
                await client.aclose()
                assert server.statistics().peers <= 2
                # Quiet: its entry is freed within a quarter of the time more.
                await trio.sleep(REPLY_IDLE_TIMEOUT * 1.25 + 0.01)
                assert server.statistics().peers == 0
            assert server.statistics().expired == 5
            assert server.statistics().dropped_peer_limit == 0


class FailingSocket:
    """The server's socket, but recvfrom always fails (and counts how often it is asked)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.calls = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
        self.calls += 1
        if self.calls > 10_000:  # a spinning loop: fail the test instead of hanging it
            raise RuntimeError("the receive loop is spinning on a socket error")
        raise OSError(errno.EIO, "input/output error")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def __enter__(self) -> FailingSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


def serve_on(wrapper: type[FailingSocket], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make serve_udp bind its socket as usual but use it through ``wrapper``; the list
    receives each wrapped socket."""
    sockets: list[Any] = []
    bind = udp_sockets.bind_udp

    async def bind_wrapped(host: str, port: int, reuse_port: bool = False) -> Any:
        sockets.append(wrapper(await bind(host, port, reuse_port)))
        return sockets[-1]

    monkeypatch.setattr(udp_server, "bind_udp", bind_wrapped)
    return sockets


async def test_a_persistent_socket_error_is_retried_with_a_pause_not_a_spin(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sockets = serve_on(FailingSocket, monkeypatch)
    with trio.fail_after(1000):
        async with running_udp_server(udp_echo_handler) as server:
            (failing,) = sockets
            client = await open_udp_channel("127.0.0.1", server.port)
            await client.send(b"makes the socket readable, for ever")
            start = trio.current_time()
            await trio.sleep(60)
            calls = failing.calls
            await client.aclose()
    # A pause growing from 1 ms to 1 s: ~10 tries in the first second, then one a second.
    assert 50 < calls < 100, calls
    assert trio.current_time() - start >= 60
    assert "recvfrom failed (1 in a row), retrying" in caplog.text


class FloodingSocket(FailingSocket):
    """The server's socket, but recvfrom always has a datagram: a flood that never ends
    (from 1,000 addresses), up to a bound that fails the test instead of hanging it."""

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
        self.calls += 1
        if self.calls > 1_000_000:
            raise RuntimeError("the receive loop never let anybody else run")
        return b"flood", ("127.0.0.9", 1000 + self.calls % 1000)


async def test_a_flood_neither_starves_the_other_tasks_nor_delays_a_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sockets = serve_on(FloodingSocket, monkeypatch)

    async def count(peer: UDPPeer) -> None:
        async for _ in peer:
            pass

    with trio.fail_after(GUARD):
        async with running_udp_server(count) as server:
            (flood,) = sockets
            client = await open_udp_channel("127.0.0.1", server.port)
            await client.send(b"makes the socket readable, for ever")
            for _ in range(100):  # this task runs on, flood or not
                await trio.lowlevel.checkpoint()
            server.stop()
        await client.aclose()
    # Stopped long before the bound, with the peers' tasks served meanwhile.
    assert 0 < flood.calls < 1_000_000
    assert server.statistics().datagrams_in == flood.calls


async def test_a_broken_resource_inside_a_handlers_nursery_ends_the_peer_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ended = trio.Event()

    async def handler(peer: UDPPeer) -> None:
        async def fail() -> None:
            await peer.receive()
            raise trio.BrokenResourceError("the peer went away")

        try:
            async with trio.open_nursery() as nursery:  # so it arrives in an ExceptionGroup
                nursery.start_soon(fail)
        finally:
            ended.set()

    with trio.fail_after(GUARD):
        async with running_udp_server(handler) as server:
            client = await open_udp_channel("127.0.0.1", server.port)
            await client.send(b"hello")
            await ended.wait()
            await trio.testing.wait_all_tasks_blocked()
            await client.aclose()
    assert server.statistics().handler_errors == 0
    assert "handler failed" not in caplog.text


@pytest.mark.parametrize("receive_buffer", [None, udp_sockets.DEFAULT_RECEIVE_BUFFER])
async def test_a_burst_while_the_server_is_busy_waits_in_a_big_enough_receive_buffer(
    receive_buffer: int | None,
) -> None:
    """2,000 datagrams (about 2 MB of kernel memory on loopback) arrive while the server
    cannot read: the system's default buffer (about 208 KiB) drops most of them before
    the server sees them, and the status says how many; the server's 4 MiB holds all."""
    burst, received = 2000, 0

    async def count(peer: UDPPeer) -> None:
        nonlocal received
        async for _ in peer:
            received += 1

    with trio.fail_after(GUARD):
        options: dict[str, Any] = {"queue_size": burst, "receive_buffer": receive_buffer}
        async with running_udp_server(count, **options) as server:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
                for i in range(burst):  # no checkpoint: the server cannot read meanwhile
                    client.sendto(b"%5d" % i + b"x" * 195, ("127.0.0.1", server.port))
            await trio.testing.wait_all_tasks_blocked()  # it has read all the kernel held
            drops = server.kernel_drops()
            assert drops is not None  # Linux says
            assert received == server.statistics().datagrams_in == burst - drops
            if receive_buffer is None:
                assert server.receive_buffer < 1024 * 1024
                assert drops > burst // 2, drops
            else:
                assert server.receive_buffer >= receive_buffer  # (Linux reports double)
                assert drops == 0
            server.stop()
