"""A lean trio stream over a plain, non-blocking stdlib socket; and its listener.

Why not ``trio.SocketStream``: profiled under the echo benchmark (64-byte ping-pong, see
benchmarks/README.md), its error-translation context manager and conflict detector cost
18-27% of trio's per-round-trip CPU against a raw ``trio.socket`` loop. This stream keeps
the same contract — trio's ``HalfCloseableStream`` checks pass on it (tests/test_channel.py)
— with two flags and direct ``recv``/``send`` calls:

* every method is a cancel point: it raises :class:`trio.Cancelled` when called in a
  cancelled scope, even when it would not block, and a wait is a checkpoint;
* ``receive_some`` is always a schedule point, and takes it *before* reading: while the
  other tasks run, the peer's next message has usually arrived, so the read succeeds
  without a failed ``recv`` and an epoll registration first;
* ``send_all`` is a schedule point too, except for the first send after a
  ``receive_some`` on the same stream: that answer rides on the receive's schedule point
  (a request/reply round trip costs one scheduler pass, as in asyncio, instead of two).
  A task therefore never runs more than one such send past a yield; a task that only
  sends yields on every send. trio's maintainers propose the same kind of saving for
  every checkpoint (python-trio/trio#1757);
* two tasks receiving (or sending) at once get :class:`trio.BusyResourceError`;
* after ``aclose()`` every method raises :class:`trio.ClosedResourceError`, and tasks
  blocked on the socket are woken with it;
* an :class:`OSError` becomes :class:`trio.BrokenResourceError`, never leaks out.

It also offers :meth:`RawSocketStream.try_send`, a write that never waits (the chat
fan-out), :attr:`RawSocketStream.on_receive`, a hook for an idle timer, and
:meth:`RawSocketStream.reset_on_close`, for a peer given up for not reading.

:class:`RawSocketListener` retries accepts that fail for want of resources (EMFILE,
ENFILE, ENOBUFS, ENOMEM) every :data:`ACCEPT_RETRY` seconds, as trio's
``serve_listeners`` would, but logs one line when such an episode begins (the error, as
nginx's ``accept4() failed (24: Too many open files)``) and one when it ends (how many
accepts failed, for how long): no traceback every retry (see :class:`AcceptTrouble`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable

import trio

if sys.platform == "linux":
    import fcntl
    import termios

__all__ = ["ACCEPT_RETRY", "AcceptTrouble", "RawSocketListener", "RawSocketStream"]

LOGGER = logging.getLogger("triosock.tcp")

#: How many bytes one read asks for when the caller does not say (a stream's and a
#: framed channel's default), until a read fills it: then :data:`STREAMING_RECEIVE_SIZE`.
DEFAULT_RECEIVE_SIZE = 64 * 1024
#: The default read of a stream that has filled a default read: 256 KiB, as asyncio's
#: transports. A stream of data then takes a quarter of the scheduler passes (measured:
#: 1.1x asyncio Protocol's streaming echo instead of 0.5x), while connections that only
#: ever see small messages never ask for more than 64 KiB (a large read leaves the heap
#: more fragmented: about 0.1 KiB more per idle connection).
STREAMING_RECEIVE_SIZE = 256 * 1024

# Accept errors that concern only the connection being accepted (trio's list too).
_IGNORED_ACCEPT_ERRNOS = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM}
# Accept errors that say the process (or the machine) is out of something: retried.
_CAPACITY_ACCEPT_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
#: Seconds between two accepts while they fail for want of resources (trio's pause).
ACCEPT_RETRY = 0.1
# SO_LINGER on, for 0 seconds: close() sends a reset and frees the send queue at once.
_LINGER_RESET = struct.pack("ii", 1, 0)


# EAGAIN is caught in this helper (and in RawSocketStream._send_now), never in a frame
# that then waits: a frame that handles an exception keeps a frame object (about 200
# bytes) for as long as it lives, and awaiting inside the except block would keep the
# exception and its traceback too: over half a KiB for every connection waiting for data.


def _recv_nowait(sock: socket.socket, max_bytes: int) -> bytes | None:
    """``recv``, or None when nothing is there yet."""
    try:
        return sock.recv(max_bytes)
    except BlockingIOError:
        return None


class RawSocketStream(trio.abc.HalfCloseableStream):
    """A connected stream socket as a ``trio.abc.HalfCloseableStream``.

    Args:
      sock: a connected stdlib socket; the stream owns it and makes it non-blocking.
    """

    __slots__ = (
        "_answering",
        "_closed",
        "_eof_sent",
        "_read_size",
        "_receiving",
        "_reset",
        "_sending",
        "_sock",
        "on_receive",
    )

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):  # not TCP after all: nothing to tune
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._receiving = False
        self._sending = False
        self._closed = False
        self._eof_sent = False
        self._reset = False  # reset_on_close() was called
        # True from a receive_some until the next send: that send skips its schedule point
        self._answering = False
        self._read_size = DEFAULT_RECEIVE_SIZE  # what receive_some() asks for
        #: Called (no arguments) each time ``receive_some`` returns data: an idle timer's
        #: ``touch``. Under TLS this sees the raw bytes, handshake included.
        self.on_receive: Callable[[], object] | None = None

    @property
    def socket(self) -> socket.socket:
        """The stdlib socket (non-blocking). Use it only where you own the connection."""
        return self._sock

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream was closed")

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            max_bytes = self._read_size
        elif max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            if self._closed:
                self._check_open()
            await trio.lowlevel.checkpoint_if_cancelled()
            # The schedule point comes first: while other tasks run, the peer's next
            # message (a reply to what we sent) usually arrives, and the read below
            # succeeds without registering with epoll and failing with EAGAIN first.
            await trio.lowlevel.cancel_shielded_checkpoint()
            while True:
                try:
                    data = _recv_nowait(self._sock, max_bytes)
                except OSError as exc:
                    self._check_open()
                    raise trio.BrokenResourceError(f"receive failed: {exc}") from exc
                if data is not None:
                    break
                await trio.lowlevel.wait_readable(self._sock)
            if len(data) == DEFAULT_RECEIVE_SIZE:  # a stream of data: read more at once
                self._read_size = STREAMING_RECEIVE_SIZE
            if data and self.on_receive is not None:
                self.on_receive()
            self._answering = True
            return data
        finally:
            self._receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            if self._closed:
                self._check_open()
            if self._eof_sent:
                raise trio.ClosedResourceError("the stream was half-closed with send_eof()")
            await trio.lowlevel.checkpoint_if_cancelled()
            # The answer to a receive rides on that receive's schedule point.
            waited = self._answering
            self._answering = False
            if type(data) is not memoryview:  # most writes: all taken at once, no view
                sent = self._send_now(data)
                if sent == len(data):
                    if not waited:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                    return
            else:
                sent = 0
            await self._send_rest(data, sent)
        finally:
            self._sending = False

    async def _send_rest(self, data: bytes | bytearray | memoryview, sent: int) -> None:
        """Write ``data`` from byte ``sent`` on, waiting for room as needed."""
        waited = False
        with memoryview(data) as view:
            remaining = (view.cast("B") if view.format != "B" else view)[sent:]
            while remaining:
                sent = self._send_now(remaining)
                if sent:
                    remaining = remaining[sent:]
                else:
                    await trio.lowlevel.wait_writable(self._sock)
                    waited = True
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    @property
    def can_try_send(self) -> bool:
        """Always true: :meth:`try_send` works on this stream."""
        return True

    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """Write what the kernel takes now, without waiting, and return how many bytes.

        Returns 0 when the socket's send buffer is full. Not a checkpoint and never
        blocks: for code that writes to many streams in one go and hands what is left to
        a task that can wait (see ``FramedChannel.send_many_nowait``).

        Raises:
          trio.BusyResourceError: a ``send_all`` is in progress on this stream.
          trio.ClosedResourceError: the stream was closed or half-closed.
          trio.BrokenResourceError: the connection failed.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        if self._closed or self._eof_sent:
            self._check_open()
            raise trio.ClosedResourceError("the stream was half-closed with send_eof()")
        return self._send_now(data)

    def _send_now(self, data: bytes | bytearray | memoryview) -> int:
        """``send``, or 0 when the buffer is full (a stream's ``send`` of data never is 0).

        Synchronous, so the EAGAIN it catches leaves no frame object behind in a frame
        that waits (see ``_recv_nowait``).
        """
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._check_open()
            raise trio.BrokenResourceError(f"send failed: {exc}") from exc

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            self._check_open()
            await trio.lowlevel.wait_writable(self._sock)
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            self._check_open()
            self._answering = False
            await trio.lowlevel.checkpoint()
            self._shut_write()
        finally:
            self._sending = False

    def half_close_nowait(self) -> None:
        """``send_eof`` at once, even while another task waits for room (it then finds
        the stream half-closed). For a stream whose writes one :class:`~triosock.Outbox`
        coordinates, once that outbox is drained: the task waiting is the outbox's
        writer, with nothing left to write, not a send that the half-close would cut."""
        self._check_open()
        self._answering = False
        self._shut_write()

    def _shut_write(self) -> None:
        self._eof_sent = True
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:  # the peer is gone already: nothing to say
                raise trio.BrokenResourceError(f"half-close failed: {exc}") from exc

    def reset_on_close(self) -> None:
        """Have :meth:`aclose` reset the connection (``SO_LINGER`` {1, 0}) if the kernel
        still holds bytes the peer has not acknowledged; otherwise it closes gracefully.

        For a peer given up for not reading: a graceful close leaves what it did not take
        in the kernel (a socket in FIN-WAIT-1 with its send queue, megabytes each, until
        the peer reads or closes, even after the server exits); a reset frees it at once,
        as nginx's ``reset_timedout_connection`` does. A peer that took everything, the
        farewell included, still gets the graceful close. Not a checkpoint.
        """
        self._reset = True

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self._sock)
            if self._reset and _unacknowledged(self._sock):
                with contextlib.suppress(OSError):  # closed by the peer already: no matter
                    self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            self._sock.close()
        await trio.lowlevel.checkpoint()


