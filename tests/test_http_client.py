"""``triosock.fetch``, the HTTP client, against real servers on loopback sockets: ours
(``serve_http``, plain and TLS) and raw TCP servers that misbehave on purpose."""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trustme

from triosock import (
    ConnectError,
    HTTPResponseError,
    NotHTTPError,
    Request,
    Response,
    ResponseTooLargeError,
    TCPConnection,
    TCPServer,
    fetch,
    serve_http,
)

from .conftest import GUARD, running_tcp_server


async def _hello(request: Request) -> Response:
    await trio.lowlevel.checkpoint()
    said = f"{request.method} {request.target} {request.header('x-test')} {request.body!r}\n"
    return Response(200, [("content-type", "text/plain"), ("x-answer", "yes")], said.encode())


async def _big(request: Request) -> Response:
    await trio.lowlevel.checkpoint()
    return Response(200, [], b"x" * 100_000)


@asynccontextmanager
async def http_server(
    handler: Callable[[Request], Awaitable[Response]], ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        server: TCPServer = await nursery.start(
            lambda task_status: serve_http(
                handler, 0, ssl_context=ssl_context, task_status=task_status
            )
        )
        yield server.port
        nursery.cancel_scope.cancel()


async def test_an_answer_is_the_servers_response_record() -> None:
    with trio.fail_after(GUARD):
        async with http_server(_hello) as port:
            got = await fetch(
                f"http://127.0.0.1:{port}/a%20b?q=1",
                method="POST",
                headers=[("x-test", "t")],
                body=b"hi",
            )
            head = await fetch(f"http://127.0.0.1:{port}/", method="HEAD")
    assert got.status == 200
    assert got.body == b"POST /a%20b?q=1 t b'hi'\n"
    assert ("x-answer", "yes") in got.headers
    assert ("content-length", str(len(got.body))) in got.headers
    assert (head.status, head.body) == (200, b"")


async def test_a_refused_port_is_a_connect_error() -> None:
    with trio.fail_after(GUARD):
        async with http_server(_hello) as port:
            pass  # the server has stopped: its port refuses
        with pytest.raises(ConnectError, match=f"127.0.0.1:{port}: connection refused"):
            await fetch(f"http://127.0.0.1:{port}/")


async def test_a_body_over_max_body_is_refused_before_it_is_read() -> None:
    with trio.fail_after(GUARD):
        async with http_server(_big) as port:
            whole = await fetch(f"http://127.0.0.1:{port}/", max_body=100_000)
            with pytest.raises(ResponseTooLargeError, match="100000 bytes, over the limit of 1000"):
                await fetch(f"http://127.0.0.1:{port}/", max_body=1000)
    assert len(whole.body) == 100_000


async def _serve_raw(answer: bytes, conn: TCPConnection) -> None:
    await conn.receive_some()
    await conn.send_all(answer)
    await conn.send_eof()
    while await conn.receive_some():
        pass


@asynccontextmanager
async def raw_server(answer: bytes) -> AsyncIterator[int]:
    async def handler(conn: TCPConnection) -> None:
        await _serve_raw(answer, conn)

    async with running_tcp_server(handler) as (server, _):
        yield server.port


async def test_a_body_without_a_length_over_max_body_is_cut_off() -> None:
    with trio.fail_after(GUARD):
        async with raw_server(b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * 50_000) as port:
            with pytest.raises(
                ResponseTooLargeError, match=r"sent a body, over the limit of 1000 bytes$"
            ):
                await fetch(f"http://127.0.0.1:{port}/", max_body=1000)


async def test_headers_over_the_limit_are_refused() -> None:
    answer = b"HTTP/1.1 200 OK\r\nx-big: " + b"z" * 5000 + b"\r\ncontent-length: 0\r\n\r\n"
    with trio.fail_after(GUARD):
        async with raw_server(answer) as port:
            with pytest.raises(ResponseTooLargeError, match="headers over 1024 bytes"):
                await fetch(f"http://127.0.0.1:{port}/", max_header_bytes=1024)


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (b"-!- welcome to chat\r\n", NotHTTPError, "does not answer HTTP"),
        (b"HTTP/1.1 abc nonsense\r\n\r\n", HTTPResponseError, "bad response from 127.0.0.1:"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", HTTPResponseError, "bad resp"),
        (b"", HTTPResponseError, "closed without an answer"),
    ],
)
async def test_a_server_that_sends_garbage_is_a_clear_error(
    answer: bytes, error: type[Exception], message: str
) -> None:
    with trio.fail_after(GUARD):
        async with raw_server(answer) as port:
            with pytest.raises(error, match=message):
                await fetch(f"http://127.0.0.1:{port}/")


