"""serve_http over real loopback sockets: curl, and a raw client for what curl won't send."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import h11
import pytest
import trio
import trio.testing

from triosock import Request, Response, TCPServer, serve_http

from .conftest import GUARD, rss

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


async def hello(request: Request) -> Response:
    if request.path == "/boom":
        raise RuntimeError("the handler broke")
    text = f"{request.method} {request.path} {len(request.body)}\n"
    return Response.text(200, text)


_OPEN: list[trio.socket.SocketType] = []  # RawClient sockets, closed even when a test fails


@asynccontextmanager
async def running_http_server(**options: Any) -> AsyncIterator[TCPServer]:
    handler = options.pop("handler", hello)
    try:
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_http(handler, 0, task_status=task_status, **options)
            )
            yield server
            nursery.cancel_scope.cancel()
    finally:
        while _OPEN:
            _OPEN.pop().close()


async def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        ["curl", "-sS", "--max-time", "10", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


class RawClient:
    """A socket that writes requests as given and parses the responses with h11."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.unparsed = b""

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        """A connected client; the test's server closes it when the test ends."""
        sock = trio.socket.socket()
        _OPEN.append(sock)
        await sock.connect(("127.0.0.1", port))
        return cls(sock)

    async def response(self, method: str = "GET") -> tuple[h11.Response, bytes]:
        """The next whole response (to a ``method`` request, for HEAD's sake)."""
        parser = h11.Connection(h11.CLIENT)  # one a response: the requests went raw
        parser.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
        parser.send(h11.EndOfMessage())
        if self.unparsed:  # (receive_data of b"" would mean the end of the stream)
            parser.receive_data(self.unparsed)
        head: h11.Response | None = None
        body = b""
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                parser.receive_data(await self.sock.recv(65536))
            elif isinstance(event, h11.InformationalResponse):
                continue
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                self.unparsed = parser.trailing_data[0]
                return head, body
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def closed(self) -> bool:
        """True when the server has closed the connection (reads end)."""
        return not self.unparsed and await self.sock.recv(1) == b""


def header(response: h11.Response, name: str) -> str | None:
    for key, value in response.headers:
        if key.decode() == name:
            return value.decode()
    return None


@needs_curl
async def test_curl_get_head_and_keep_alive_reuse() -> None:
    with trio.fail_after(GUARD):
        async with running_http_server() as server:
            base = f"http://127.0.0.1:{server.port}"
            got = await curl(f"{base}/a%20b?x=1")
            assert got.returncode == 0
            assert got.stdout == b"GET /a b 0\n"
            head = await curl("-I", f"{base}/x")
            assert head.returncode == 0
            assert head.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"content-length: 10\r\n" in head.stdout.lower()  # "HEAD /x 0\n"
            assert head.stdout.endswith(b"\r\n\r\n")  # and no body
            both = await curl("-v", f"{base}/one", f"{base}/two")
            assert both.stdout == b"GET /one 0\nGET /two 0\n"
            assert b"existing connection" in both.stderr  # the second reused the first's


@needs_curl
async def test_curl_body_over_the_cap_gets_413_and_under_it_is_read() -> None:
    with trio.fail_after(GUARD):
        async with running_http_server(max_body=1000) as server:
            url = f"http://127.0.0.1:{server.port}/up"
            small = await curl("--data-binary", "x" * 1000, url)
            assert small.stdout == b"POST /up 1000\n"
            big = await curl(
                "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "x" * 5000, url
            )
            assert big.stdout == b"413"


async def test_pipelined_requests_are_answered_in_order() -> None:
    with trio.fail_after(GUARD):
        async with running_http_server() as server:
            client = await RawClient.connect(server.port)
            await client.sock.send(
                b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            bodies = [(await client.response())[1] for _ in range(3)]
            assert bodies == [b"GET /1 0\n", b"POST /2 3\n", b"GET /3 0\n"]
            assert await client.closed()


async def test_http_1_0_gets_its_answer_and_the_close() -> None:
    with trio.fail_after(GUARD):
        async with running_http_server() as server:
            client = await RawClient.connect(server.port)
            await client.sock.send(b"GET /old HTTP/1.0\r\n\r\n")
            response, body = await client.response()
            assert (response.status_code, body) == (200, b"GET /old 0\n")
            assert await client.closed()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"y" * 20000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413),
    ],
    ids=["400 garbage", "414 long target", "431 header block in one write", "413 body"],
)
async def test_bad_requests_get_the_status_that_says_why(request_bytes: bytes, status: int) -> None:
    with trio.fail_after(GUARD):
        async with running_http_server() as server:
            client = await RawClient.connect(server.port)
            await client.sock.send(request_bytes)
            response, _ = await client.response()
            assert response.status_code == status
            assert header(response, "connection") == "close"
            assert await client.closed()
            # and the server goes on serving others
            other = await RawClient.connect(server.port)
            await other.sock.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await other.response())[1] == b"GET /next 0\n"


