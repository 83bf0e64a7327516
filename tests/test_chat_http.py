"""A chat port never relays an HTTP request into a room.

A web page can make its visitor's browser send a request to the chat's TCP port (a
cross-protocol attack), and ``chat status`` pointed at the chat port instead of the
status port sends one too. The client gets a short ``400 Bad Request`` and is closed;
an ``nc`` witness in the room sees nothing of it: no join, no leave, no line.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from triosock import TCPServer, serve_tcp
from triosock.chat import ChatServer

from .chattools import LineReader, LineSocket, chat_servers, without_token
from .clitools import PYTHON, need, run
from .conftest import GUARD, tls_contexts

BODY = b"400 Bad Request: this is a chat port (nc, telnet); it does not speak HTTP\n"
RESPONSE = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n%s" % (len(BODY), BODY)
)
WELCOME = b"-!- welcome to triosock chat, guest1; /help lists commands"


async def witness(port: int) -> LineSocket:
    """An nc user in the lobby, before anybody else."""
    member = await LineSocket.connect(port)
    await member.read_until(b"* guest1 joined #lobby")
    return member


async def assert_saw_nothing(member: LineSocket, chat: ChatServer) -> None:
    """The witness saw nothing but its own arrival, and is alone: asked after the
    refused client is gone, ``/who`` comes after anything the room was told."""
    await member.send(b"/who\n")
    await member.read_until(b"in #lobby:")
    assert without_token(member.lines) == [
        WELCOME,
        b"* guest1 joined #lobby",
        b"-!- in #lobby: guest1",
    ]
    assert chat.statistics().sessions_total == 1


async def read_all(member: LineSocket) -> bytes:
    data = b""
    while chunk := await member.receive():
        data += chunk
    return data


async def curl(port: int) -> None:
    """curl, as a user would point it at the port."""
    url = f"http://127.0.0.1:{port}/"
    got = await run([need("curl"), "-sS", "--max-time", "5", "-w", "%{http_code}", url])
    assert (got.returncode, got.stderr) == (0, b"")
    assert got.stdout == BODY + b"400"


async def posting_page(port: int) -> None:
    """What a web page makes a browser send: a POST whose body the page wrote."""
    page = await LineSocket.connect(port)
    body = b"/nick mallory\nhello from a web page\n/quit\n"
    await page.send(
        b"POST /x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (port, len(body), body)
    )
    assert await read_all(page) == RESPONSE  # then the close, and no more
    page.close()


async def status_command(port: int) -> None:
    """``chat status`` given the chat port instead of the status port."""
    address = f"127.0.0.1:{port}"
    got = await run([PYTHON, "-m", "triosock", "chat", "status", address])
    assert got.returncode != 0
    assert (
        f"{address} is not a status port: it answered 400 Bad Request: this is a chat port"
    ).encode() in got.stderr


async def tls_client(port: int) -> None:
    """A browser a page sent to ``https://`` on the chat port: its ClientHello carries
    a server name of the page's choosing, which the room must not see."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    stream = trio.SSLStream(
        await trio.open_tcp_stream("127.0.0.1", port),
        context,
        server_hostname="visit-evil-example-for-free-coins.example",
    )
    with pytest.raises(trio.BrokenResourceError) as failed:
        await stream.do_handshake()
    assert "HANDSHAKE_FAILURE" in str(failed.value.__cause__)  # the server's TLS alert
    await trio.aclose_forcefully(stream)


async def curl_https(port: int) -> None:
    url = f"https://visit-evil-example-for-free-coins.example:{port}/"
    got = await run(
        [
            need("curl"),
            "-sSk",
            "--max-time",
            "5",
            "--resolve",
            f"visit-evil-example-for-free-coins.example:{port}:127.0.0.1",
            url,
        ]
    )
    assert got.returncode == 35  # curl: the TLS handshake failed
    assert got.stdout == b""


