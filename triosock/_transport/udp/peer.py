"""One remote address of a UDP server, as a message channel (see :class:`UDPPeer`)."""

from __future__ import annotations

import contextlib
from collections import deque
from typing import TYPE_CHECKING, final

import outcome
import trio

from ..._liveness import IdleTimer
from ..._sansio.addresses import format_address
from .._lifecycle import NoPublicConstructor
from .sockets import Address

if TYPE_CHECKING:  # the server makes its peers; a peer only refers to it
    from .server import UDPServer

__all__ = ["UDPPeer"]


@final
class UDPPeer(trio.abc.Channel[bytes], metaclass=NoPublicConstructor):
    """One remote address of a UDP server, as a message channel.

    ``receive()`` gives this peer's datagrams in arrival order (what the queue could
    hold); ``send(data)`` sends one datagram to it from the server's socket. Once the
    server begins to stop, ``receive()`` raises :class:`trio.EndOfChannel` after the
    datagrams already queued: no more will come. ``aclose()`` ends the peer: its queue is
    dropped and a later datagram from the same address starts a new handler.

    One task receives at a time (a second gets :class:`trio.BusyResourceError`). A
    datagram for a task waiting in ``receive()`` is handed to it directly; the queue, made
    on first need, holds only the datagrams that arrive while the task is busy. Made by
    the server for its handler, not by users.
    """

    __slots__ = (
        "_closed",
        "_ended",
        "_idle",
        "_lapsed",
        "_lifetime",
        "_queue",
        "_scope",
        "_seen",
        "_waiter",
        "address",
        "dropped",
        "server",
    )

    def __init__(self, server: UDPServer, address: Address) -> None:
        self.server = server
        self.address = address
        self.dropped = 0
        self._queue: deque[bytes] | None = None
        self._waiter: trio.lowlevel.Task | None = None
        self._closed = False
        self._ended = False  # the server stopped reading: nothing more will be queued
        # cancelled to end the peer (evicted, lifetime over); with a peer_idle_timeout,
        # the idle timer's scope is this scope
        self._scope: trio.CancelScope | None = None
        self._idle: IdleTimer | None = None
        self._seen = 0.0  # when its last datagram arrived (per receive batch)
        self._lifetime: float | None = None  # see limit_idle
        self._lapsed = False  # ended by limit_idle's sweep

    @property
    def peer(self) -> str:
        """The address as text, ``ip:port``."""
        return format_address(self.address)

    @property
    def stopping(self) -> bool:
        """True once the server has begun to stop."""
        return self.server.stopping

    def stop_scope(self) -> trio.CancelScope:
        """A cancel scope cancelled when the server begins to stop (see serve_udp)."""
        return self.server.stop_scope()

    def touch(self) -> None:
        """Count this as life from the peer (the server does it for every datagram)."""
        if self._idle is not None:
            self._idle.touch()

    def limit_idle(self, seconds: float) -> None:
        """End this peer after about ``seconds`` of silence, unless the server's own
        ``peer_idle_timeout`` is shorter: for handlers that know their peers go quiet (a
        request/reply service).

        Unlike ``peer_idle_timeout`` (exact, a cancel scope deadline moved by every
        datagram), this costs nothing per datagram: the server looks for such peers
        every quarter of the time, so one ends between ``seconds`` and 1.25 times that
        after its last datagram.
        """
        if not seconds > 0:
            raise ValueError(f"idle time must be a positive number of seconds: {seconds}")
        if self._idle is not None and self._idle.timeout <= seconds:
            return  # the server's own, shorter timeout ends it first
        self._lifetime = seconds
        self.server._sweep_for(seconds)

    @property
    def idle_expired(self) -> bool:
        """True once the peer was ended for its silence (the server's
        ``peer_idle_timeout``, or :meth:`limit_idle`): its handler is being cancelled."""
        return self._lapsed or (self._idle is not None and self._idle.expired)

    def hold_idle(self) -> contextlib.AbstractContextManager[None]:
        """Stop the peer's idle clock for the body; it restarts from the end of the block."""
        return self._idle.held() if self._idle is not None else contextlib.nullcontext()

    async def receive(self) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._queue:
            data = self._take()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        self._check_receivable()
        if self._waiter is not None:
            raise trio.BusyResourceError("another task is receiving from this peer")
        self._waiter = trio.lowlevel.current_task()
        data = await trio.lowlevel.wait_task_rescheduled(self._abort_receive)
        assert isinstance(data, bytes)
        return data

    def _abort_receive(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED

    def receive_nowait(self) -> bytes:
        """The next queued datagram, or :class:`trio.WouldBlock` when none is queued."""
        if self._queue:
            return self._take()
        self._check_receivable()
        raise trio.WouldBlock

    @property
    def pending(self) -> int:
        """How many datagrams are queued: ``receive_nowait`` succeeds while this is not 0."""
        return len(self._queue) if self._queue is not None else 0

    def _take(self) -> bytes:
        queue = self._queue
        assert queue
        data = queue.popleft()
        if not queue:  # an empty deque is over half a KiB: a waiting peer holds none
            self._queue = None
        return data

    def _check_receivable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the peer was closed")
        if self._ended:
            raise trio.EndOfChannel

    async def send(self, value: bytes) -> None:
        await self.server.sendto(value, self.address)

    def send_nowait(self, value: bytes) -> None:
        """Send now if the socket's buffer has room, else :class:`trio.WouldBlock`."""
        self.server.sendto_nowait(value, self.address)

    async def wait_writable(self) -> None:
        """Return when the server's socket may take a datagram (any number may wait)."""
        await self.server.wait_writable()

    async def aclose(self) -> None:
        self._close()
        await trio.lowlevel.checkpoint()

    def _close(self) -> None:
        self._closed = True
        self._queue = None
        self._wake(outcome.Error(trio.ClosedResourceError("the peer was closed")))
        self.server._forget(self)

    def _cancel(self) -> None:
        """End the peer's task (evicted, lifetime over), even one that has not begun."""
        if self._scope is None:
            self._scope = trio.CancelScope()
        self._scope.cancel()

    def _end(self) -> None:
        """The server stopped reading: a waiting (or the next) receive sees the end."""
        self._ended = True
        if not self._queue:
            self._wake(outcome.Error(trio.EndOfChannel()))

    def _wake(self, result: outcome.Outcome[bytes]) -> None:
        task = self._waiter
        if task is not None:
            self._waiter = None
            trio.lowlevel.reschedule(task, result)

    def _deliver(self, data: bytes) -> bool:
        if self._waiter is not None:  # the handler waits for it: straight in its hands
            task, self._waiter = self._waiter, None
            trio.lowlevel.reschedule(task, outcome.Value(data))
            return True
        queue = self._queue
        if queue is None:
            if self._closed:
                self.dropped += 1
                return False
            queue = self._queue = deque()
        if len(queue) >= self.server.queue_size:
            self.dropped += 1
            return False
        queue.append(data)
        return True