def _unacknowledged(sock: socket.socket) -> bool:
    """Whether the kernel holds bytes of ``sock``'s that the peer has not acknowledged
    (Linux's ``SIOCOUTQ``); True where that cannot be asked: then a reset is the safe side."""
    if sys.platform != "linux":
        return True
    try:
        answer = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return True
    queued: int = struct.unpack("i", answer)[0]
    return queued > 0


class AcceptTrouble:
    """Episodes of accepts failing for want of resources (out of file descriptors, of
    memory), shared by a server's listeners: one log line (ERROR) when an episode
    begins, with the error (``accept() failed (24: Too many open files); retrying every
    0.1 s``), and one (WARNING) when an accept succeeds again, with how many failed and
    for how long. nginx says it in one line, without a traceback; trio's
    ``serve_listeners`` logs a traceback every retry, 10 a second for as long as it
    lasts.

    Args:
      logger: where the two lines go.

    Attributes:
      failures: accepts failed in the episode under way (0 outside one).
      episodes: episodes begun since the server started.
    """

    def __init__(self, logger: logging.Logger = LOGGER) -> None:
        self._logger = logger
        self.failures = 0
        self.episodes = 0
        self._began = 0.0

    def failed(self, exc: OSError) -> None:
        """An accept failed with ``exc`` (one of the capacity errors)."""
        if not self.failures:
            self.episodes += 1
            self._began = trio.current_time()
            self._logger.error(
                "accept() failed (%d: %s); retrying every %g s, logged once until it succeeds",
                exc.errno,
                os.strerror(exc.errno or 0),
                ACCEPT_RETRY,
            )
        self.failures += 1

    def ended(self, how: str = "accepting again") -> None:
        """An accept succeeded (or the listener closed): the episode, if any, is over."""
        if self.failures:
            self._logger.warning(
                "%s after %d failed accepts over %.1f s",
                how,
                self.failures,
                trio.current_time() - self._began,
            )
            self.failures = 0


