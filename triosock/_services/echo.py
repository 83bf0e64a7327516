"""RFC 862 echo: every byte (TCP) or datagram (UDP) received is sent back unchanged."""

from __future__ import annotations

from collections.abc import Coroutine

import trio

from .._errors import TriosockError
from .._transport.tcp import TCPConnection
from .._transport.udp import UDPPeer
from .replies import REPLY_RATE, reply_each

__all__ = ["echo_handler", "udp_echo_handler"]


async def echo_handler(conn: TCPConnection) -> None:
    """Echo ``conn`` until the client half-closes, then half-close in turn.

    When the server stops, echoing ends at once and the server half-closes, so the
    client reads a clean end of stream. Written with the stream API as any user's
    handler is: one scheduler pass per round trip (see ``RawSocketStream``).
    """
    with conn.stop_scope():
        async for data in conn:
            await conn.send_all(data)
    try:
        await conn.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client is gone already
    except TriosockError:
        pass  # TLS cannot half-close; the server closes the connection right after this


def udp_echo_handler(
    peer: UDPPeer, *, rate: float | None = REPLY_RATE
) -> Coroutine[object, None, None]:
    """Send every datagram of ``peer`` back to it, one datagram for one datagram.

    At most :data:`~triosock.services.REPLY_BURST` echoes at once and ``rate`` a second
    after that go to one address (None: no limit); see :func:`reply_each`. Not
    ``async def`` itself: it returns :func:`reply_each`'s coroutine, which the server
    awaits, so a waiting peer holds one frame less (a few hundred bytes).
    """
    return reply_each(peer, _same, rate=rate)


def _same(datagram: bytes) -> bytes:
    return datagram
