"""The UDP dialect member: the tutorial's UDP group chat (``nc -u``, ``socat``).

Each datagram is one input item (``^hb^`` a heartbeat, ``quit`` a goodbye, anything
else a line, commands included). UDP cannot slow a sender: what the peer's queue cannot
hold is dropped by the transport, and the peer is told how many. Each event reaches the
peer as one datagram ending in LF; a UDP peer's room messages reach UDP peers in the
dialect's form ``[ip:port] text`` (its own, as the acknowledgement). The last datagram
is ``Bye!``, on ``quit`` and when the server stops.

Before any of that, :func:`admit` validates the address (see :mod:`triosock._sansio.chat._udp`):
until the peer sends back the token of its first reply, it is no member, hears no room
traffic, and gets at most :data:`~triosock._sansio.chat.REFLECTION_FACTOR` times the bytes
it sent: the notice ``send ^ok^TOKEN to join`` (30 bytes, so once the peer has sent 10),
at most once every :data:`NOTICE_INTERVAL` seconds, and ``Bye!`` to its ``quit``. Its
datagrams until then are dropped. A datagram that is itself a join notice (another chat
server's) earns no answer: two servers never talk to each other in a loop.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import trio

from ..._sansio import chat as proto
from ..._transport.outbox import DatagramSink, Outbox
from ..._transport.udp import UDPPeer
from ._member import EndReason, Member, Renderer

__all__ = ["NOTICE_INTERVAL", "UDPDialectMember", "UDPRenderer", "admit"]

#: Seconds between two join notices to one address not validated yet (one may be lost).
NOTICE_INTERVAL: Final = 5.0
#: The per-process secret of the address tokens.
_SECRET: Final = secrets.token_bytes(32)


class UDPRenderer(Renderer):
    """One datagram per event: the TCP line, or the ack form for a UDP peer's message."""

    __slots__ = ()
    joinable = False

    def frame(self, event: proto.Shown, viewer: str) -> bytes:
        if isinstance(event, proto.Message) and ":" in event.sender:
            host, _, port = event.sender.rpartition(":")
            if port.isdigit():
                return proto.udp_ack_line(host.strip("[]"), int(port), event.text) + b"\n"
        return proto.render_line(event, viewer=viewer or None) + b"\n"


@dataclass(frozen=True, slots=True)
class _Dropped:
    """An input item: the transport dropped ``count`` datagrams since the last report."""

    count: int


_RENDERER = UDPRenderer()
_BYE = proto.BYE + b"\n"
#: The dialect's farewell: ``Bye!`` when the peer said ``quit`` and when the server
#: stops; a peer an operator removed is told why; a peer that is slow or gone gets
#: nothing (UDP cannot tell it anything it would read).
_FAREWELLS: dict[EndReason, bytes] = {"quit": _BYE, "stopping": _BYE}


class UDPDialectMember(Member):
    """A chat user at one UDP peer address, speaking the tutorial dialect."""

    kind = "udp"
    renderer = _RENDERER
    welcome = False
    tells_token = False  # it resumes by its address
    #: Missed lines are datagrams: a resume shows at most this many (the rest counted).
    catch_up_limit = 100

    def __init__(self, peer: UDPPeer) -> None:
        self.peer = peer
        self.label = peer.peer
        self.preferred_nick = peer.peer  # named by its address, which no user can take
        self.resume_key = f"udp {peer.peer}"  # validated: only its owner can speak from it
        self.outbox = Outbox(DatagramSink(peer))
        self._told_dropped = 0

    async def receive(self) -> Sequence[object] | None:
        try:
            burst: list[object] = [await self.peer.receive()]
        except trio.EndOfChannel:
            return None
        with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
            while True:
                burst.append(self.peer.receive_nowait())
        if self.peer.dropped > self._told_dropped:  # UDP cannot slow a sender: say so
            burst.append(_Dropped(self.peer.dropped - self._told_dropped))
            self._told_dropped = self.peer.dropped
        return burst

    def handle(self, session: proto.ChatSession, item: object, now: float) -> list[proto.Effect]:
        if isinstance(item, _Dropped):
            return [
                proto.Tell(
                    f"{item.count} datagrams dropped: you sent faster than the chat takes "
                    f"them (it queues {self.peer.server.queue_size})"
                )
            ]
        assert isinstance(item, bytes)
        return session.receive_datagram(item, now)

    def farewell(self, reason: EndReason, detail: str) -> bytes | None:
        if reason == "removed":  # by an operator: told why, as the other transports are
            return _RENDERER.notice(f"disconnected: {detail}")
        return _FAREWELLS.get(reason)

    def hold_idle(self) -> contextlib.AbstractContextManager[None]:
        return self.peer.hold_idle()

    def detaches_when_cancelled(self) -> bool:
        return self.peer.idle_expired and not self.stopping

    def cancelled_by(self) -> str | None:
        if self.peer.idle_expired:  # its idle timeout, or the expiry of its heartbeats
            return "the UDP peer expired"
        return super().cancelled_by()

    def stop_scope(self) -> trio.CancelScope:
        return self.peer.stop_scope()

    @property
    def stopping(self) -> bool:
        return self.peer.stopping


async def admit(peer: UDPPeer, secret: bytes = _SECRET) -> bool:
    """Validate the peer's address: True once it sent its token back, False when it said
    ``quit`` or the server stopped first (see the module notes for what it is sent).

    Args:
      peer: a peer the server has just met.
      secret: the key of the tokens (the process's own by default).
    """
    token = proto.address_token(secret, *peer.address)
    notice = proto.join_notice(token) + b"\n"
    budget = 0  # REFLECTION_FACTOR times what it sent, less what it was sent
    told_at: float | None = None
    while True:
        try:
            data = await peer.receive()
        except trio.EndOfChannel:
            return False
        if proto.is_address_token(data, token):
            return True
        if proto.notice_token_untrusted(data) is not None:
            continue  # another server's notice: answering it could start a loop
        budget += proto.REFLECTION_FACTOR * len(data)
        if isinstance(proto.classify_datagram_untrusted(data), proto.UdpQuit):
            if budget >= len(_BYE):
                await peer.send(_BYE)
            return False
        now = trio.current_time()
        if budget >= len(notice) and (told_at is None or now - told_at >= NOTICE_INTERVAL):
            await peer.send(notice)
            budget -= len(notice)
            told_at = now
