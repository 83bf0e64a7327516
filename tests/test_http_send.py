"""Responses to clients that do not read: sent in bounded pieces, and a send timeout that
closes a client taking nothing with a reset (nginx's sendfile pieces, ``send_timeout`` and
``reset_timedout_connection``). Real sockets on loopback; timing on virtual time."""

from __future__ import annotations

import logging
import os
import select
import socket
import tracemalloc
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from triosock import Request, Response, TCPServer, serve_http
from triosock._transport.http import SEND_PIECE
from triosock.services import StaticFiles

from .clitools import cli_server, need, run
from .conftest import GUARD

MiB = 1024 * 1024
#: The file the clients ask for: larger than what the kernel buffers of a client that
#: does not read take (the server's send buffer grows to 4 MiB here, the client's receive
#: buffer is kept small), so that a server holding the file would hold it.
FILE_SIZE = 8 * MiB


def non_reader() -> socket.socket:
    """A client socket with a small receive buffer, blocking (it is only ever polled)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


def wait_reset(sock: socket.socket, within: float) -> bool:
    """Wait (in a thread) for the peer to close ``sock``, without reading what it holds:
    only a hang-up or an error counts, never readable data."""
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(within * 1000))


def ends_in_a_reset(sock: socket.socket) -> bool:
    """Read what ``sock`` still holds: True when the connection then ends with a reset
    (what the server's kernel still queued was dropped), not a close."""
    try:
        while sock.recv(MiB):
            pass
    except ConnectionResetError:
        return True
    return False


def open_files(path: Path) -> list[str]:
    """This process's descriptors open on ``path``."""
    fds = Path("/proc/self/fd")
    return [fd.name for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve())]


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(MiB) * (FILE_SIZE // MiB))
    return path


async def test_non_readers_of_a_large_file_hold_a_few_pieces_each_and_are_reset_at_the_timeout(
    big_file: Path,
) -> None:
    clients, send_timeout = 6, 1.0
    tracemalloc.start()
    try:
        with trio.fail_after(GUARD):
            async with trio.open_nursery() as nursery:
                server: TCPServer = await nursery.start(
                    partial(serve_http, StaticFiles(big_file.parent), 0, send_timeout=send_timeout)
                )
                before, _ = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
                socks = [non_reader() for _ in range(clients)]
                for sock in socks:
                    sock.connect(("127.0.0.1", server.port))
                    sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                began = trio.current_time()
                for sock in socks:
                    assert await trio.to_thread.run_sync(wait_reset, sock, GUARD)
                took = trio.current_time() - began
                _, peak = tracemalloc.get_traced_memory()
                assert server.statistics().open_connections == 0
                assert not open_files(big_file)  # each response's file was closed
                nursery.cancel_scope.cancel()
    finally:
        tracemalloc.stop()
    # Each connection held a few pieces at most (the piece read, h11's framed copy, its
    # own buffers), never the file: all six together grew by less than a third of one.
    assert peak - before < clients * 8 * SEND_PIECE
    assert peak - before < FILE_SIZE / 3
    # not closed before the send timeout (counted from their last taken byte, which came
    # after the request); closed soon after it
    assert send_timeout <= took < send_timeout + 5
    for sock in socks:
        # a reset, not a close: what the kernel queued for the client is gone
        assert ends_in_a_reset(sock)
        sock.close()


async def pieces(total: int, pulled: list[int]) -> AsyncIterator[bytes]:
    """``total`` bytes in pieces of SEND_PIECE, counting what was taken from it."""
    for _ in range(total // SEND_PIECE):
        pulled.append(SEND_PIECE)
        yield b"x" * SEND_PIECE


async def test_the_send_timeout_is_60_s_of_nothing_taken_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pulled: list[int] = []

    async def handler(request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        headers = [("content-length", str(FILE_SIZE))]
        return Response(200, headers, stream=pieces(FILE_SIZE, pulled))

    with trio.fail_after(GUARD * 10):  # virtual seconds
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(partial(serve_http, handler, 0))
            sock = non_reader()
            sock.setblocking(False)
            try:
                await trio.socket.from_stdlib_socket(sock).connect(("127.0.0.1", server.port))
                sock.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                await trio.sleep(59.5)
                assert server.statistics().open_connections == 1  # not before 60 s
                taken = sum(pulled)
                assert 0 < taken < FILE_SIZE / 2  # pieces as the socket took them
                await trio.sleep(1)
                assert server.statistics().open_connections == 0  # closed at 60 s
                assert sum(pulled) == taken
                sock.setblocking(True)
                assert ends_in_a_reset(sock)
            finally:
                sock.close()
            nursery.cancel_scope.cancel()


async def test_a_slow_reader_that_takes_bytes_is_not_cut_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The clock restarts whenever the client takes bytes (nginx: between two writes, not
    # for the whole response): a client reading a piece a second gets all of a body that
    # takes it more than twice the send timeout.
    async def handler(request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        headers = [("content-length", str(FILE_SIZE))]
        return Response(200, headers, stream=pieces(FILE_SIZE, []))

    with trio.fail_after(GUARD * 100):  # virtual seconds
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(partial(serve_http, handler, 0))
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as client:
                await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                began = trio.current_time()
                received = 0
                while chunk := await client.receive_some(SEND_PIECE):
                    received += len(chunk)
                    await trio.sleep(1)
            assert received > FILE_SIZE  # the head, and all of the body
            assert trio.current_time() - began > 2 * 60
            nursery.cancel_scope.cancel()


async def test_curl_gets_a_large_file_byte_exact_and_a_non_reader_is_reset_per_send_timeout(
    big_file: Path,
) -> None:
    args = ["http", "serve", "--port", "0", "--root", str(big_file.parent)]
    with trio.fail_after(GUARD):
        async with cli_server([*args, "--send-timeout", "1"]) as server:
            port = server.port("http")
            out = big_file.parent / "got.bin"
            url = f"http://127.0.0.1:{port}/big.bin"
            done = await run([need("curl"), "-sS", "--max-time", "20", "-o", str(out), url])
            assert done.returncode == 0
            assert await trio.Path(out).read_bytes() == await trio.Path(big_file).read_bytes()
            sock = non_reader()
            try:
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                began = trio.current_time()
                assert await trio.to_thread.run_sync(wait_reset, sock, GUARD)
                assert 1.0 <= trio.current_time() - began < 6
            finally:
                sock.close()


async def test_a_body_that_ends_short_closes_its_connection_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        if request.path == "/short":  # says 4 pieces, has 2 (a file that shrank)
            headers = [("content-length", str(4 * SEND_PIECE))]
            return Response(200, headers, stream=pieces(2 * SEND_PIECE, []))
        return Response.text(200, "fine\n")

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            server: TCPServer = await nursery.start(partial(serve_http, handler, 0))
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as client:
                await client.send_all(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
                received = b""
                while chunk := await client.receive_some(SEND_PIECE):
                    received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert len(body) == 2 * SEND_PIECE  # what there was, then the close
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as other:
                await other.send_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := await other.receive_some():
                    answer += chunk
            assert answer.endswith(b"\r\n\r\nfine\n")
            nursery.cancel_scope.cancel()
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "the body failed midway" in record.getMessage()
    assert record.exc_info is None
