"""The time services: each handler over real loopback sockets, then real clients.

Handlers run with a fixed clock, so their answers are exact. The acceptance tests run
``python -m triosock time serve`` with every port 0 and drive it with rdate, chronyd, nc
and ``time query``; they compare with the system clock, generously (2 s).
"""

from __future__ import annotations

import datetime
import functools
import itertools
import os
import re
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from triosock import (
    FramedChannel,
    LineFramer,
    TCPConnection,
    UDPChannel,
    UDPPeer,
    UDPServer,
    open_tcp_channel,
    open_tcp_stream,
    open_udp_channel,
    serve_udp,
)
from triosock._sansio.time import (
    decode_rfc868,
    format_daytime,
    ntp_to_unix,
    parse_ntp_packet_untrusted,
    sntp_request,
    unix_to_ntp,
)
from triosock._services import timeservice
from triosock._services.timeservice import (
    STRFTIME_MAX_LINE,
    daytime_tcp_handler,
    daytime_udp_handler,
    rfc868_tcp_handler,
    rfc868_udp_handler,
    sntp_udp_handler,
    strftime_tcp_handler,
    strftime_udp_handler,
)

from .clitools import PYTHON, ServerProcess, cli_server, need, run
from .conftest import GUARD, running_tcp_server

#: 2023-11-14 22:13:20.25 UTC, a Tuesday.
FIXED = 1_700_000_000.25
#: How far a real client's reading may be from the system clock.
TOLERANCE = 2.0


def fixed_clock() -> float:
    return FIXED


def ticking_clock(step: float = 0.5) -> Callable[[], float]:
    """A clock that moves ``step`` seconds on every reading, from FIXED."""
    readings = itertools.count()
    return lambda: FIXED + step * next(readings)


@asynccontextmanager
async def running_udp_server(
    handler: Callable[[UDPPeer], Awaitable[object]], **options: Any
) -> AsyncIterator[UDPServer]:
    async with trio.open_nursery() as nursery:
        server: UDPServer = await nursery.start(functools.partial(serve_udp, handler, 0, **options))
        yield server
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def udp_service(
    handler: Callable[[UDPPeer], Awaitable[object]], **options: Any
) -> AsyncIterator[tuple[UDPServer, UDPChannel]]:
    """A UDP server running ``handler`` and a client channel connected to it."""
    async with (
        running_udp_server(handler, **options) as server,
        await open_udp_channel("127.0.0.1", server.port) as chan,
    ):
        yield server, chan


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some():
        data += chunk
    return bytes(data)


async def ask(chan: UDPChannel, request: bytes) -> bytes:
    await chan.send(request)
    return await chan.receive()


# --- RFC 868 and RFC 867 over TCP --------------------------------------------------------


async def test_rfc868_tcp_sends_four_bytes_and_closes() -> None:
    with trio.fail_after(GUARD):
        handler = functools.partial(rfc868_tcp_handler, clock=fixed_clock)
        async with running_tcp_server(handler) as (server, _):
            stream = await open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                data = await read_to_eof(stream)
    assert data == (2_208_988_800 + 1_700_000_000).to_bytes(4, "big")
    assert decode_rfc868(data) == 1_700_000_000


async def test_daytime_tcp_sends_one_line_and_closes() -> None:
    with trio.fail_after(GUARD):
        handler = functools.partial(daytime_tcp_handler, clock=fixed_clock)
        async with running_tcp_server(handler) as (server, _):
            stream = await open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                data = await read_to_eof(stream)
    assert data == b"Tuesday, November 14, 2023 22:13:20-UTC\r\n"


async def test_what_a_tcp_client_sends_is_thrown_away_and_the_answer_survives() -> None:
    # Closing a socket with unread data sends a reset, which can destroy the answer:
    # the server reads and discards until the client closes.
    with trio.fail_after(GUARD):
        handler = functools.partial(daytime_tcp_handler, clock=fixed_clock)
        async with running_tcp_server(handler) as (server, _):
            stream = await open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(b"x" * 200_000)
                data = await read_to_eof(stream)
                await stream.send_all(b"more after the answer\n")
    assert data == format_daytime(FIXED)


