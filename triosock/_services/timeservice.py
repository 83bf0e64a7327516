"""The time services: RFC 868 time, RFC 867 daytime, SNTPv4, and the seed's strftime service.

Each is a handler for :func:`~triosock.serve_tcp` or :func:`~triosock.serve_udp` over the
sans-IO encoders of :mod:`triosock._sansio.time`. Every handler takes the clock as
a keyword argument (``clock``, :func:`time.time` by default), so a test fixes "now" with
:func:`functools.partial`::

    handler = functools.partial(rfc868_tcp_handler, clock=lambda: 1_700_000_000.0)

* TCP, RFC 868 and RFC 867: the answer is sent on connect, then the server half-closes
  and closes. Whatever the client sends is read and thrown away (RFC 867 says so) until
  it closes too, for at most :data:`LINGER` seconds (or until the server stops): closing
  a socket with unread data makes the kernel send a reset, which can destroy the answer
  before the client reads it.
* UDP, RFC 868 and RFC 867: every datagram, the empty one included, gets one answer.
* SNTP (UDP): a client request gets the reply :func:`sntp_reply` builds, with the receive
  time read when the request is handled and the transmit time read just before the reply
  goes out. Anything else (replies, control messages, garbage) gets no answer.
* strftime (UDP, and TCP lines): each datagram or line is a format and gets one reply
  from :func:`format_time_untrusted`, which never fails on what a peer sends and never
  answers with more than a few times what it was sent.

Every UDP handler answers a burst already queued for its peer without a scheduler pass
per datagram, as :func:`~triosock.services.udp_echo_handler` does, and answers one
address at most :data:`~triosock.services.REPLY_BURST` times at once and
:data:`~triosock.services.REPLY_RATE` times a second after that (see
:func:`~triosock.services.reply_each`). Serve them with a ``peer_idle_timeout``
(:data:`UDP_PEER_IDLE_TIMEOUT`): time clients ask once and leave, and each remembered
address holds a task until it expires. Serve RFC 868, daytime and strftime with
``refuse_source=refuse_server_ports(...)``, as the command line does: they answer
anything, so a datagram from another server's port could start a loop. SNTP needs no
such rule: it answers client requests only, with server replies that no NTP server
answers, and ntpd sends its requests from port 123.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import trio

from .._errors import MessageTooLargeError, TriosockError
from .._sansio.framing import LineFramer
from .._sansio.time import (
    TimeFormatError,
    encode_rfc868,
    format_daytime,
    format_time_untrusted,
    sntp_reply,
)
from .._transport.channel import FramedChannel
from .._transport.tcp import TCPConnection
from .._transport.udp import UDPPeer
from .replies import reply_each

__all__ = [
    "LINGER",
    "STRFTIME_MAX_LINE",
    "UDP_PEER_IDLE_TIMEOUT",
    "Clock",
    "daytime_tcp_handler",
    "daytime_udp_handler",
    "rfc868_tcp_handler",
    "rfc868_udp_handler",
    "sntp_udp_handler",
    "strftime_tcp_handler",
    "strftime_udp_handler",
]

#: A source of the current time in Unix seconds, such as :func:`time.time`.
Clock = Callable[[], float]

#: How long a TCP time or daytime connection waits for the client to close after the
#: answer, discarding what it sends, before closing anyway.
LINGER = 2.0

#: The peer idle timeout the time services' UDP servers are meant to run with (seconds).
UDP_PEER_IDLE_TIMEOUT = 30.0

#: The longest line the TCP strftime service reads. A longer line breaks the framing:
#: it gets an error reply and the connection is closed. Lines up to this size that are
#: still too long a format get an error reply like any bad format.
STRFTIME_MAX_LINE = 4096


# --- TCP: answer on connect, then close ---------------------------------------------------


async def _answer_and_close(conn: TCPConnection, answer: bytes) -> None:
    """Send ``answer``, half-close, and drain the client until it closes (or LINGER)."""
    try:
        await conn.send_all(answer)
        await conn.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return  # the client is gone already
    except TriosockError:
        return  # TLS cannot half-close; the server closes the connection right after this
    with conn.stop_scope(), trio.move_on_after(LINGER):
        try:
            while await conn.receive_some():
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def rfc868_tcp_handler(conn: TCPConnection, *, clock: Clock = time.time) -> None:
    """RFC 868 over TCP: send the time as 4 bytes on connect, then close."""
    await _answer_and_close(conn, encode_rfc868(clock()))


async def daytime_tcp_handler(conn: TCPConnection, *, clock: Clock = time.time) -> None:
    """RFC 867 over TCP: send the daytime line on connect, then close."""
    await _answer_and_close(conn, format_daytime(clock()))


# --- UDP: one answer per datagram ----------------------------------------------------------


async def rfc868_udp_handler(peer: UDPPeer, *, clock: Clock = time.time) -> None:
    """RFC 868 over UDP: every datagram, even an empty one, gets the time as 4 bytes."""
    await reply_each(peer, lambda _request: encode_rfc868(clock()))


async def daytime_udp_handler(peer: UDPPeer, *, clock: Clock = time.time) -> None:
    """RFC 867 over UDP: every datagram, even an empty one, gets the daytime line."""
    await reply_each(peer, lambda _request: format_daytime(clock()))


async def sntp_udp_handler(
    peer: UDPPeer, *, clock: Clock = time.time, stratum: int = 1, reference_id: bytes = b"LOCL"
) -> None:
    """An SNTPv4 server (RFC 4330): answer client requests, ignore everything else.

    Args:
      peer: the client.
      clock: the server's clock.
      stratum: the stratum to announce, 1 (a primary server) to 15.
      reference_id: 4 bytes naming the reference clock.

    Raises:
      ValueError: if ``stratum`` or ``reference_id`` is out of range (on the first
        request, whatever it holds).
    """

    def answer(request: bytes) -> bytes | None:
        receive_time = clock()
        try:
            return sntp_reply(
                request,
                receive_time=receive_time,
                transmit_time=clock(),
                stratum=stratum,
                reference_id=reference_id,
            )
        except TimeFormatError:
            return None  # sntp_reply drops short packets itself; this is belt and braces

    await reply_each(peer, answer)


async def strftime_udp_handler(peer: UDPPeer, *, clock: Clock = time.time) -> None:
    """The seed's time service: each datagram is a strftime format, answered formatted.

    An empty datagram asks for ``%Y-%m-%d %X``; a bad or oversized format gets a reply
    starting with ``error: ``. One reply per datagram, never much larger than it.
    """
    await reply_each(peer, lambda request: format_time_untrusted(request, clock()))


async def strftime_tcp_handler(conn: TCPConnection, *, clock: Clock = time.time) -> None:
    """The strftime service over TCP: each line (LF or CRLF) is a format; one line back.

    A line longer than :data:`STRFTIME_MAX_LINE` is refused whole: its answer is an error
    line, in its place, and the next line is served as usual. At the client's end of
    stream, or when the server stops, the server half-closes after the last answer.
    """
    chan = FramedChannel(conn, LineFramer(max_line_length=STRFTIME_MAX_LINE))
    refused = b"error: line longer than %d bytes" % STRFTIME_MAX_LINE
    try:
        with conn.stop_scope():
            while True:
                try:
                    requests = [await chan.receive()]
                except MessageTooLargeError:
                    await chan.send(refused)  # the answers before it went out already
                    continue
                while True:
                    try:
                        requests.append(chan.receive_nowait())
                    except trio.WouldBlock:
                        break
                now = clock()
                await chan.send_many([format_time_untrusted(r, now) for r in requests])
    except trio.EndOfChannel:
        pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    # Gone already, or TLS (which cannot half-close): the server closes it either way.
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, TriosockError):
        await conn.send_eof()