async def test_expect_100_continue() -> None:
    with trio.fail_after(GUARD):
        async with running_http_server(max_body=10) as server:
            client = await RawClient.connect(server.port)
            await client.sock.send(
                b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
            )
            assert (await client.sock.recv(100)).startswith(b"HTTP/1.1 100 ")
            await client.sock.send(b"abcd")
            assert (await client.response())[1] == b"POST /c 4\n"
            refused = await RawClient.connect(server.port)
            await refused.sock.send(
                b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nExpect: 100-continue\r\n\r\n"
            )
            response, _ = await refused.response()
            assert response.status_code == 413  # answered without a 100 first


async def test_a_handler_error_is_a_500_and_the_connection_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with trio.fail_after(GUARD):
        async with running_http_server() as server:
            client = await RawClient.connect(server.port)
            await client.sock.send(
                b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            assert (await client.response())[0].status_code == 500
            assert (await client.response())[1] == b"GET /ok 0\n"
            assert "the handler broke" in caplog.text


async def test_max_requests_closes_after_the_last_one() -> None:
    with trio.fail_after(GUARD):
        async with running_http_server(max_requests=2) as server:
            client = await RawClient.connect(server.port)
            await client.sock.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
            first, _ = await client.response()
            second, _ = await client.response()
            assert header(first, "connection") is None
            assert header(second, "connection") == "close"
            assert await client.closed()


async def test_slow_headers_get_408_at_the_header_timeout_however_they_trickle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        async with running_http_server(header_timeout=10, keep_alive_timeout=5) as server:
            slow = await RawClient.connect(server.port)
            start = trio.current_time()
            for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: yes":
                await slow.sock.send(bytes([byte]))  # a byte a second keeps it "alive"
                with trio.move_on_after(1):
                    data = await slow.sock.recv(1000)
                    break
            else:
                raise AssertionError("never answered")
            assert data.startswith(b"HTTP/1.1 408 ")
            assert trio.current_time() - start == pytest.approx(10, abs=1.01)
            idle = await RawClient.connect(server.port)
            start = trio.current_time()
            assert await idle.closed()  # no first byte within the keep-alive timeout: no word
            assert trio.current_time() - start == pytest.approx(5)


async def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        async with running_http_server(keep_alive_timeout=5) as server:
            client = await RawClient.connect(server.port)
            await client.sock.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
            await client.response()
            answered = trio.current_time()
            assert await client.closed()
            assert trio.current_time() - answered == pytest.approx(5)


async def test_slowloris_connections_hold_up_nobody(autojump_clock: trio.testing.MockClock) -> None:
    # 500 clients trickling header bytes: a normal request is answered at once (no
    # virtual time passes), each slow one gets its 408 at the header timeout, and the
    # memory they cost is bounded.
    count = 500
    with trio.fail_after(1000):
        async with running_http_server(header_timeout=10) as server:
            before = rss()
            slow = [await RawClient.connect(server.port) for _ in range(count)]
            start = trio.current_time()
            peak = 0

            async def trickle(client: RawClient) -> None:
                for byte in b"GET / HTTP/1.1\r\nHost: x\r\n":
                    try:
                        await client.sock.send(bytes([byte]))
                    except OSError:
                        return  # answered and closed
                    await trio.sleep(1)

            async with trio.open_nursery() as nursery:
                for client in slow:
                    nursery.start_soon(trickle, client)
                await trio.sleep(3)
                normal = await RawClient.connect(server.port)
                asked = trio.current_time()
                await normal.sock.send(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await normal.response())[1] == b"GET /fast 0\n"
                assert trio.current_time() == asked
                peak = rss()
                for client in slow:
                    response, _ = await client.response()
                    assert response.status_code == 408
                assert trio.current_time() - start == pytest.approx(10, abs=0.01)
    # Both ends of 500 connections live in this process: well under 64 KiB for the pair.
    assert peak - before < count * 64 * 1024, (before, peak)


async def test_a_stop_answers_the_request_in_flight_and_closes_the_idle_ones() -> None:
    release = trio.Event()
    started = trio.Event()

    async def slow(request: Request) -> Response:
        started.set()
        await release.wait()
        return Response.text(200, "finished\n")

    with trio.fail_after(GUARD):
        async with running_http_server(handler=slow, grace_period=30) as server:
            busy = await RawClient.connect(server.port)
            idle = await RawClient.connect(server.port)
            await busy.sock.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await started.wait()
            server.stop()
            assert await idle.closed()  # waiting for a request: closed at once
            release.set()
            response, body = await busy.response()
            assert (response.status_code, body) == (200, b"finished\n")
            assert header(response, "connection") == "close"
            assert await busy.closed()


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/a%20b?x=1&y=2", "/a b", "x=1&y=2"),
        ("//evil.com/x?q", "//evil.com/x", "q"),  # origin form: a path, not a host
        ("/p#frag", "/p", ""),
        ("http://host:8/abs?z", "/abs", "z"),  # absolute form
    ],
)
def test_a_requests_path_and_query_come_from_its_target_as_http_reads_it(
    target: str, path: str, query: str
) -> None:
    request = Request("GET", target, [], b"", "1.1", "127.0.0.1:1")
    assert (request.path, request.query) == (path, query)


