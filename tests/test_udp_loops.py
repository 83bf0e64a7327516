"""UDP services that would answer each other forever: the loop rule and the reply rate.

One datagram forged to come from a service's own port (or from another service that
answers everything) used to start an exchange that ran at tens of thousands of
datagrams a second until the servers were killed. Forging a source address needs a raw
socket, so these tests build the IPv4 and UDP headers by hand and need root; they skip
otherwise. Timing runs on trio's virtual clock where the servers are in the test's own
process and a client waits for them: a datagram over loopback is in the receiving
socket before ``sendto`` returns, so the clock only jumps when every task waits for
time.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from triosock import UDPPeer, UDPServer, open_udp_channel, serve_udp
from triosock._cli._ports import DAYTIME_PORT
from triosock._cli._status_ask import fetch_status
from triosock._cli.chat import UDP_DEFAULT
from triosock._sansio.time import parse_ntp_packet_untrusted, sntp_request
from triosock._services.replies import REPLY_BURST, REPLY_RATE
from triosock._services.timeservice import daytime_udp_handler
from triosock._transport.udp.guards import REFUSAL_QUIET, REFUSALS_REMEMBERED
from triosock.services import refuse_server_ports, udp_echo_handler

from .clitools import cli_server
from .conftest import GUARD

Address = tuple[str, int]
LOCAL = "127.0.0.1"
CHAT_PORT = UDP_DEFAULT[1]


def forge(source: Address, destination: Address, payload: bytes = b"") -> None:
    """Send one IPv4 UDP datagram whose source is ``source``, whoever owns it."""
    if os.geteuid() != 0:
        pytest.skip("forging a datagram's source address takes a raw socket, that is root")
    # UDP checksum 0: "no checksum", allowed over IPv4 (RFC 768).
    udp = struct.pack("!HHHH", source[1], destination[1], 8 + len(payload), 0) + payload
    # Linux fills in the IP header's checksum and total length (raw(7)).
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,  # version 4, a 20-byte header
        0,
        20 + len(udp),
        0,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(source[0]),
        socket.inet_aton(destination[0]),
    )
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.sendto(ip + udp, (destination[0], 0))


def bound_socket(port: int) -> socket.socket:
    """A UDP socket on 127.0.0.1:``port`` (a privileged one takes root), non-blocking."""
    if port < 1024 and os.geteuid() != 0:
        pytest.skip(f"binding port {port} takes root")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((LOCAL, port))
    except OSError as exc:
        sock.close()
        pytest.skip(f"port {port} is taken on this machine: {exc}")
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def running(
    handler: Callable[[UDPPeer], Awaitable[object]], **options: Any
) -> AsyncIterator[UDPServer]:
    async with trio.open_nursery() as nursery:
        server: UDPServer = await nursery.start(
            functools.partial(serve_udp, handler, 0, grace_period=0, **options)
        )
        yield server
        nursery.cancel_scope.cancel()


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "loop request refused" in r.getMessage()]


# --- the loop rule --------------------------------------------------------------------------


async def test_a_datagram_forged_from_the_servers_own_port_is_refused_and_starts_no_loop(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "triosock.udp")
    with trio.fail_after(REFUSAL_QUIET + GUARD):  # virtual time
        async with (
            running(daytime_udp_handler) as server,
            await open_udp_channel(LOCAL, server.port) as client,
        ):
            itself = (LOCAL, server.port)
            forge(itself, itself)
            # The server reads in order: the client's answer comes after the forged one.
            await client.send(b"")
            await client.receive()
            first = server.statistics()
            # checked before the clock moves: a loop would keep it from jumping
            assert (first.datagrams_in, first.refused_source, first.datagrams_out) == (2, 1, 1)
            await trio.sleep(1.0)  # a loop would have sent tens of thousands by now
            forge(itself, itself)  # same episode: counted, not logged again
            await client.send(b"")
            await client.receive()
            second = server.statistics()
            await trio.sleep(REFUSAL_QUIET)  # quiet that long: the next one is news
            forge(itself, itself)
            await client.send(b"")
            await client.receive()
            third = server.statistics()
    assert (first.peers_total, first.dropped) == (1, 0)  # the forged address is no peer
    assert (second.refused_source, second.datagrams_out) == (2, 2)
    assert (third.refused_source, third.datagrams_out) == (3, 3)
    logged = refusals(caplog)
    assert len(logged) == 2, [r.getMessage() for r in logged]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in logged)
    assert f"from 127.0.0.1:{server.port}: source port {server.port} is this server's own port" in (
        logged[0].getMessage()
    )


async def test_time_serve_refuses_rfc868_and_daytime_forged_to_themselves() -> None:
    """The finding's shape, on ``time serve`` as users run it: one datagram from the
    daytime port to the daytime port (and the same for RFC 868) once made the process
    answer itself at tens of thousands of datagrams a second until it was killed."""
    args = ["time", "serve", "--sntp-port", "none", "--strftime-port", "none"]
    args += ["--rfc868-port", "0", "--daytime-port", "0", "--status", "127.0.0.1:0"]
    services = ["rfc868-time (udp)", "daytime (udp)"]
    with trio.fail_after(GUARD):
        async with cli_server(args, ready_lines=5) as server:
            status = (LOCAL, server.port("status (http)"))
            for service in services:
                itself = (LOCAL, server.port(service))
                forge(itself, itself)
                async with await open_udp_channel(*itself) as client:
                    await client.send(b"")  # answered after the forged one was handled
                    await client.receive()
            await trio.sleep(0.5)  # the window a loop would fill
            figures = await fetch_status(status)
    udp_listeners = [x for x in figures["listeners"] if x["transport"] == "udp"]
    assert len(udp_listeners) == 2
    for listener in udp_listeners:
        counts = (listener["datagrams_in"], listener["refused_source"], listener["datagrams_out"])
        assert counts == (2, 1, 1), listener


async def test_a_client_may_use_the_servers_port_number_on_another_address(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Bound to one address, the server refuses only its own: 127.0.0.2 is another host's
    address for it, and a reply there is no datagram to itself."""
    with trio.fail_after(GUARD):
        async with running(udp_echo_handler) as server:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                try:
                    other.bind(("127.0.0.2", server.port))
                except OSError as exc:
                    pytest.skip(f"127.0.0.2:{server.port} is taken: {exc}")
                other.sendto(b"same number", (LOCAL, server.port))
                await trio.lowlevel.wait_readable(other)
                assert other.recv(64) == b"same number"
            assert server.statistics().refused_source == 0