async def test_a_server_that_is_not_http_is_known_at_once_though_it_stays_open() -> None:
    # A chat or echo port: it says something (or echoes the request) and waits. The
    # first bytes tell: the client does not wait for the rest.
    async def talker(conn: TCPConnection) -> None:
        await conn.send_all(b"-!- welcome\r\n")
        await trio.sleep_forever()

    with trio.fail_after(GUARD):
        async with running_tcp_server(talker, grace_period=0) as (server, _):
            began = trio.current_time()
            with pytest.raises(NotHTTPError, match=re.escape("said '-!- welcome\\\\r\\\\n'")):
                await fetch(f"http://127.0.0.1:{server.port}/status")
            assert trio.current_time() - began < 2


async def test_a_server_that_never_answers_waits_for_the_callers_cancel_scope() -> None:
    async def silent(conn: TCPConnection) -> None:
        await trio.sleep_forever()

    with trio.fail_after(GUARD):
        async with running_tcp_server(silent, grace_period=0) as (server, _):
            began = trio.current_time()
            with trio.move_on_after(0.3) as scope:
                await fetch(f"http://127.0.0.1:{server.port}/")
            waited = trio.current_time() - began
    assert scope.cancelled_caught
    assert 0.3 <= waited < 2


async def test_https_with_a_trusted_certificate_and_a_refusal_without() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with trio.fail_after(GUARD):
        async with http_server(_hello, server_context) as port:
            got = await fetch(f"https://127.0.0.1:{port}/tls", ssl_context=client_context)
            with pytest.raises(ConnectError, match=r"TLS handshake with 127\.0\.0\.1:\d+ failed"):
                await fetch(f"https://127.0.0.1:{port}/")  # the system's CAs: not ours
    assert (got.status, got.body) == (200, b"GET /tls None b''\n")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/", "not an http:// or https:// URL"),
        ("http:///path", "not an http:// or https:// URL"),
        ("http://127.0.0.1:99999/", "bad port in http://127.0.0.1:99999/"),
    ],
)
def test_a_url_that_is_not_http_is_a_value_error(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        trio.run(fetch, url)


async def test_a_target_is_one_token_whatever_the_url_holds() -> None:
    # Spaces and what is not ASCII are percent-encoded, CR and LF dropped (urlsplit's
    # rule): never a second line.
    with trio.fail_after(GUARD):
        async with http_server(_hello) as port:
            got = await fetch(f"http://127.0.0.1:{port}/a b\r\nX-Injected: 1/é?q=a b")
    assert got.body == b"GET /a%20bX-Injected:%201/%C3%A9?q=a%20b None b''\n"


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("http://127.0.0.1:1\r\nX: y/", {}, "a space or a control character in the URL's host"),
        ("http://127.0.0.1:1/", {"method": "GET /x HTTP/1.1\r\n"}, "cannot send that request"),
        ("http://127.0.0.1:1/", {"headers": [("x-a", "1\r\nx-b: 2")]}, "cannot send that"),
        ("http://127.0.0.1:1/", {"headers": [("x-é", "1")]}, "cannot send that request"),
        ("ftp://127.0.0.1/", {}, "not an http:// or https:// URL"),
    ],
)
async def test_a_request_that_cannot_be_sent_is_a_value_error_before_any_connection(
    url: str, options: dict[str, object], message: str
) -> None:
    # (Port 1: nothing listens there; the error comes before anything is connected.)
    with pytest.raises(ValueError, match=re.escape(message)):
        await fetch(url, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        # 1xx answers without end: headers without end, over the limit in all.
        (b"HTTP/1.1 100 Continue\r\n\r\n" * 2000, "sent headers over 1024 bytes"),
        # A chunk header that never ends (its extension): said as what it is.
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;" + b"x" * 5000,
            "sent a chunk header over 1024 bytes",
        ),
    ],
)
async def test_what_a_server_sends_without_end_is_bounded_by_the_header_limit(
    answer: bytes, message: str
) -> None:
    with trio.fail_after(GUARD):
        async with raw_server(answer) as port:
            with pytest.raises(ResponseTooLargeError, match=message):
                await fetch(f"http://127.0.0.1:{port}/", max_header_bytes=1024)