@pytest.mark.parametrize(
    ("client", "refusal"),
    [
        (curl, "an HTTP request"),
        (posting_page, "an HTTP request"),
        (status_command, "an HTTP request"),
        (tls_client, "a TLS handshake"),
        (curl_https, "a TLS handshake"),
    ],
)
async def test_a_web_client_on_the_chat_port_is_refused_and_the_room_sees_nothing(
    client: Callable[[int], Awaitable[None]], refusal: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="triosock.chat")
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            nc = await witness(tcp.port)
            await client(tcp.port)
            await assert_saw_nothing(nc, chat)
            nc.close()
    (refused,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused.startswith("refused tcp 127.0.0.1:")
    assert refused.endswith(f": {refusal} on the chat port")


async def test_a_request_after_the_first_line_wait_is_refused_and_says_nothing(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # A browser may open a connection ahead of time and send its request later: then
    # the session has begun and the room saw the guest join, but nothing it sent.
    with caplog.at_level(logging.INFO, logger="triosock.chat"), trio.fail_after(100):
        async with chat_servers(ChatServer()) as (tcp, _, _):
            nc = await witness(tcp.port)
            early = await LineSocket.connect(tcp.port)
            await nc.read_until(b"* guest2 joined #lobby")
            await early.send(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nhello room\n")
            assert (await read_all(early)).endswith(RESPONSE)
            early.close()
            await nc.read_until(b"* guest2 left #lobby")
            await nc.send(b"/who\n")
            await nc.read_until(b"in #lobby:")
            nc.close()
    assert without_token(nc.lines) == [
        WELCOME,
        b"* guest1 joined #lobby",
        b"* guest2 joined #lobby",
        b"* guest2 left #lobby",
        b"-!- in #lobby: guest1",
    ]
    assert "guest2 left (refused: an HTTP request on the chat port)" in caplog.messages


@pytest.mark.parametrize(("first", "joined_after"), [(b"", 0.1), (b"hello\n", 0.0)])
async def test_the_first_line_wait_is_a_tenth_of_a_second_and_only_for_the_silent(
    autojump_clock: trio.testing.MockClock, first: bytes, joined_after: float
) -> None:
    chat = ChatServer()
    with trio.fail_after(100):
        async with chat_servers(chat) as (tcp, _, _):
            start = trio.current_time()
            user = await LineSocket.connect(tcp.port)
            if first:
                await user.send(first)
            await user.read_until(b"* guest1 joined #lobby")
            assert trio.current_time() - start == pytest.approx(joined_after, abs=1e-9)
            assert user.lines[0] == WELCOME
            user.close()


class TLSLines(LineReader):
    """A TLS client's stream, read as lines."""

    def __init__(self, stream: trio.SSLStream[trio.SocketStream]) -> None:
        super().__init__()
        self.stream = stream

    async def receive(self) -> bytes:
        return bytes(await self.stream.receive_some(65536))


async def test_a_tls_client_slow_to_shake_hands_is_screened_after_the_handshake(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A read cancelled during the TLS handshake would break the stream: the first-line
    # wait starts once the handshake is done, however long the client takes.
    server_ctx, client_ctx = tls_contexts()
    chat = ChatServer()
    with trio.fail_after(100):
        async with chat, trio.open_nursery() as nursery:
            tcp: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(
                    chat.serve_tcp_client, 0, ssl_context=server_ctx, task_status=task_status
                )
            )
            for first in (b"hello\n", b"GET / HTTP/1.1\r\n\r\n"):
                raw = await trio.open_tcp_stream("127.0.0.1", tcp.port)
                await trio.sleep(1)  # the client takes its time before its ClientHello
                user = TLSLines(trio.SSLStream(raw, client_ctx, server_hostname="localhost"))
                await user.stream.do_handshake()
                await user.stream.send_all(first)
                if first == b"hello\n":
                    assert await user.read_until(b"hello") == b"[#lobby] guest1: hello"
                else:
                    assert b"".join(line + b"\n" for line in await user.read_to_eof()) == (RESPONSE)
                await trio.aclose_forcefully(user.stream)
            nursery.cancel_scope.cancel()
