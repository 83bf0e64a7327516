"""Plain HTTP on the status port and the chat's web port.

The Host rule: every answer is for the server's own host only (an IP address,
``localhost``, the bound host, an allowed origin's host), so that a page on a DNS name
pointed at the server (DNS rebinding) reads nothing. And the web port, whose HTTP is
websockets' (one request per connection, no body), smuggles nothing. Raw requests over
real loopback sockets; the chat's wiring through the command line."""

from __future__ import annotations

import json
import re

import pytest
import trio

from triosock._cli._status_serve import Status, start_status
from triosock.chat import ChatServer

from .chattools import web_chat
from .clitools import cli_server
from .conftest import GUARD

MISDIRECTED = b"HTTP/1.1 421 Misdirected Request\r\n"


async def ask(port: int, target: str, host: str | None, version: str = "1.1") -> bytes:
    """One request with ``host`` as its Host header (None: none), all of the answer."""
    with trio.socket.socket() as sock:
        await sock.connect(("127.0.0.1", port))
        lines = [f"GET {target} HTTP/{version}", "Connection: close"]
        if host is not None:
            lines.append(f"Host: {host}")
        await sock.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b""
        while chunk := await sock.recv(65536):
            received += chunk
    return received


#: Names a rebinding page would send (the port is added where {port} is).
FOREIGN = [
    "evil.example",
    "evil.example:{port}",
    "127.0.0.1.evil.example:{port}",
    "localhost.evil.example",
    "user@127.0.0.1:{port}",
    "[::1:{port}",
    "127.0.0.1:port",
]
#: Names of the server's own.
OWN = ["127.0.0.1:{port}", "127.0.0.1", "localhost:{port}", "LocalHost", "[::1]:{port}"]


async def test_the_status_port_answers_only_for_its_own_host() -> None:
    status = Status("http", ("127.0.0.1", 0), given=True, prog="triosock")
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            line = await start_status(nursery, status)
            assert line is not None
            found = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert found is not None
            port = int(found.group(1))
            for host in FOREIGN:
                for target in ("/status", "/nothing"):
                    answer = await ask(port, target, host.format(port=port))
                    assert answer.startswith(MISDIRECTED), (host, answer)
                    assert b"pid" not in answer
                    assert answer.endswith(b"\r\n\r\nnot this server's host\n")
            # (an HTTP/1.0 request without a Host is no browser's: it is answered)
            givens = [own.format(port=port) for own in OWN]
            for given, version in [*((own, "1.1") for own in givens), (None, "1.0")]:
                answer = await ask(port, "/status", given, version)
                assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), (given, answer)
                assert json.loads(answer.partition(b"\r\n\r\n")[2])["pid"] > 0
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("target", ["/", "/rooms", "/chat.js", "/favicon.ico", "/nothing"])
async def test_every_answer_of_the_web_port_is_for_its_own_host_only(target: str) -> None:
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with web_chat(chat) as (_, _, web):
            for host in FOREIGN:
                answer = await ask(web, target, host.format(port=web))
                assert answer.startswith(MISDIRECTED), (host, answer)
                assert answer.endswith(b"\r\n\r\nnot this server's host\n")
            for host in OWN:
                answer = await ask(web, target, host.format(port=web))
                assert not answer.startswith(MISDIRECTED), (host, answer)


async def test_the_chat_web_port_takes_its_bound_host_and_allowed_origins_as_its_own() -> None:
    args = ["chat", "serve", "--tcp", "none", "--udp", "none", "--status", "none"]
    web = ["--web", "localhost:0", "--web-origin", "http://chat.lan:7072"]
    with trio.fail_after(GUARD):
        async with cli_server([*args, *web]) as server:
            port = server.port("chat (web)")
            for host in ["chat.lan:{port}", "localhost:{port}", "127.0.0.1:{port}"]:
                answer = await ask(port, "/rooms", host.format(port=port))
                assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), (host, answer)
                assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"rooms": {}}
            for host in ["evil.example:{port}", "chat.lan.evil.example"]:
                answer = await ask(port, "/rooms", host.format(port=port))
                assert answer.startswith(MISDIRECTED), (host, answer)
                assert b"rooms" not in answer


@pytest.mark.parametrize(
    "head",
    [
        b"POST /rooms HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 40\r\n"
        b"Transfer-Encoding: chunked\r\n",
        b"GET /rooms HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 40\r\n"
        b"Transfer-Encoding: chunked\r\n",
        b"GET /rooms HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n",
    ],
    ids=["POST CL+TE", "GET CL+TE", "TE in an obs-fold"],
)
async def test_the_web_port_answers_no_smuggled_request(head: bytes) -> None:
    # websockets refuses a body or a Transfer-Encoding by closing, without an answer
    with trio.fail_after(GUARD):
        async with web_chat(ChatServer()) as (_, _, web):
            with trio.socket.socket() as sock:
                await sock.connect(("127.0.0.1", web))
                smuggled = b"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                await sock.send(head + b"\r\n0\r\n\r\n" + smuggled)
                received = b""
                while chunk := await sock.recv(65536):
                    received += chunk
    assert b"HTTP/1.1 404" not in received  # /smuggled was never answered
    assert received.count(b"HTTP/1.1 ") <= 1