async def test_the_echo_command_refuses_privileged_ports_and_our_services_ports() -> None:
    """``echo serve --udp`` (a real process) adds the request/reply services' rule: no
    answer goes to a source port below 1024 or to the port of one of our services (the
    chat's: chat and echo once filled a room with an ever longer ``[ip:port] ...``
    line), and an ordinary client is served as before."""
    privileged = bound_socket(13)
    with privileged, trio.fail_after(GUARD):
        async with (
            cli_server(["echo", "serve", "--udp", "--port", "0"]) as server,
            await open_udp_channel(LOCAL, server.port("echo (udp)")) as client,
        ):
            echo = (LOCAL, server.port("echo (udp)"))
            privileged.sendto(b"from a server's port", echo)
            forge((LOCAL, DAYTIME_PORT), echo, b"from our daytime port")
            forge((LOCAL, CHAT_PORT), echo, b"[127.0.0.1:7007] from our chat's port")
            await client.send(b"an ordinary client")
            assert await client.receive() == b"an ordinary client"
            with pytest.raises(BlockingIOError):  # its datagram came before the client's
                privileged.recv(64)
            assert server.process.stderr is not None
            log = b""
            # logged before the client's echo was sent: in the pipe by now, or never
            with trio.move_on_after(2):
                while log.count(b"loop request refused") < 3:
                    log += await server.process.stderr.receive_some()
    assert b"from 127.0.0.1:13: source port 13 is below 1024" in log
    for port in (DAYTIME_PORT, CHAT_PORT):
        assert f"from 127.0.0.1:{port}: source port {port} is a port".encode() in log
    assert b"Traceback" not in log


async def test_sntp_answers_a_request_from_port_123_and_daytime_does_not() -> None:
    """ntpd sends its client requests from port 123, and NTP servers answer them: an SNTP
    server's reply (mode 4) is never answered, so it cannot loop. Daytime answers
    everything, so it refuses that port like every port below 1024."""
    ntp_port = bound_socket(123)
    args = ["time", "serve", "--rfc868-port", "none", "--strftime-port", "none"]
    with ntp_port, trio.fail_after(GUARD):
        async with cli_server([*args, "--daytime-port", "0", "--sntp-port", "0"], 3) as server:
            sntp = (LOCAL, server.port("sntp (udp)"))
            daytime = (LOCAL, server.port("daytime (udp)"))
            ntp_port.sendto(b"", daytime)
            ntp_port.sendto(sntp_request(1_700_000_000.0), sntp)
            await trio.lowlevel.wait_readable(ntp_port)
            reply, source = ntp_port.recvfrom(128)
            assert source == sntp
            assert parse_ntp_packet_untrusted(reply).mode == 4
            with pytest.raises(BlockingIOError):  # daytime's datagram came first
                ntp_port.recv(128)


# --- the reply rate ---------------------------------------------------------------------