async def everything_until_closed(sock: trio.socket.SocketType) -> bytes:
    received = b""
    while chunk := await sock.recv(65536):
        received += chunk
    return received


_SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nX-A: b\r\n"
        b" Transfer-Encoding: chunked\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\tTransfer-Encoding: chunked\r\n",
        b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n",
    ],
    ids=["CL then TE", "TE then CL", "TE in an obs-fold (SP)", "... (HTAB)", "1.0 TE"],
)
async def test_ambiguous_framing_is_400_and_a_close_and_the_smuggled_request_is_never_answered(
    head: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # A chunked body that ends at once, then a second request: a Content-Length front end
    # takes the second request as body; a server that read it as chunked and went on
    # would answer it (RFC 9112 6.1: answer and close; nginx: 400).
    with trio.fail_after(GUARD):
        async with running_http_server() as server:
            client = await RawClient.connect(server.port)
            await client.sock.send(head + b"\r\n0\r\n\r\n" + _SMUGGLED)
            received = await everything_until_closed(client.sock)
    assert received.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert received.count(b"HTTP/1.") == 1  # one answer, then the close
    assert b"smuggled" not in received
    assert b"connection: close" in received.lower()
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


async def test_a_chunked_request_alone_is_served_and_kept_alive() -> None:
    # Transfer-Encoding is not refused by itself: only beside Content-Length (or in 1.0)
    with trio.fail_after(GUARD):
        async with running_http_server() as server:
            client = await RawClient.connect(server.port)
            await client.sock.send(
                b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n0\r\n\r\n" + _SMUGGLED
            )
            assert (await client.response())[1] == b"POST /c 3\n"
            assert (await client.response())[1] == b"GET /smuggled 0\n"


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"http://[/", 400),
        (b"http://[::1/x", 400),
        (b"http://host:port/x", 400),
        (b"ftp://host/x", 400),
        (b"anything", 400),
        (b"*", 400),  # only for OPTIONS
        (b"http://host:8/abs", 200),
        (b"HTTP://host/abs", 200),
    ],
)
async def test_a_malformed_target_is_400_with_one_short_log_line(
    target: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "triosock.http")
    with trio.fail_after(GUARD):
        async with running_http_server() as server:
            client = await RawClient.connect(server.port)
            await client.sock.send(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            response, body = await client.response()
    assert response.status_code == status
    if status == 400:
        assert header(response, "connection") == "close"
        [record] = [r for r in caplog.records if r.name == "triosock.http"]
        assert record.levelno == logging.INFO
        assert record.exc_info is None
        assert len(record.getMessage()) < 200
    else:
        assert body == b"GET /abs 0\n"
