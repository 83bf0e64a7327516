"""The request/reply loop of the UDP services (echo, time): one answer per datagram.

A request/reply peer asks and goes away; :func:`reply_each` answers what it sends and
forgets it after a quiet spell, so a stream of one-shot clients never fills the server's
peer table.

Two of these services answer each other forever once one datagram, forged to come from
the other, sets them off (echo and daytime, or a service and itself: the "UDP packet
storm" of CVE-1999-0103). Two rules stop that:

* What cannot be a client is refused: the server refuses datagrams from its own port
  (see :func:`~triosock.serve_udp`), and :func:`refuse_server_ports` is the rule the
  command line's echo and time servers add: source ports below 1024 (where servers send
  from; a client's port is an ephemeral one, 32768-60999 on Linux) and the ports of
  the project's own services. These are the BSD inetds' rules: OpenBSD's
  ``dg_badinput`` refuses source ports below 1024, FreeBSD's and NetBSD's
  ``check_loop`` refuse the ports of the built-in datagram services ("loop request
  REFUSED").
* What one address can make us send is bounded: :func:`reply_each` answers one address
  at most :data:`REPLY_BURST` times at once and :data:`REPLY_RATE` times a second after
  that (a token bucket per peer). Faster requests wait in the peer's queue, and what
  does not fit is dropped: two services on ordinary ports that answer each other (no
  port rule can tell them from clients) slow to that rate.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import trio

from .._sansio.ratelimit import TokenBucket
from .._transport.udp import UDPPeer

__all__ = [
    "FIRST_CLIENT_PORT",
    "REPLY_BURST",
    "REPLY_IDLE_TIMEOUT",
    "REPLY_RATE",
    "refuse_server_ports",
    "reply_each",
]

#: How long a request/reply peer (:func:`reply_each`) is kept without a request.
REPLY_IDLE_TIMEOUT = 10.0

#: Answers per second :func:`reply_each` sends one address once its burst is spent.
REPLY_RATE = 100.0
#: Answers :func:`reply_each` sends one address at once (the token bucket's size).
REPLY_BURST = 100

#: The lowest source port :func:`refuse_server_ports` takes for a client's: the ports
#: below it are the privileged ones, where servers (never clients) send from.
FIRST_CLIENT_PORT = 1024


def refuse_server_ports(ports: Collection[int] = ()) -> Callable[[tuple[str, int]], str | None]:
    """The request/reply services' loop rule, for ``serve_udp(refuse_source=...)``.

    Args:
      ports: more source ports to refuse, from any host: those of our own services
        (another of them would answer our answer).

    Returns:
      A rule that says why a source address cannot be a client (its port is below
      :data:`FIRST_CLIENT_PORT`, or one of ``ports``), or None for any other address.
    """
    refused = frozenset(ports)

    def rule(address: tuple[str, int]) -> str | None:
        port = address[1]
        if port < FIRST_CLIENT_PORT:
            return f"source port {port} is below {FIRST_CLIENT_PORT}: a server's, never a client's"
        if port in refused:
            return f"source port {port} is a port of our own UDP services"
        return None

    return rule


async def reply_each(
    peer: UDPPeer,
    answer: Callable[[bytes], bytes | None],
    *,
    idle_timeout: float = REPLY_IDLE_TIMEOUT,
    rate: float | None = REPLY_RATE,
    burst: int = REPLY_BURST,
) -> None:
    """Send ``answer(datagram)`` back for each datagram of ``peer`` (None: no reply).

    The request/reply services' loop (echo, time). A burst already queued is answered
    without a scheduler pass per datagram; the other awaits are for socket buffer space
    when the kernel has none, and for the pace. Ends when the server begins to stop (once
    the requests already queued are answered), and about
    ``idle_timeout`` seconds after the last request (see :meth:`UDPPeer.limit_idle`; the
    server's shorter ``peer_idle_timeout`` wins): the peer's entry is freed, and a later
    datagram from the same address starts afresh, so a stream of one-shot clients never
    fills the peer table.

    Args:
      peer: the client.
      answer: the reply to one request, or None for no reply.
      idle_timeout: seconds of silence after which the peer is forgotten.
      rate: answers per second after the first ``burst`` (a token bucket for this
        peer); None answers as fast as the peer asks.
      burst: answers sent at once before the rate applies.

    Raises:
      ValueError: for a ``rate`` that is not positive and finite or a ``burst`` below 1
        (before the first request).
    """
    if rate is not None:
        TokenBucket(rate, burst, 0.0)  # checks them now, not at the peer's second request
    peer.limit_idle(idle_timeout)
    # The bucket is made at the second answer: a one-shot client (most time clients)
    # holds none. The first answer is counted as if it were sent with the second.
    bucket: TokenBucket | None = None
    answered = False
    try:
        while True:
            request = await peer.receive()
            while True:
                reply = answer(request)
                if reply is not None:
                    if rate is not None:
                        if bucket is None and answered:
                            bucket = _spent_once(rate, burst)
                        answered = True
                        if bucket is not None and (delay := bucket.take(trio.current_time())):
                            await trio.sleep(delay)
                    try:
                        peer.send_nowait(reply)
                    except trio.WouldBlock:
                        await peer.send(reply)
                if not peer.pending:  # no exception: it would leave a frame object behind
                    break
                request = peer.receive_nowait()
    except trio.EndOfChannel:  # the server is stopping
        return


def _spent_once(rate: float, burst: int) -> TokenBucket:
    """A full bucket made now, less the token of the answer already sent."""
    now = trio.current_time()
    bucket = TokenBucket(rate, burst, now)
    bucket.take(now)
    return bucket
