"""A framed message channel over any trio byte stream.

:class:`FramedChannel` implements ``trio.abc.Channel[bytes]`` on top of a
``trio.abc.Stream`` and a sans-IO framer, so a TCP ``SocketStream``, a TLS
``SSLStream`` and ``trio.testing.memory_stream_pair`` are interchangeable beneath it.

Contract (trio's, plus framing):

* ``receive()`` returns the next whole message; at the stream's clean end it raises
  :class:`trio.EndOfChannel` (an unterminated last line is delivered first). Two tasks
  receiving at once get :class:`trio.BusyResourceError`.
* A framing error is raised by ``receive()`` once, after every message that preceded it
  has been delivered, and the channel goes on: a message over the framer's limit is
  refused whole (:class:`~triosock.MessageTooLargeError`, raised as soon as the message is
  known to be too long) and skipped as it arrives, without being kept, and the next
  ``receive()`` returns the message after it. So a handler may catch the error, answer
  it, and go on receiving; one refused message costs one error. A stream that ends
  inside a length-prefixed message gives a :class:`~triosock.FramingError`, then
  :class:`trio.EndOfChannel`.
* The limit applies to ``send()`` too: a message the framer would refuse raises
  :class:`~triosock.MessageTooLargeError` (or :class:`~triosock.FramingError`, a line with
  an LF in it) and nothing is sent; the channel stays usable.
* ``send()`` frames one message; ``send_many()`` frames several into one write (what a
  writer that coalesces its queue wants). Concurrent senders are serialised in FIFO order
  by a lock, so messages are never interleaved on the wire. To write without waiting
  (a task that serves many peers), put whole frames in an :class:`~triosock.Outbox`.
* ``aclose()`` closes the stream, always, even when cancelled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Coroutine, Iterable
from typing import Protocol, runtime_checkable

import trio

from .._errors import FramingError, MessageTooLargeError, TriosockError
from .._sansio.framing import Framer, LineFramer
from .rawsocket import DEFAULT_RECEIVE_SIZE

__all__ = ["DEFAULT_RECEIVE_SIZE", "FramedChannel", "TrySendStream"]


@runtime_checkable
class TrySendStream(Protocol):
    """A stream that can also write without waiting (``RawSocketStream``, ``TCPConnection``)."""

    @property
    def can_try_send(self) -> bool:
        """Whether :meth:`try_send` works on this stream."""
        ...

    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """Write what the kernel takes now; return the number of bytes (0 when full)."""
        ...


@runtime_checkable
class DirectStream(Protocol):
    """A stream whose ``receive_some`` and ``send_all`` are another stream's, unchanged
    (``TCPConnection``): a framed channel calls the inner stream's directly."""

    @property
    def direct_stream(self) -> trio.abc.Stream:
        """The stream that does this one's reads and writes."""
        ...


