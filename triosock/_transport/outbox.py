"""Whole frames waiting for one peer: written without waiting when the socket takes them,
never torn, and a clock on how long the peer has stopped draining.

A server that fans messages out to many peers from one task (the chat) cannot wait on
any of them, and must not cut one message short to start another. :class:`Outbox` is
that peer's output queue:

* :meth:`Outbox.put` adds a frame (a whole line, a batch of whole lines, a datagram, a
  WebSocket frame) and, when nothing is waiting before it, writes what the socket takes
  at once. It never waits and is not a checkpoint.
* What the socket did not take waits in the outbox. The peer's own writer task loops on
  :meth:`Outbox.wait_queued` and :meth:`Outbox.flush`, which waits until the socket can
  take more. Only the head frame is ever partly written, and it is always finished
  before anything else is written, so the peer never sees a frame torn and another
  after it. A cancelled ``flush`` stops between writes, with the rest still queued.
* :attr:`Outbox.queued` (bytes waiting) and :attr:`Outbox.waiting_since` (the time the
  socket last took anything while output waited) are what a caller's rule for slow
  peers looks at; ``flush(stall_timeout=S)`` raises :class:`OutboxStalled` when the
  socket took nothing for ``S`` seconds. The outbox sets no bound itself: the caller
  decides what a full one means (drop, disconnect, or stop feeding it).
* A failing socket does not raise in ``put``: the outbox remembers the error, drops
  what it holds, and the writer's next ``flush`` raises it.
* :meth:`Outbox.reset_on_close`: the peer was given up for not reading; its connection
  will close with a reset if the kernel still holds bytes for it, which frees them.

Sinks (see :class:`Sink`): a stream whose frames may share a write (TCP, TLS) or a
datagram socket whose frames are sent one by one (a UDP peer). A sink that cannot write
without waiting (TLS) is written by the writer task only, whole batch by whole batch,
shielded from cancellation and bounded by the stall timeout.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import trio

from .._errors import TriosockError
from .channel import TrySendStream

if TYPE_CHECKING:
    from .udp import UDPPeer

__all__ = [
    "DatagramSink",
    "Outbox",
    "OutboxStalled",
    "ResettableStream",
    "Sink",
    "StreamSink",
]

#: The most bytes joined into one write of a stream sink.
JOIN_LIMIT = 256 * 1024

# What a failing socket raises; the outbox keeps it for the writer instead.
_SOCKET_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError)


class OutboxStalled(TriosockError):
    """The peer's socket took nothing for the stall timeout while output waited.

    Attributes:
      queued: bytes that were waiting.
      seconds: how long the socket had taken nothing.
    """

    def __init__(self, queued: int, seconds: float) -> None:
        super().__init__(f"the socket took nothing for {seconds:g} s ({queued} bytes waiting)")
        self.queued = queued
        self.seconds = seconds


@runtime_checkable
class ResettableStream(Protocol):
    """A stream that can be closed with a reset (``RawSocketStream``, ``TCPConnection``)."""

    def reset_on_close(self) -> None:
        """Close with a reset if the kernel still holds bytes the peer has not taken."""
        ...


class Sink(Protocol):
    """What an :class:`Outbox` writes to."""

    @property
    def joinable(self) -> bool:
        """True for a stream (frames may share one write), False for datagrams."""
        ...

    @property
    def can_try_send(self) -> bool:
        """Whether :meth:`try_send` works; if not, only :meth:`send` is used."""
        ...

    def try_send(self, data: bytes | memoryview) -> int:
        """Write what the socket takes now, without waiting; return how many bytes it
        took, 0 when it has no room (as ``socket.send`` does without blocking).

        A datagram sink takes a whole frame or nothing. Raises trio's
        ``BrokenResourceError`` / ``ClosedResourceError`` when the socket failed.
        """
        ...

    async def wait_writable(self) -> None:
        """Return when :meth:`try_send` may take something."""
        ...

    async def send(self, data: bytes) -> None:
        """Write all of ``data``, waiting as needed (for sinks without ``try_send``)."""
        ...


class Outbox:
    """One peer's output queue of whole frames.

    Args:
      sink: where the frames go.
    """

    __slots__ = (
        "_counts",
        "_error",
        "_frames",
        "_in_flight",
        "_joinable",
        "_lot",
        "_nowait",
        "_offset",
        "_progress",
        "_sealed",
        "_sink",
        "_try_send",
        "_writing",
        "control",
        "discarded",
        "queued",
        "waiting_since",
        "written",
    )

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._joinable = sink.joinable
        self._nowait = sink.can_try_send
        self._try_send = sink.try_send
        self._frames: deque[bytes] = deque()
        self._counts: deque[int] = deque()  # how many messages (lines) each frame holds
        self._offset = 0  # bytes of the head frame written already
        # The writer task is waiting for the socket or in a batch write: puts only queue,
        # and the first _in_flight frames (a batch being written) are not to be dropped.
        self._writing = False
        self._in_flight = 0
        self._error: BaseException | None = None
        self._sealed = False  # seal(): later puts are dropped
        self._lot = trio.lowlevel.ParkingLot()
        # Tasks in write_some while another one writes; made on first use.
        self._progress: trio.lowlevel.ParkingLot | None = None
        #: Bytes waiting for the socket.
        self.queued = 0
        #: Of those, the bytes of frames that hold no message (``count`` 0), which the drop
        #: methods keep; counted until their frame is written whole.
        self.control = 0
        #: When the socket last took anything while output waited (trio time); only
        #: meaningful while :attr:`queued` is non-zero.
        self.waiting_since = 0.0
        #: Messages handed to the socket whole.
        self.written = 0
        #: Messages dropped by :meth:`drop_oldest` (a backlog policy: the peer is told),
        #: not by :meth:`drop_waiting` (at the end: what it never got is still owed).
        self.discarded = 0

    def __repr__(self) -> str:
        return f"<Outbox frames={len(self._frames)} queued={self.queued}>"

    @property
    def frames(self) -> int:
        """How many frames wait (the head one may be partly written)."""
        return len(self._frames)

    @property
    def error(self) -> BaseException | None:
        """Why the socket failed, once it has."""
        return self._error

    # -- adding ------------------------------------------------------------------------

    def put(self, frame: bytes, count: int = 1) -> None:
        """Queue a whole frame holding ``count`` messages; write what the socket takes now.

        Never waits. After a socket error, or once sealed, the frame is dropped.
        """
        if self._error is not None or self._sealed:
            return
        sent = 0
        if not self._frames and self._nowait and not self._writing:
            try:
                sent = self._try_send(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._fail(exc)
                return
            except trio.BusyResourceError:  # somebody else is writing: queue it after them
                sent = 0
            if sent == len(frame):
                self.written += count
                return
        first = not self._frames
        if first:  # output starts waiting now (the head may be partly written)
            self.waiting_since = trio.current_time()
            self._offset = sent
        self._frames.append(frame)
        self._counts.append(count)
        self.queued += len(frame) - sent
        if not count:
            self.control += len(frame)
        if first:
            self._lot.unpark_all()

    def reset_on_close(self) -> None:
        """The peer was given up for not reading: when its connection closes, reset it
        if the kernel still holds bytes for it (a stream sink's stream that can; see
        :meth:`~triosock._transport.rawsocket.RawSocketStream.reset_on_close`). What
        waits here is still written as the caller decides. Not a checkpoint."""
        reset = getattr(self._sink, "reset_on_close", None)
        if reset is not None:
            reset()

    def seal(self) -> None:
        """Drop every frame put from now on; what is queued already is still written.
        For a protocol that must send nothing after its last frame (a WebSocket close)."""
        self._sealed = True

    @property
    def sealed(self) -> bool:
        """True once :meth:`seal` was called."""
        return self._sealed

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        self._frames.clear()
        self._counts.clear()
        self._offset = 0
        self.queued = 0
        self.control = 0
        self._lot.unpark_all()
        self._wake_others()

    def _wake_others(self) -> None:
        """Wake the tasks in ``write_some`` waiting for another one's write."""
        if self._progress:
            self._progress.unpark_all()

    # -- dropping ----------------------------------------------------------------------

    def drop_waiting(self) -> int:
        """Drop every message frame not begun yet; return how many messages they held.

        The head frame, if partly written, stays: it must be finished first; so does a batch
        that a sink without ``try_send`` is writing, and so do frames that hold no
        message (``count`` 0: notices, protocol replies).
        """
        return self._drop_until(0)

    def drop_oldest(self, limit: int) -> int:
        """Drop the oldest message frames not begun yet until at most ``limit`` bytes wait.

        Returns how many messages the dropped frames held. Frames holding no message and
        a partly written head stay, as in :meth:`drop_waiting`.
        """
        dropped = self._drop_until(limit)
        self.discarded += dropped
        return dropped

    def _drop_until(self, limit: int) -> int:
        queued = self.queued
        if queued <= limit:
            return 0
        frames, counts = self._frames, self._counts
        start = max(1 if self._offset else 0, self._in_flight)
        kept_frames = deque(itertools.islice(frames, start))
        kept_counts = deque(itertools.islice(counts, start))
        dropped = 0
        for frame, count in zip(
            itertools.islice(frames, start, None),
            itertools.islice(counts, start, None),
            strict=True,
        ):
            if count and queued > limit:
                queued -= len(frame)
                dropped += count
            else:
                kept_frames.append(frame)
                kept_counts.append(count)
        self._frames, self._counts, self.queued = kept_frames, kept_counts, queued
        return dropped

    # -- writing ----------------------------------------------------------------------

    def write_nowait(self) -> None:
        """Write everything waiting now, without waiting for the socket.

        Not a checkpoint. A socket error is remembered (see :attr:`error`), not raised:
        what waited is dropped, so nothing is left.

        Raises:
          trio.WouldBlock: the socket did not take everything (it took what it could;
            the rest waits, the head frame maybe partly written).
        """
        if not self._write_available():
            raise trio.WouldBlock

    def _write_available(self) -> bool:
        """Write what the socket takes now; whether nothing is left."""
        frames = self._frames
        send = self._try_send
        try:
            while frames:
                if self._joinable and len(frames) > 1:
                    data: bytes | memoryview = self._joined()
                elif self._offset:
                    data = memoryview(frames[0])[self._offset :]
                else:
                    data = frames[0]
                try:
                    sent = send(data)
                except trio.BusyResourceError:
                    return False  # somebody else is writing; the writer task comes back
                if not sent:
                    return False
                self.waiting_since = trio.current_time()
                self._consume(sent)
                if sent < len(data):
                    return False
        except _SOCKET_ERRORS as exc:
            self._fail(exc)
        return True

    def _joined(self, limit: int = JOIN_LIMIT) -> bytes:
        """The head frame's unwritten rest and the frames after it, up to ``limit`` bytes."""
        frames = self._frames
        head = frames[0]
        parts: list[bytes | memoryview] = [
            memoryview(head)[self._offset :] if self._offset else head
        ]
        size = len(parts[0])
        for frame in itertools.islice(frames, 1, None):
            if size >= limit:
                break
            parts.append(frame)
            size += len(frame)
        return b"".join(parts)

    def _consume(self, sent: int) -> None:
        """Account for ``sent`` bytes written from the head onwards."""
        frames, counts = self._frames, self._counts
        self.queued -= sent
        done = self._offset + sent
        while frames and done >= len(frames[0]):
            frame = frames.popleft()
            done -= len(frame)
            count = counts.popleft()
            self.written += count
            if not count:
                self.control -= len(frame)
        self._offset = done

    async def wait_queued(self) -> None:
        """Return once frames wait for the socket (or the socket failed)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._frames or self._error is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        while not self._frames and self._error is None:
            await self._lot.park()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise trio.BrokenResourceError(f"the socket failed: {self._error}") from self._error

    async def write_some(self, *, stall_timeout: float | None = None) -> None:
        """Wait until the socket takes more, and write what it takes.

        Raises:
          OutboxStalled: the socket took nothing for ``stall_timeout`` seconds.
          trio.BrokenResourceError: the socket failed (now or earlier).
        """
        self._raise_error()
        if not self._frames:
            await trio.lowlevel.checkpoint()
            return
        deadline = math.inf if stall_timeout is None else self.waiting_since + stall_timeout
        if self._writing:  # another task is writing: wait for what it does
            if self._progress is None:
                self._progress = trio.lowlevel.ParkingLot()
            with trio.move_on_at(deadline) as scope:
                await self._progress.park()
            self._raise_error()
            if scope.cancelled_caught:
                raise self._stalled()
            return
        # First what the socket takes now: a peer that drained since the last write has
        # not stalled, however long ago that write was.
        if self._nowait and self._write_available():
            await trio.lowlevel.checkpoint()
            return
        if self._nowait:
            self._writing = True
            try:
                with trio.move_on_at(deadline) as scope:
                    await self._sink.wait_writable()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._fail(exc)
            finally:
                self._writing = False
                self._wake_others()
            self._raise_error()
            if scope.cancelled_caught:
                raise self._stalled()
            self._write_available()
        else:
            await self._send_batch(deadline)
        self._raise_error()

    async def _send_batch(self, deadline: float) -> None:
        """For a sink that cannot write without waiting: one batch, never cut short."""
        if self._joinable:
            data = self._joined()
            batch = len(self._frames) if len(data) == self.queued else self._frames_in(len(data))
        else:
            data, batch = self._frames[0], 1
        self._writing, self._in_flight = True, batch
        # Shielded, so that cancelling the writer never tears a frame; bounded by the
        # stall deadline all the same, after which the stream is given up: it may hold
        # part of the batch.
        try:
            with trio.CancelScope(deadline=deadline, shield=True) as scope:
                await self._sink.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._fail(exc)
            return
        finally:
            self._writing, self._in_flight = False, 0
            self._wake_others()
        if scope.cancelled_caught:
            stalled = self._stalled()
            self._fail(stalled)
            raise stalled
        self.waiting_since = trio.current_time()
        self._consume(len(data))
        await trio.lowlevel.checkpoint_if_cancelled()

    def _frames_in(self, size: int) -> int:
        """How many frames from the head make up the first ``size`` unwritten bytes."""
        total, count = -self._offset, 0
        for frame in self._frames:
            if total >= size:
                break
            total += len(frame)
            count += 1
        return count

    def _stalled(self) -> OutboxStalled:
        return OutboxStalled(self.queued, trio.current_time() - self.waiting_since)

    async def flush(self, *, stall_timeout: float | None = None) -> None:
        """Write everything waiting, waiting for the socket as needed.

        Cancelled, it stops between writes: what was not written stays queued, and the
        head frame is finished by the next write.

        Raises:
          OutboxStalled: the socket took nothing for ``stall_timeout`` seconds.
          trio.BrokenResourceError: the socket failed.
        """
        self._raise_error()
        if not self._frames:
            await trio.lowlevel.checkpoint()
            return
        while self._frames:
            await self.write_some(stall_timeout=stall_timeout)


class StreamSink:
    """An :class:`Outbox` sink over a trio stream (TCP, TLS, in-memory).

    Writes without waiting where the stream allows it (``try_send``: a plain TCP
    connection); otherwise only the writer task writes, with ``send_all``.
    """

    __slots__ = ("_stream", "can_try_send", "try_send")

    joinable = True

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self.can_try_send = isinstance(stream, TrySendStream) and stream.can_try_send
        self.try_send: Callable[[bytes | memoryview], int] = (
            stream.try_send
            if isinstance(stream, TrySendStream) and self.can_try_send
            else self._cannot
        )

    @staticmethod
    def _cannot(data: bytes | memoryview) -> int:
        raise trio.WouldBlock("this stream cannot write without waiting")

    async def wait_writable(self) -> None:
        """Return when the stream may take more (``wait_send_all_might_not_block``)."""
        await self._stream.wait_send_all_might_not_block()

    async def send(self, data: bytes) -> None:
        """Write all of ``data`` (``send_all``)."""
        await self._stream.send_all(data)

    def reset_on_close(self) -> None:
        """Have the stream close with a reset, if it can (see :meth:`Outbox.reset_on_close`)."""
        if isinstance(self._stream, ResettableStream):
            self._stream.reset_on_close()


class DatagramSink:
    """An :class:`Outbox` sink for one UDP peer of a server: a datagram a frame."""

    __slots__ = ("_peer",)

    joinable = False
    can_try_send = True

    def __init__(self, peer: UDPPeer) -> None:
        self._peer = peer

    def try_send(self, data: bytes | memoryview) -> int:
        """Send ``data`` as one datagram if the socket has room now; its size, or 0."""
        try:
            self._peer.send_nowait(bytes(data))
        except trio.WouldBlock:
            return 0
        return len(data)

    async def wait_writable(self) -> None:
        """Return when the server's socket may take a datagram."""
        await self._peer.wait_writable()

    async def send(self, data: bytes) -> None:
        """Send ``data`` as one datagram, waiting for room if the socket has none."""
        await self._peer.send(data)
