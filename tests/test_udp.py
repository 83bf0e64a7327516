"""serve_udp and the UDP client over real loopback sockets."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from triosock import (
    PeerUnreachableError,
    UDPPeer,
    UDPServer,
    open_udp_channel,
    serve_udp,
    udp_echo_handler,
)

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
