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


# Every so many round trips the echo loop takes a full checkpoint (a cancel point too);
# the others are schedule points only. A cancellation (server stop, idle timeout) waits
# at most this many round trips, or none when the loop has to wait for data.
_CANCEL_CHECK_EVERY = 16


async def _echo_socket(conn: TCPConnection, sock: socket.socket) -> None:
    """Echo on the plain socket, without the Stream contract's bookkeeping.

    After each echo the task yields once (the schedule point that keeps it fair) *before*
    trying to read again: under load the client's next message has usually arrived by
    then, so the read succeeds without registering with epoll and failing with EAGAIN
    first. Measured, that beats both waiting at once and trio's own socket loop.
    A round trip is then one ``recv``, one ``send`` and one scheduler pass; what is left
    of the Python work is kept to locals (no idle-timer call without a timeout, no buffer
    view unless a send comes up short).
    """
    touch = conn.touch if conn.server.idle_timeout is not None else None
    recv, send = sock.recv, sock.send
    schedule_point = trio.lowlevel.cancel_shielded_checkpoint
    rounds = 0
    # No buffer kept between reads: an idle connection holds no 64 KiB array.
    try:
        while True:
            try:
                data = recv(65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)  # a cancel point
                continue
            if not data:
                return
            if touch is not None:
                touch()
            try:
                sent = send(data)
            except BlockingIOError:
                sent = 0
            if sent != len(data):  # the rest waits for room, as any stream write does
                await conn.send_all(memoryview(data)[sent:])
            rounds += 1
            if rounds % _CANCEL_CHECK_EVERY:
                await schedule_point()
            else:
                await trio.lowlevel.checkpoint()
    except OSError as exc:
        raise trio.BrokenResourceError(f"echo connection broken: {exc}") from exc


async def udp_echo_handler(peer: UDPPeer) -> None:
    """Send every datagram of ``peer`` back to it, one datagram for one datagram."""
    await reply_each(peer, _same)


def _same(datagram: bytes) -> bytes:
    return datagram
