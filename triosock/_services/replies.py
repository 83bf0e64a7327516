"""The request/reply loop of the UDP services (echo, time): one answer per datagram.

A request/reply peer asks and goes away; :func:`reply_each` answers what it sends and
forgets it after a quiet spell, so a stream of one-shot clients never fills the server's
peer table.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from .._transport.udp import UDPPeer

__all__ = ["REPLY_IDLE_TIMEOUT", "reply_each"]

#: How long a request/reply peer (:func:`reply_each`) is kept without a request.
REPLY_IDLE_TIMEOUT = 10.0


async def reply_each(
    peer: UDPPeer,
    answer: Callable[[bytes], bytes | None],
    *,
    idle_timeout: float = REPLY_IDLE_TIMEOUT,
) -> None:
    """Send ``answer(datagram)`` back for each datagram of ``peer`` (None: no reply).

    The request/reply services' loop (echo, time). A burst already queued is answered
    without a scheduler pass per datagram; the only other await is for socket buffer
    space when the kernel has none. Ends when the server begins to stop (once the
    requests already queued are answered), and about
    ``idle_timeout`` seconds after the last request (see :meth:`UDPPeer.limit_idle`; the
    server's shorter ``peer_idle_timeout`` wins): the peer's entry is freed, and a later
    datagram from the same address starts afresh, so a stream of one-shot clients never
    fills the peer table.
    """
    peer.limit_idle(idle_timeout)
    try:
        while True:
            request = await peer.receive()
            while True:
                reply = answer(request)
                if reply is not None:
                    try:
                        peer.send_nowait(reply)
                    except trio.WouldBlock:
                        await peer.send(reply)
                if not peer.pending:  # no exception: it would leave a frame object behind
                    break
                request = peer.receive_nowait()
    except trio.EndOfChannel:  # the server is stopping
        return
