"""RFC 862 echo: every byte (TCP) or datagram (UDP) received is sent back unchanged."""

from __future__ import annotations

import socket

import trio

from .._errors import TriosockError
from .._transport.tcp import TCPConnection
from .._transport.udp import UDPPeer, reply_each

__all__ = ["echo_handler", "udp_echo_handler"]


async def echo_handler(conn: TCPConnection) -> None:
    """Echo ``conn`` until the client half-closes, then half-close in turn.

    When the server stops, echoing ends at once and the server half-closes, so the
    client reads a clean end of stream.
    """
    with conn.stop_scope():
        raw = conn.raw_socket
        if raw is not None:
            await _echo_socket(conn, raw)
        else:
            async for data in conn:
                await conn.send_all(data)
    try:
        await conn.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client is gone already
    except TriosockError:
        pass  # TLS cannot half-close; the server closes the connection right after this


#: How many reads in a row may be served without yielding to other tasks.
_FAIRNESS_BURST = 32


async def _echo_socket(conn: TCPConnection, sock: socket.socket) -> None:
    """Echo on the plain socket: one scheduler pass per round trip, not two.

    The Stream contract makes every receive and every send a checkpoint; echo owns its
    connection, so it waits only when the socket has nothing to read (that wait is the
    checkpoint) and yields after a run of reads that never had to wait, so a flooding
    client cannot starve the others.
    """
    buffer = bytearray(65536)
    view = memoryview(buffer)
    burst = 0
    try:
        while True:
            try:
                size = sock.recv_into(buffer)
            except BlockingIOError:
                burst = 0
                await trio.lowlevel.wait_readable(sock)
                continue
            if not size:
                return
            conn.touch()
            pending = view[:size]
            while pending:
                try:
                    sent = sock.send(pending)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
                    continue
                pending = pending[sent:]
            burst += 1
            if burst >= _FAIRNESS_BURST:
                burst = 0
                await trio.lowlevel.checkpoint()
    except OSError as exc:
        raise trio.BrokenResourceError(f"echo connection broken: {exc}") from exc


async def udp_echo_handler(peer: UDPPeer) -> None:
    """Send every datagram of ``peer`` back to it, one datagram for one datagram."""
    await reply_each(peer, _same)


def _same(datagram: bytes) -> bytes:
    return datagram