class FramedChannel(trio.abc.Channel[bytes]):
    """Whole messages over a byte stream.

    Args:
      stream: the byte stream to frame; the channel owns it from now on.
      framer: a sans-IO framer (:class:`~triosock.LineFramer` by default, with its 64 KiB
        limit).
      receive_size: the largest read asked of the stream at once; None (the default)
        lets the stream choose (``receive_some()``: 64 KiB, then 256 KiB once a read
        has filled that, over TCP).
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        framer: Framer | None = None,
        *,
        receive_size: int | None = None,
    ) -> None:
        self._stream = stream
        inner = stream.direct_stream if isinstance(stream, DirectStream) else stream
        self._receive_some = inner.receive_some
        self._send_all = inner.send_all
        self._framer: Framer = framer if framer is not None else LineFramer()
        self._feed = self._framer.feed
        self._encode = self._framer.encode
        self._receive_size = receive_size
        self._pending: deque[bytes] = deque()
        self._error: FramingError | None = None  # to raise once what precedes it is taken
        self._resume = False  # after a raised framing error: frame what the framer kept
        self._refusal = False  # either of the two: one test on the hot path
        self._eof = False
        self._closed = False
        self._receiving = False
        self._send_lock = _SendGate()

    @property
    def stream(self) -> trio.abc.Stream:
        """The underlying byte stream."""
        return self._stream

    @property
    def framer(self) -> Framer:
        """The framer that cuts the stream into messages and frames what is sent."""
        return self._framer

    # -- receiving ---------------------------------------------------------------------

    async def receive(self) -> bytes:
        return await self._receive(trio.EndOfChannel)

    def __anext__(self) -> Coroutine[object, None, bytes]:
        # ``async for`` gets the receiving coroutine itself: one frame, not three
        return self._receive(StopAsyncIteration)

    def receive_nowait(self) -> bytes:
        """The next message if one is already buffered, else :class:`trio.WouldBlock`.

        Never reads the stream: it serves the messages the last read completed, so a
        reader can take a burst with one await. It never raises a framing error: when one
        is next, it says :class:`trio.WouldBlock`, and ``receive()`` raises the error.
        """
        if self._closed:
            raise trio.ClosedResourceError("the channel was closed")
        pending = self._pending
        if not pending and self._error is None and self._resume:
            self._frame_what_was_kept()
        if not pending:
            raise trio.WouldBlock  # (a framing error is for receive() to raise, in place)
        return pending.popleft()

    def _next_buffered(self) -> bytes | None:
        """The next message the channel holds without reading the stream, or None.

        Raises the framing error waiting to be raised (once): from then on, what
        followed the refused message in the same read is framed again.
        """
        pending = self._pending
        while not pending:
            error = self._error
            if error is not None:
                self._error = None
                self._resume = True
                raise error
            if not self._resume:
                return None
            self._frame_what_was_kept()
        return pending.popleft()

    def _frame_what_was_kept(self) -> None:
        """After a raised framing error: frame what followed the refused message."""
        self._resume = False
        try:
            self._pending.extend(self._framer.feed_eof() if self._eof else self._feed(b""))
        except FramingError as exc:
            self._refused(exc)
        self._refusal = self._error is not None

    def _refused(self, exc: FramingError) -> None:
        """Keep ``exc`` to raise after the messages that preceded it."""
        if isinstance(exc, MessageTooLargeError):
            self._pending.extend(exc.messages)
            exc.messages = []  # delivered by receive(): nobody delivers them twice
        self._error = exc
        self._refusal = True

    async def _receive(self, end: type[Exception]) -> bytes:
        """The next message; at the stream's end, raise ``end``.

        Every message one read completes is parsed in that one pass: the first is
        returned, the others wait in ``_pending`` for the next calls.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this channel")
        self._receiving = True
        try:
            if self._closed:
                raise trio.ClosedResourceError("the channel was closed")
            pending = self._pending
            if pending:
                await trio.lowlevel.checkpoint()
                return pending.popleft()
            while True:
                if self._refusal:
                    await trio.lowlevel.checkpoint()
                    message = self._next_buffered()
                    if message is not None:
                        return message
                if self._eof:
                    raise end
                data = await self._receive_some(self._receive_size)
                try:
                    messages = self._feed(bytes(data)) if data else self._end()
                except FramingError as exc:
                    self._refused(exc)
                    continue
                if messages:
                    if len(messages) > 1:
                        pending.extend(messages)
                        return pending.popleft()
                    return messages[0]
        finally:
            self._receiving = False

    def _end(self) -> list[bytes]:
        self._eof = True
        return self._framer.feed_eof()

    # -- sending -----------------------------------------------------------------------

    async def send(self, value: bytes) -> None:
        data = self._encode(value)
        gate = self._send_lock
        if gate._busy:
            await self._send_locked(data)
            return
        gate._busy = True  # uncontended: straight to the stream
        try:
            await self._send_all(data)
        finally:
            gate.release()

    async def send_many(self, values: Iterable[bytes]) -> None:
        """Send several messages in one write (one ``send_all``), in order."""
        await self._send_locked(self._framer.encode_many(values))

    async def _send_locked(self, data: bytes) -> None:
        gate = self._send_lock
        await gate.acquire()
        try:
            await self._write(data)
        finally:
            gate.release()

    async def _write(self, data: bytes) -> None:
        """Write ``data``; the caller holds the gate."""
        if data:
            await self._send_all(data)
        else:
            await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        """Half-close: tell the peer no more messages follow, and keep receiving.

        Raises:
          TriosockError: the stream cannot half-close (TLS has no half-close).
        """
        if not isinstance(self._stream, trio.abc.HalfCloseableStream):
            raise TriosockError(f"{type(self._stream).__name__} cannot half-close")
        async with self._send_lock:
            await self._stream.send_eof()

    # -- closing -----------------------------------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        self._pending.clear()
        await self._stream.aclose()


class _SendGate:
    """A FIFO mutex for the senders of one channel, cheap when uncontended.

    trio's ``Lock`` tracks its owning task (so that a task dying while holding it breaks
    the lock for the waiters); that bookkeeping cost about a tenth of a small chat write.
    Here the holder is always inside ``_send_locked``'s try/finally, so no tracking is
    needed. Uncontended, ``acquire`` takes no scheduler pass (``send_all`` checkpoints
    anyway); contended, waiters park in FIFO order and ``release`` hands the gate to the
    first of them directly, so nobody can overtake a waiter.
    """

    __slots__ = ("_busy", "_waiters")

    def __init__(self) -> None:
        self._busy = False
        self._waiters: trio.lowlevel.ParkingLot | None = None  # made on first contention

    async def acquire(self) -> None:
        if not self._busy:
            self._busy = True
            return
        if self._waiters is None:
            self._waiters = trio.lowlevel.ParkingLot()
        await self._waiters.park()  # woken by release(), which hands the gate over

    def release(self) -> None:
        if self._waiters:
            self._waiters.unpark()  # still busy: the gate passes to the first waiter
        else:
            self._busy = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()
