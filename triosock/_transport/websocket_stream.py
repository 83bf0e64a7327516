"""The TCP side of a WebSocket server: the stream under one websockets connection, whose
writes all go through one :class:`~triosock.Outbox`, and the listener that accepts them
(at most ``max_connections`` at once, counted per source for ``max_per_address``).
With TLS, the stream is an ``SSLStream`` under the outbox, its handshake done (within
the server's deadline, see :mod:`~triosock._transport.tls`) by the connection's first
read, in the connection's task. See :mod:`triosock._transport.websocket` for the server.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import trio
from websockets.protocol import Protocol, State

from .._sansio.addresses import format_address
from .outbox import Outbox, StreamSink
from .peraddress import PerAddress
from .rawsocket import RawSocketListener, RawSocketStream
from .tls import ServerTLS

__all__ = ["WebSocketListener", "WebSocketStream"]

LOGGER = logging.getLogger("triosock.websocket")


class WebSocketStream(trio.abc.HalfCloseableStream):
    """The TCP stream under one websockets connection, whose writes all go through one
    :class:`~triosock.Outbox`: websockets' own (the handshake, pings, pongs, the close)
    and whole frames (:func:`text_frame`) put there without waiting by a fan-out (see
    :attr:`WebSocketPeer.outbox`). They share one queue, so they never interleave, and
    a frame is never torn. Once websockets has sent its close frame the outbox is
    sealed: nothing is sent after it. Once closed, ``send_all`` raises trio's
    ``ClosedResourceError``, as a trio stream does, so that websockets' reader stops.

    What the client sends after the 101 waits until the connection's handler runs
    (:meth:`handler_started`). websockets' server writes the 101, waits for trio's next
    pass (the write's checkpoint), and runs the handler only if the connection is still
    OPEN then. Had its reader taken in a close frame or a protocol error meanwhile, the
    server would close the TCP connection before the close frame the reader was about to
    send, and a data frame read with them would go to a message queue closed already
    (websockets logs "unexpected internal error ... EOFError"). Held, the frames reach
    websockets with the handler there to read them, as on any later read.

    With ``tls``, the bytes go through a ``trio.SSLStream`` over the socket: the outbox
    writes to it (from its writer only: TLS cannot write without waiting), and the
    first read does the handshake, within ``tls``'s deadline; a failed one ends that
    read with ``BrokenResourceError``, which closes the connection (websockets logs
    nothing of it; :class:`~triosock._transport.tls.ServerTLS` logs one line at DEBUG).
    """

    __slots__ = (
        "_closed",
        "_handling",
        "_raw",
        "_release",
        "_stream",
        "_tls",
        "outbox",
        "peer",
        "protocol",
        "refused_per_address",
    )

    def __init__(
        self,
        raw: RawSocketStream,
        release: Callable[[], object] | None = None,
        tls: ServerTLS | None = None,
    ) -> None:
        self._raw = raw
        self._release = release  # gives the connection's max_connections slot back
        self._closed = False
        self._handling = trio.Event()  # the handler runs (or the stream closed)
        # With TLS, what is left to do before the first read: the handshake.
        self._tls = tls
        self._stream: trio.abc.Stream = raw
        if tls is not None:
            # https_compatible: browsers close without a close_notify, which is no error.
            self._stream = trio.SSLStream(raw, tls.context, server_side=True, https_compatible=True)
        #: The client's address, ``host:port``, once known (a TLS stream's, from its
        #: handshake on: it closes before its handler's last word).
        self.peer: str | None = None
        self.outbox = Outbox(StreamSink(self._stream))
        #: websockets' protocol object, once the connection exists (for its state).
        self.protocol: Protocol | None = None
        #: Its source held the most connections one address may: refused (429).
        self.refused_per_address = False

    @property
    def socket(self) -> socket.socket:
        """The stdlib socket (non-blocking)."""
        return self._raw.socket

    def handler_started(self) -> None:
        """The connection's handler runs: what the client sent goes to websockets now."""
        self._handling.set()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the WebSocket stream was closed")
        outbox = self.outbox
        if outbox.error is None:
            outbox.put(bytes(data), 0)  # never dropped by a drop policy
            protocol = self.protocol
            if protocol is not None and protocol.state in (State.CLOSING, State.CLOSED):
                outbox.seal()  # that was the close frame
        await self._drain()

    async def _drain(self) -> None:
        outbox = self.outbox
        await trio.lowlevel.checkpoint_if_cancelled()
        while outbox.frames:
            await outbox.write_some()
        if outbox.error is not None:
            raise trio.BrokenResourceError(f"the socket failed: {outbox.error}")
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await self._drain()

    async def send_eof(self) -> None:
        await self._drain()
        if self._stream is not self._raw:
            # TLS cannot half-close: close, as websockets closes a stream that cannot.
            await self.aclose()
            return
        # Not the raw stream's send_eof: the outbox's writer (a fan-out member's) may be
        # waiting for room on it, which send_eof would take for a concurrent send.
        self._raw.half_close_nowait()
        await trio.lowlevel.checkpoint()

    async def _shake_hands(self, tls: ServerTLS) -> None:
        """The TLS handshake, once, before the first read (see the class docstring).

        Raises:
          trio.BrokenResourceError: it failed, or did not finish in time.
        """
        self._tls = None
        stream = self._stream
        assert isinstance(stream, trio.SSLStream)
        try:
            self.peer = format_address(self._raw.socket.getpeername())
        except OSError:
            self.peer = "(disconnected)"
        if not await tls.handshake(stream, f"websocket {self.peer}"):
            raise trio.BrokenResourceError("the TLS handshake failed")

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._tls is not None:
            await self._shake_hands(self._tls)
        data = await self._stream.receive_some(max_bytes)
        protocol = self.protocol
        if not self._handling.is_set() and protocol is not None and protocol.state is State.OPEN:
            # The 101 is sent and the handler not started yet: hold this (see the class
            # docstring). Before the 101 (CONNECTING) the request and any rejection flow.
            await self._handling.wait()
            if self._closed:
                raise trio.ClosedResourceError("the WebSocket closed before its handler ran")
        return data

    async def aclose(self) -> None:
        self._closed = True
        self._handling.set()  # a held read ends (ClosedResourceError)
        self.outbox.seal()
        release, self._release = self._release, None
        if release is not None:
            release()
        await self._stream.aclose()


class WebSocketListener(trio.abc.Listener[WebSocketStream]):
    """A listener for websockets' server that accepts :class:`WebSocketStream`, at most
    as many at once as ``limiter`` has tokens (the rest wait in the listen backlog), and
    counts them per source (``per_address``): a stream past its source's limit is marked
    :attr:`~WebSocketStream.refused_per_address`, for the handshake to refuse. With
    ``tls``, each stream speaks TLS (its handshake is the connection task's)."""

    def __init__(
        self,
        listener: trio.SocketListener,
        limiter: trio.CapacityLimiter | None,
        per_address: PerAddress,
        tls: ServerTLS | None = None,
    ) -> None:
        self._raw = RawSocketListener(listener)
        self._limiter = limiter
        self._per_address = per_address
        self._tls = tls
        self.socket = listener.socket  # websockets logs where it listens

    async def accept(self) -> WebSocketStream:
        limiter = self._limiter
        token = object()
        if limiter is not None:
            await limiter.acquire_on_behalf_of(token)
        try:
            raw = await self._raw.accept()
        except BaseException:
            if limiter is not None:
                limiter.release_on_behalf_of(token)
            raise
        ip, refused = self._take(raw)

        def release() -> None:
            if limiter is not None:
                limiter.release_on_behalf_of(token)
            if ip is not None:
                self._per_address.uncount(ip)

        stream = WebSocketStream(raw, release, self._tls)
        stream.refused_per_address = refused
        return stream

    def _take(self, raw: RawSocketStream) -> tuple[str | None, bool]:
        """Count the connection for its source: its address when counted (else None),
        and whether the source is over its limit (then it is refused at the handshake)."""
        per_address = self._per_address
        if per_address.limit is None:
            return None, False
        try:
            ip = str(raw.socket.getpeername()[0])
        except OSError:
            return None, False  # gone already: its handshake fails by itself
        taken = per_address.take(ip)
        if taken is False:  # this source's first refusal since it was under its limit
            LOGGER.warning(
                "%s holds %d WebSocket connections, the most one address may: refusing "
                "more until one closes",
                ip,
                per_address.limit,
            )
        return (ip, False) if taken else (None, True)

    async def aclose(self) -> None:
        await self._raw.aclose()