async def test_echo_and_daytime_answering_each_other_slow_to_the_reply_rate() -> None:
    """Two services on ordinary ports, which no port rule can tell from clients, set off
    by one forged datagram: each sends at most REPLY_BURST + REPLY_RATE * t in t s.

    On the real clock: unpaced, the two would never leave the clock time to jump."""
    assert (REPLY_BURST, REPLY_RATE) == (100, 100.0)  # the numbers the README gives
    window = 1.0
    with trio.fail_after(GUARD):
        async with running(udp_echo_handler) as echo, running(daytime_udp_handler) as daytime:
            begun = trio.current_time()
            forge((LOCAL, echo.port), (LOCAL, daytime.port))
            await trio.sleep(window)
            sent = [echo.statistics().datagrams_out, daytime.statistics().datagrams_out]
            elapsed = trio.current_time() - begun
    for count in sent:
        # 100 at once, then 100 a second (and a datagram in flight at either end); a slow
        # machine may fall behind the rate a little, never ahead of it
        assert REPLY_BURST + REPLY_RATE * window * 0.8 <= count
        assert count <= REPLY_BURST + REPLY_RATE * elapsed + 1


async def test_a_burst_is_answered_at_once_and_the_rest_at_the_rate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    extra = 10
    with trio.fail_after(GUARD):
        async with (
            running(udp_echo_handler) as server,
            await open_udp_channel(LOCAL, server.port) as client,
        ):
            begun = trio.current_time()
            for n in range(REPLY_BURST + extra):
                await client.send(b"%d" % n)
            arrivals = []
            for n in range(REPLY_BURST + extra):
                assert await client.receive() == b"%d" % n
                arrivals.append(trio.current_time() - begun)
            stats = server.statistics()
    assert arrivals[REPLY_BURST - 1] == 0  # the burst: no wait at all
    for k in range(1, extra + 1):  # then one answer every 1 / REPLY_RATE s
        assert arrivals[REPLY_BURST - 1 + k] == pytest.approx(k / REPLY_RATE)
    assert (stats.datagrams_out, stats.dropped) == (REPLY_BURST + extra, 0)


async def test_a_client_within_the_rate_is_never_kept_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(GUARD):
        async with (
            running(udp_echo_handler) as server,
            await open_udp_channel(LOCAL, server.port) as client,
        ):
            for n in range(3 * REPLY_BURST):  # three bursts' worth, at the rate
                asked = trio.current_time()
                await client.send(b"%d" % n)
                assert await client.receive() == b"%d" % n
                assert trio.current_time() == asked
                await trio.sleep(1 / REPLY_RATE)


async def test_the_reply_rate_can_be_lifted(autojump_clock: trio.testing.MockClock) -> None:
    """Paced, the 50 past the burst would take half a second (a client's receive buffer
    holds a few hundred small datagrams: more would be dropped by its kernel)."""
    with trio.fail_after(GUARD):
        unpaced = functools.partial(udp_echo_handler, rate=None)
        async with (
            running(unpaced, queue_size=2 * REPLY_BURST) as server,
            await open_udp_channel(LOCAL, server.port) as client,
        ):
            for n in range(REPLY_BURST + 50):
                await client.send(b"%d" % n)
            for n in range(REPLY_BURST + 50):
                assert await client.receive() == b"%d" % n
            assert trio.current_time() == 0


async def test_the_echo_commands_reply_rate_option_paces_one_address() -> None:
    """``echo serve --udp --reply-rate 20`` (a real process): the burst, then 20 echoes a
    second, so the fifth past the burst comes at least a quarter of a second after the
    first echo."""
    extra, rate = 5, 20
    args = ["echo", "serve", "--udp", "--port", "0", "--reply-rate", str(rate)]
    with trio.fail_after(GUARD):
        async with (
            cli_server(args) as server,
            await open_udp_channel(LOCAL, server.port("echo (udp)")) as client,
        ):
            begun = trio.current_time()
            # Sent in waves: more than a peer's queue (64) sent at once may outrun the
            # handler, and the server drops what its queue cannot hold.
            half = REPLY_BURST // 2
            waves = [range(half), range(half, REPLY_BURST), range(REPLY_BURST, REPLY_BURST + extra)]
            for wave in waves:
                for n in wave:
                    await client.send(b"%d" % n)
                for n in wave:
                    assert await client.receive() == b"%d" % n
            took = trio.current_time() - begun
    assert took >= extra / rate - 0.01


async def test_refusals_remembered_for_the_log_are_bounded(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A flood of forged sources costs a log line each, and the server remembers at most
    REFUSALS_REMEMBERED of them."""
    caplog.set_level(logging.WARNING, "triosock.udp")
    sources = REFUSALS_REMEMBERED + 10
    with trio.fail_after(GUARD):
        async with (
            running(
                udp_echo_handler, refuse_source=refuse_server_ports(range(2000, 10000))
            ) as server,
            await open_udp_channel(LOCAL, server.port) as client,
        ):
            for port in range(2000, 2000 + sources):
                forge((LOCAL, port), (LOCAL, server.port))
            await client.send(b"after")
            assert await client.receive() == b"after"
            stats = server.statistics()
            remembered = len(server._loop_rule._refusals)
    assert (stats.refused_source, stats.datagrams_out, stats.peers_total) == (sources, 1, 1)
    assert remembered == REFUSALS_REMEMBERED == 1024
    assert len(refusals(caplog)) == sources
    assert "source port 2000 is a port of our own UDP services" in refusals(caplog)[0].getMessage()