class RawSocketListener(trio.abc.Listener[RawSocketStream]):
    """Accepts on a ``trio.SocketListener``'s socket and yields :class:`RawSocketStream`.

    Overload errors (EMFILE, ENFILE, ENOBUFS, ENOMEM) never leave :meth:`accept`: it
    retries every :data:`ACCEPT_RETRY` seconds (the connection waits in the listen
    backlog meanwhile), and ``trouble`` logs the episode once (see
    :class:`AcceptTrouble`).

    Args:
      listener: the listening socket.
      trouble: the episodes' record, shared by the listeners of a server (its own
        otherwise).
    """

    def __init__(self, listener: trio.SocketListener, trouble: AcceptTrouble | None = None) -> None:
        self._listener = listener
        self.trouble = trouble if trouble is not None else AcceptTrouble()

    async def accept(self) -> RawSocketStream:
        while True:
            try:
                sock, _ = await self._listener.socket.accept()
            except OSError as exc:
                if exc.errno in _IGNORED_ACCEPT_ERRNOS:
                    continue
                if exc.errno == errno.EBADF:
                    raise trio.ClosedResourceError("the listener was closed") from exc
                if exc.errno not in _CAPACITY_ACCEPT_ERRNOS:
                    raise
                self.trouble.failed(exc)
                await trio.sleep(ACCEPT_RETRY)
                continue
            self.trouble.ended()
            plain = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
            return RawSocketStream(plain)

    async def aclose(self) -> None:
        self.trouble.ended("stopped accepting")
        await self._listener.aclose()