async def test_a_tcp_client_that_never_closes_is_closed_after_the_linger(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finished = trio.Event()
    took = 0.0

    async def handler(conn: TCPConnection) -> None:
        nonlocal took
        start = trio.current_time()
        await rfc868_tcp_handler(conn, clock=fixed_clock)
        took = trio.current_time() - start
        finished.set()

    with trio.fail_after(GUARD):
        async with running_tcp_server(handler) as (server, _):
            stream = await open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                assert await read_to_eof(stream) == (3_908_988_800).to_bytes(4, "big")
                await finished.wait()  # the client is still open
    assert took == pytest.approx(timeservice.LINGER)


async def test_a_tcp_client_that_closes_frees_its_handler_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finished = trio.Event()
    took = 0.0

    async def handler(conn: TCPConnection) -> None:
        nonlocal took
        start = trio.current_time()
        await daytime_tcp_handler(conn, clock=fixed_clock)
        took = trio.current_time() - start
        finished.set()

    with trio.fail_after(GUARD):
        async with running_tcp_server(handler) as (server, _):
            stream = await open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await read_to_eof(stream)
            await finished.wait()
    assert took == 0  # on virtual time: no linger at all


# --- RFC 868 and RFC 867 over UDP --------------------------------------------------------


async def test_rfc868_udp_answers_every_datagram_including_empty_ones() -> None:
    with trio.fail_after(GUARD):
        handler = functools.partial(rfc868_udp_handler, clock=fixed_clock)
        async with udp_service(handler) as (_server, chan):
            assert await ask(chan, b"") == (3_908_988_800).to_bytes(4, "big")
            assert await ask(chan, b"anything at all\n") == (3_908_988_800).to_bytes(4, "big")


async def test_daytime_udp_answers_every_datagram() -> None:
    with trio.fail_after(GUARD):
        handler = functools.partial(daytime_udp_handler, clock=fixed_clock)
        async with udp_service(handler) as (_server, chan):
            for request in (b"", b"\n", bytes(range(256))):
                assert await ask(chan, request) == b"Tuesday, November 14, 2023 22:13:20-UTC\r\n"


@pytest.mark.parametrize(
    "handler",
    [rfc868_udp_handler, daytime_udp_handler, strftime_udp_handler, sntp_udp_handler],
)
async def test_a_burst_gets_one_answer_per_datagram(
    handler: Callable[..., Awaitable[None]],
) -> None:
    request = sntp_request(FIXED) if handler is sntp_udp_handler else b"%H:%M"
    with trio.fail_after(GUARD):
        served = functools.partial(handler, clock=fixed_clock)
        async with udp_service(served, queue_size=64) as (server, chan):
            for _ in range(50):
                await chan.send(request)
            replies = [await chan.receive() for _ in range(50)]
            stats = server.statistics()
    assert len(set(replies)) == 1
    assert (stats.datagrams_in, stats.datagrams_out, stats.dropped) == (50, 50, 0)


# --- SNTP --------------------------------------------------------------------------------


async def test_sntp_reply_fields() -> None:
    request = sntp_request(FIXED - 0.125)
    with trio.fail_after(GUARD):
        handler = functools.partial(sntp_udp_handler, clock=ticking_clock(0.5))
        async with udp_service(handler) as (_server, chan):
            first = parse_ntp_packet_untrusted(await ask(chan, request))
            second = parse_ntp_packet_untrusted(await ask(chan, request))
    assert (first.leap, first.version, first.mode, first.stratum) == (0, 4, 4, 1)
    assert first.originate_ts == unix_to_ntp(FIXED - 0.125)
    # The receive time is read as the request is handled, the transmit time after it.
    assert ntp_to_unix(first.receive_ts) == FIXED
    assert ntp_to_unix(first.transmit_ts) == FIXED + 0.5
    assert ntp_to_unix(second.receive_ts) == FIXED + 1.0
    assert ntp_to_unix(second.transmit_ts) == FIXED + 1.5
    assert ntp_to_unix(first.reference_ts) == 1_700_000_000
    assert first.reference_id == b"LOCL"


async def test_sntp_ignores_garbage_and_goes_on_serving() -> None:
    server_reply = bytearray(sntp_request(FIXED))
    server_reply[0] = 0b00_100_100  # version 4, mode 4: a reply, not a request
    version_0 = bytearray(sntp_request(FIXED))
    version_0[0] = 0b00_000_011
    garbage = [b"", b"\x23", b"x" * 47, bytes(server_reply), bytes(version_0), b"\xff" * 48]
    request = sntp_request(FIXED + 7)
    with trio.fail_after(GUARD):
        handler = functools.partial(sntp_udp_handler, clock=fixed_clock)
        async with udp_service(handler) as (server, chan):
            for junk in garbage:
                await chan.send(junk)
            # Datagrams from one peer are handled in order: the first answer must be
            # the real request's, so none of the garbage was answered.
            reply = parse_ntp_packet_untrusted(await ask(chan, request + b"extension"))
            stats = server.statistics()
    assert reply.originate_ts == unix_to_ntp(FIXED + 7)
    assert stats.handler_errors == 0
    assert stats.datagrams_out == 1


# --- strftime ----------------------------------------------------------------------------


async def test_strftime_udp_formats_and_refuses() -> None:
    with trio.fail_after(GUARD):
        handler = functools.partial(strftime_udp_handler, clock=fixed_clock)
        async with udp_service(handler) as (server, chan):
            assert await ask(chan, b"%H:%M:%S") == b"22:13:20"
            assert await ask(chan, b"") == b"2023-11-14 22:13:20"
            assert await ask(chan, b"%A %B %d\r\n") == b"Tuesday November 14"
            assert await ask(chan, b"%Q") == b"error: unsupported directive %Q"
            assert await ask(chan, b"\xff") == b"error: format is not valid UTF-8"
            huge = b"%Y" * 5000
            refused = await ask(chan, huge)
            assert refused.startswith(b"error: ")
            assert len(refused) <= max(64, 4 * len(huge))
            # A reply may be max(64, 4 x the request) bytes: 24 for 2 is fine, 480 for
            # 40 is not.
            assert await ask(chan, b"%c") == b"Tue Nov 14 22:13:20 2023"
            assert await ask(chan, b"%c" * 20) == b"error: reply longer than 160 bytes"
            assert await ask(chan, b"%s") == b"1700000000"
            stats = server.statistics()
    assert stats.handler_errors == 0


async def test_strftime_tcp_answers_line_for_line_and_half_closes() -> None:
    with trio.fail_after(GUARD):
        handler = functools.partial(strftime_tcp_handler, clock=fixed_clock)
        async with running_tcp_server(handler) as (server, _):
            stream = await open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(b"%H:%M\r\n%Q\n\n%Y")
                await stream.send_eof()
                data = await read_to_eof(stream)
    assert data == b"22:13\nerror: unsupported directive %Q\n2023-11-14 22:13:20\n2023\n"


async def test_strftime_tcp_line_by_line_over_a_framed_channel() -> None:
    with trio.fail_after(GUARD):
        handler = functools.partial(strftime_tcp_handler, clock=fixed_clock)
        async with (
            running_tcp_server(handler) as (server, _),
            await open_tcp_channel("127.0.0.1", server.port) as chan,
        ):
            for request, expected in [(b"%j", b"318"), (b"%Z%z", b"UTC+0000")]:
                await chan.send(request)
                assert await chan.receive() == expected


async def test_strftime_tcp_too_long_a_line_gets_an_error_in_its_place_and_service_goes_on() -> (
    None
):
    with trio.fail_after(GUARD):
        handler = functools.partial(strftime_tcp_handler, clock=fixed_clock)
        async with running_tcp_server(handler) as (server, _):
            stream = await open_tcp_stream("127.0.0.1", server.port)
            chan = FramedChannel(stream, LineFramer())
            async with chan:
                await chan.send(b"%H")
                await chan.send(b"a" * (STRFTIME_MAX_LINE + 1))
                await chan.send(b"%M")
                await chan.send(b"b" * (10 * STRFTIME_MAX_LINE))
                await chan.send(b"%Y")
                await chan.send_eof()
                answers = [answer async for answer in chan]
    error = b"error: line longer than %d bytes" % STRFTIME_MAX_LINE
    assert answers == [b"22", error, b"13", error, b"2023"]


# --- the command line and real clients ---------------------------------------------------

SERVICES = [
    "rfc868-time (tcp)",
    "rfc868-time (udp)",
    "daytime (tcp)",
    "daytime (udp)",
    "sntp (udp)",
    "strftime (udp)",
    "strftime (tcp)",
]
ALL_ON_PORT_0 = [
    "time",
    "serve",
    "--rfc868-port",
    "0",
    "--daytime-port",
    "0",
    "--sntp-port",
    "0",
    "--strftime-port",
    "0",
]


@asynccontextmanager
async def time_server() -> AsyncIterator[ServerProcess]:
    async with cli_server(ALL_ON_PORT_0, ready_lines=len(SERVICES)) as server:
        yield server


async def run_client(argv: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run a real client in the C locale and UTC, so its output is parseable."""
    env = {**os.environ, "TZ": "UTC", "LC_ALL": "C"}
    return await trio.run_process(
        argv, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False, env=env
    )


def assert_near_now(when: float, before: float, after: float) -> None:
    """``when`` (a client's reading) agrees with the system clock between before/after."""
    assert before - TOLERANCE <= when <= after + TOLERANCE, (when, before, after)


# rdate -p prints ctime-like output, e.g. "Mon Nov 23 11:13:52 UTC 2026".
RDATE_TIME = re.compile(r"(\w{3}) +(\d{1,2}) (\d\d:\d\d:\d\d) (?:\S+ )?(\d{4})")


def parse_rdate(output: bytes) -> float:
    match = RDATE_TIME.search(output.decode())
    assert match, output
    month, day, clock, year = match.groups()
    parsed = datetime.datetime.strptime(f"{month} {day} {clock} {year}", "%b %d %H:%M:%S %Y")
    return parsed.replace(tzinfo=datetime.UTC).timestamp()


async def test_startup_lines_name_every_service() -> None:
    with trio.fail_after(GUARD):
        async with time_server() as server:
            for line, service in zip(server.lines, SERVICES, strict=True):
                assert line.startswith(f"{service} listening on 127.0.0.1:"), server.lines
            ports = {server.port(service) for service in SERVICES}
    assert 0 not in ports


@pytest.mark.parametrize(
    ("service", "options"),
    [("rfc868-time (tcp)", []), ("rfc868-time (udp)", ["-u"]), ("sntp (udp)", ["-n"])],
)
async def test_rdate_reads_the_time(service: str, options: list[str]) -> None:
    rdate = need("rdate")
    with trio.fail_after(GUARD):
        async with time_server() as server:
            port = server.port(service)
            before = time.time()
            result = await run_client([rdate, "-p", *options, "-o", str(port), "127.0.0.1"])
            after = time.time()
    assert result.returncode == 0, result
    # rdate prints whole seconds, truncated.
    assert_near_now(parse_rdate(result.stdout), before - 1, after)


async def test_chronyd_accepts_the_sntp_server() -> None:
    chronyd = need("chronyd")
    with trio.fail_after(GUARD):
        async with time_server() as server:
            port = server.port("sntp (udp)")
            # -Q: query the server and print the offset, never touch the clock (no root
            # needed); -t: give up after 10 s rather than wait for ever.
            result = await run_client(
                [chronyd, "-Q", "-t", "10", f"server 127.0.0.1 port {port} iburst maxsamples 1"]
            )
    log = (result.stdout + result.stderr).decode(errors="replace")
    fatal = [line for line in log.splitlines() if "Fatal error" in line]
    if result.returncode != 0 and fatal:
        # Only a start-up failure of chronyd itself (privileges, seccomp, ...) skips;
        # an answer it did not like ends in "Timeout reached" or "No suitable source".
        pytest.skip(f"chronyd cannot run in this sandbox: {fatal[0]}")
    assert result.returncode == 0, log
    offset = re.search(r"System clock wrong by (-?[\d.]+) seconds", log)
    assert offset, log
    assert abs(float(offset.group(1))) < TOLERANCE, log


async def test_nc_gets_daytime_over_udp_and_tcp() -> None:
    nc = need("nc")
    with trio.fail_after(GUARD):
        async with time_server() as server:
            udp_port = server.port("daytime (udp)")
            tcp_port = server.port("daytime (tcp)")
            before = time.time()
            over_udp = await run_client(
                [nc, "-u", "-w1", "127.0.0.1", str(udp_port)], stdin=b"what time is it?\n"
            )
            over_tcp = await run_client([nc, "-N", "127.0.0.1", str(tcp_port)])
            after = time.time()
    for result in (over_udp, over_tcp):
        assert result.returncode == 0, result
        line = result.stdout.decode()
        assert line.endswith("-UTC\r\n"), line
        parsed = datetime.datetime.strptime(line.strip(), "%A, %B %d, %Y %H:%M:%S-UTC")
        when = parsed.replace(tzinfo=datetime.UTC).timestamp()
        assert_near_now(when, before - 1, after)


async def test_time_query_end_to_end() -> None:
    with trio.fail_after(GUARD):
        async with time_server() as server:
            where = f"127.0.0.1:{server.port('strftime (udp)')}"
            query = [PYTHON, "-m", "triosock", "time", "query", where]
            before = time.time()
            default = await run(query)
            epoch = await run([*query, "%s"])
            after = time.time()
            bad = await run([*query, "%Q"])
            oversized = await run([*query, "%Y" * 300])
            still_serving = await run([*query, "%Y-%m-%dT%H:%M:%SZ"])
            over_tcp = await run(
                [need("nc"), "-N", "127.0.0.1", str(server.port("strftime (tcp)"))],
                stdin=b"%Q\r\n%s\r\n",
            )
    assert default.returncode == 0, default
    assert re.fullmatch(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n", default.stdout), default.stdout
    assert epoch.returncode == 0, epoch
    assert_near_now(int(epoch.stdout), before - 1, after)
    for refused, reason in [(bad, b"unsupported directive %Q"), (oversized, b"longer than")]:
        assert refused.returncode != 0
        assert refused.stdout == b""
        assert refused.stderr.startswith(b"triosock: error: the server refused the format: ")
        assert reason in refused.stderr
        assert refused.stderr.count(b"\n") == 1
    assert still_serving.returncode == 0, still_serving
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n", still_serving.stdout)
    error_line, epoch_line, end = over_tcp.stdout.split(b"\n")
    assert (error_line, end) == (b"error: unsupported directive %Q", b"")
    assert_near_now(int(epoch_line), before - 1, time.time())


async def test_time_query_without_an_answer_times_out_with_one_line() -> None:
    with trio.fail_after(GUARD), trio.socket.socket(type=socket.SOCK_DGRAM) as mute:
        await mute.bind(("127.0.0.1", 0))
        port = mute.getsockname()[1]
        result = await run(
            [PYTHON, "-m", "triosock", "time", "query", f"127.0.0.1:{port}", "--timeout", "0.2"]
        )
    assert result.returncode != 0
    assert (
        result.stderr == f"triosock: error: no answer from 127.0.0.1:{port} within 0.2 s\n".encode()
    )


async def test_services_can_be_turned_off() -> None:
    with trio.fail_after(GUARD):
        only_strftime = [
            "time",
            "serve",
            "--rfc868-port",
            "none",
            "--daytime-port",
            "off",
            "--sntp-port",
            "none",
            "--strftime-port",
            "0",
            "--status",
            "none",
        ]
        async with cli_server(only_strftime, ready_lines=2) as server:
            server.process.send_signal(2)
            assert await server.process.wait() == 0
            assert server.process.stdout is not None
            rest = await read_to_eof(server.process.stdout)
        assert [line.split(" listening")[0] for line in server.lines] == [
            "strftime (udp)",
            "strftime (tcp)",
        ]
        assert rest == b"SIGINT received, shutting down\n"
        nothing = await run(
            [
                PYTHON,
                "-m",
                "triosock",
                "time",
                "serve",
                *(f"--{s}-port=none" for s in ("rfc868", "daytime", "sntp", "strftime")),
            ]
        )
    # A command that asks for nothing is a command-line mistake: status 2, its usage line.
    assert nothing.returncode == 2
    assert nothing.stderr == (
        b"python -m triosock time serve: error: every time service is turned off; nothing "
        b"to serve (see python -m triosock time serve --help)\n"
    )
