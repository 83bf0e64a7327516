"""HTTP/1.1 servers on h11: h11 does the protocol, triosock the IO, limits and timeouts.

Server shape (``serve_tcp`` underneath, so the connection limit and the graceful stop are
the TCP server's):

* ``handler(request) -> Response`` runs once per request, in the connection's task;
  responses go out in request order, so pipelined requests are answered in order.
* Keep-alive: a connection serves requests until the client closes it, asks to
  (``Connection: close``, HTTP/1.0 without keep-alive), stays idle between requests for
  ``keep_alive_timeout`` seconds, or has had ``max_requests`` answered (the last response
  says ``Connection: close``).
* Limits, each with the status that says so: a request line and header block must arrive
  within ``header_timeout`` seconds of their first byte, however slowly they trickle
  (408; a client idle before its first byte is closed without a word); the request target
  at most ``max_target`` bytes (414); the header block at most ``max_header_bytes``,
  counted here because h11's own limit does not fire on a block that arrives in one read
  (431); a body at most ``max_body`` bytes (413, before any of it is read, and also for an
  ``Expect: 100-continue`` request, which otherwise gets its ``100 Continue``); a body must
  arrive within ``body_timeout`` (408); what h11 cannot parse gets 400.
* Ambiguous framing is refused with 400 and a close, before any body is read (RFC 9112
  6.1 and 5.2; nginx refuses the same): ``Content-Length`` beside ``Transfer-Encoding``
  (h11 would read it as chunked and keep the connection, so the bytes a front end took as
  body would be answered as a request), ``Transfer-Encoding`` in an HTTP/1.0 request, and
  a header folded onto a second line (obs-fold, which h11 would unfold into the field
  above, hiding a ``Transfer-Encoding`` from us but not from a front end).
* Request targets: origin form (``/...``) is a path, even ``//x/a.txt`` (never a host);
  absolute form (``http://host/path``) needs an authority that parses; ``*`` only for
  ``OPTIONS``. Anything else is 400 and one log line, never a traceback.
* Sending: a client that takes nothing for ``send_timeout`` seconds (60, nginx's
  ``send_timeout``) is closed with a reset, which frees what its kernel queue held (as
  nginx's ``reset_timedout_connection``). A :attr:`Response.stream` body goes out piece by
  piece, so a response holds one piece in memory however large it is.
* ``HEAD`` gets the headers ``GET`` would (with its ``Content-Length``) and no body.
* A handler's exception is logged and answered with 500; the connection goes on only if
  the request was read whole.
* Stopping: connections waiting for a request are closed at once; a request in flight is
  answered (with ``Connection: close``) within the grace period, then its connection
  closes.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import unquote

import h11
import trio

from .._sansio.http_rules import (
    absolute_target,
    framing_refusal_untrusted,
    target_refusal_untrusted,
)
from .tcp import TCPConnection, TCPServer, serve_tcp
from .tls import DEFAULT_HANDSHAKE_TIMEOUT

__all__ = ["Request", "Response", "serve_http"]

LOGGER = logging.getLogger("triosock.http")

SERVER_NAME = "triosock"
_REASONS = {
    200: b"OK",
    301: b"Moved Permanently",
    304: b"Not Modified",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    421: b"Misdirected Request",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
}
_RECEIVE_SIZE = 64 * 1024
#: The most of a body handed to the socket in one write (and held for a slow client).
SEND_PIECE = 64 * 1024


@dataclass(frozen=True)
class Request:
    """One request, read whole (the body is at most the server's ``max_body``)."""

    method: str
    target: str  # as sent: path and query, percent-encoded
    headers: list[tuple[str, str]]  # names in lower case, in the order sent
    body: bytes
    http_version: str
    client: str  # host:port of the peer

    @property
    def path(self) -> str:
        """The target's path, percent-decoded (``/a%20b?x=1`` gives ``/a b``).

        A target in origin form (``/...``) is a path, even when it starts with ``//``
        (which a URL parser would take for a host); an absolute URL gives its path (the
        part after its authority, ``/`` when empty)."""
        return unquote(self._split()[0])

    @property
    def query(self) -> str:
        """The target's query, as sent (``/a?x=1&y=2`` gives ``x=1&y=2``)."""
        return self._split()[1]

    def _split(self) -> tuple[str, str]:
        target = self.target
        if absolute_target.match(target):  # absolute form: what follows the authority
            rest = target.partition("://")[2]
            cut = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
            target = rest[cut:]
            if not target.startswith("/"):
                target = "/" + target  # "http://host" and "http://host?q" ask for "/"
        # origin form (RFC 9112), or "*": the path, then the query
        path, _, query = target.partition("?")
        return path.partition("#")[0], query.partition("#")[0]

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first header called ``name`` (any case), or ``default``."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return default


@dataclass
class Response:
    """What a handler returns. ``Content-Length`` is set from ``body`` unless given.

    ``stream``, when set, is the body instead of ``body``: pieces of bytes sent one at a
    time as they come (each of at most :data:`SEND_PIECE` bytes holds memory only while it
    is written), so a large file need not be read whole. Give its ``Content-Length``
    among the headers (without one, HTTP/1.1 clients get it chunked, HTTP/1.0 ones up to
    the close). The server closes it (its ``aclose``, if it has one) once the response is
    sent or given up, also for ``HEAD``, whose answer has no body; if it ends short of
    its ``Content-Length``, the connection is closed.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterable[bytes] | None = None

    @classmethod
    def text(cls, status: int, text: str, *, content_type: str = "text/plain") -> Response:
        return cls(status, [("content-type", f"{content_type}; charset=utf-8")], text.encode())


Handler = Callable[[Request], Awaitable[Response]]


class _SendTimedOut(Exception):
    """The client took nothing for the send timeout."""


class _Refused(Exception):
    """The request cannot be served: answer ``status`` and close the connection."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


@dataclass(frozen=True)
class _Limits:
    keep_alive_timeout: float
    header_timeout: float
    body_timeout: float
    max_requests: int
    max_target: int
    max_header_bytes: int
    max_body: int
    send_timeout: float


async def serve_http(
    handler: Handler,
    port: int,
    *,
    host: str | None = "127.0.0.1",
    max_connections: int | None = None,
    keep_alive_timeout: float = 5.0,
    header_timeout: float = 10.0,
    body_timeout: float = 30.0,
    max_requests: int = 1000,
    max_target: int = 8 * 1024,
    max_header_bytes: int = 16 * 1024,
    max_body: int = 1024 * 1024,
    send_timeout: float = 60.0,
    grace_period: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[TCPServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` over HTTP/1.1 on a TCP port until stopped (see the module notes).

    Args:
      handler: ``async def handler(request: Request) -> Response``.
      port, host, max_connections, grace_period, ssl_context, handshake_timeout, reuse_port,
        task_status: as for :func:`~triosock.serve_tcp` (``nursery.start`` receives the
        :class:`TCPServer`); with ``ssl_context`` it serves HTTPS.
      keep_alive_timeout: seconds a connection may wait between requests.
      header_timeout: seconds from a request's first byte to the end of its headers.
      body_timeout: seconds to receive a request's body.
      max_requests: requests answered on one connection before it is closed.
      max_target, max_header_bytes, max_body: the size limits, in bytes.
      send_timeout: seconds a client may take nothing of a response before it is closed
        (with a reset).
    """
    for name, value in (
        ("keep_alive_timeout", keep_alive_timeout),
        ("header_timeout", header_timeout),
        ("body_timeout", body_timeout),
        ("send_timeout", send_timeout),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be a positive number of seconds: {value}")
    for name, size in (
        ("max_requests", max_requests),
        ("max_target", max_target),
        ("max_header_bytes", max_header_bytes),
    ):
        if size < 1:
            raise ValueError(f"{name} must be at least 1: {size}")
    if max_body < 0:
        raise ValueError(f"max_body must not be negative: {max_body}")
    limits = _Limits(
        keep_alive_timeout=keep_alive_timeout,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        max_requests=max_requests,
        max_target=max_target,
        max_header_bytes=max_header_bytes,
        max_body=max_body,
        send_timeout=send_timeout,
    )
    await serve_tcp(
        partial(_serve_connection, handler, limits),
        port,
        host=host,
        max_connections=max_connections,
        grace_period=grace_period,
        ssl_context=ssl_context,
        handshake_timeout=handshake_timeout,
        reuse_port=reuse_port,
        task_status=task_status,
    )


async def _serve_connection(handler: Handler, limits: _Limits, conn: TCPConnection) -> None:
    await _HTTPConnection(conn, limits).serve(handler)


class _HTTPConnection:
    """One TCP connection's request/response cycles."""

    def __init__(self, conn: TCPConnection, limits: _Limits) -> None:
        self.conn = conn
        self.limits = limits
        # h11's own limit stays as a backstop; ours is counted in _read_head
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self.answered = 0
        self.received = False  # a receive came since the last send (it yielded to others)

    async def serve(self, handler: Handler) -> None:
        while True:
            try:
                request = await self._read_request()
            except _Refused as refused:
                LOGGER.info("%s: %s", self.conn.peer, refused)
                await self._send_error(refused.status)
                return
            if request is None:
                return  # the client is done (closed, or idle before a first byte)
            try:
                response = await handler(request)
            except Exception:
                LOGGER.exception("HTTP handler failed on %s %s", request.method, request.target)
                response = Response.text(500, "internal server error\n")
            try:
                await self._send_response(request, response)
            except _SendTimedOut:
                timeout = self.limits.send_timeout
                LOGGER.info("%s: took nothing for %g s: reset", self.conn.peer, timeout)
                self.conn.reset_on_close()
                return
            self.answered += 1
            if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                return  # h11 says this connection cannot go on (close, HTTP/1.0, error)
            if self.conn.stopping:
                return  # the request in flight when the stop began was answered: done
            self.h11.start_next_cycle()

    # -- reading -----------------------------------------------------------------------

    async def _receive(self) -> None:
        data = await self.conn.receive_some(_RECEIVE_SIZE)
        self.received = True
        self.h11.receive_data(bytes(data))  # b"" tells h11 the client closed

    def _next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            return self.h11.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint if exc.error_status_hint in _REASONS else 400
            raise _Refused(status, f"bad request: {exc}") from exc

    async def _read_request(self) -> Request | None:
        head = await self._read_head()
        if head is None:
            return None
        limits = self.limits
        if len(head.target) > limits.max_target:
            raise _Refused(414, f"request target of {len(head.target)} bytes")
        headers = [
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers
        ]
        length = _content_length(headers)
        if length is not None and length > limits.max_body:
            raise _Refused(413, f"a body of {length} bytes (at most {limits.max_body})")
        if self.h11.they_are_waiting_for_100_continue:
            await self.conn.send_all(
                self.h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )
        body = bytearray()
        deadline: float | None = None  # a body that must wait for reads has one
        while True:
            event = self._next_event()
            if event is h11.NEED_DATA:
                if deadline is None:
                    deadline = trio.current_time() + limits.body_timeout
                with trio.move_on_at(deadline) as timer:
                    await self._receive()
                if timer.cancelled_caught:
                    raise _Refused(408, f"no whole body within {limits.body_timeout:g} s")
                continue
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > limits.max_body:
                    raise _Refused(413, f"a body over {limits.max_body} bytes")
                continue
            if isinstance(event, h11.EndOfMessage):
                break
            if isinstance(event, h11.ConnectionClosed):
                return None  # gone in the middle of its body
            raise _Refused(400, f"unexpected {type(event).__name__} in a request body")
        return Request(
            method=head.method.decode("ascii", "replace"),
            target=head.target.decode("ascii", "replace"),
            headers=headers,
            body=bytes(body),
            http_version=head.http_version.decode("ascii", "replace"),
            client=self.conn.peer,
        )

    def _head_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """The next event, a request's head refused if its framing is ambiguous or its
        target malformed (h11 reads both without a word)."""
        raw = self.h11.trailing_data[0]  # the head as sent: h11 unfolds obs-folds
        event = self._next_event()
        if isinstance(event, h11.Request):
            why = framing_refusal_untrusted(
                event.headers, event.http_version, raw
            ) or target_refusal_untrusted(event.method, event.target)
            if why is not None:
                raise _Refused(400, why)
        return event

    async def _read_head(self) -> h11.Request | None:
        """The request line and headers: idle wait, then the header deadline and size.

        Cancel scopes cost trio several microseconds each, so the common case (a whole
        request in one read, no body) takes one: the wait for the request.
        """
        limits = self.limits
        event = self._head_event()  # a pipelined request may be complete already
        if event is h11.NEED_DATA and not self.h11.trailing_data[0]:
            # Nothing of the next request yet: wait up to the keep-alive timeout for it,
            # or until the server stops (a request in flight is answered first).
            waiting = self.conn.stop_scope()
            waiting.deadline = trio.current_time() + limits.keep_alive_timeout
            with waiting:
                await self._receive()
                event = self._head_event()
            if event is h11.NEED_DATA and not self.h11.trailing_data[0]:
                return None  # idle, or closed, before a first byte: nothing to answer
        if event is h11.NEED_DATA:  # a head that needs more reads: it gets a deadline
            received = len(self.h11.trailing_data[0])
            with trio.move_on_after(limits.header_timeout) as timer:
                while event is h11.NEED_DATA:
                    if received > limits.max_header_bytes:
                        raise _Refused(431, f"headers over {limits.max_header_bytes} bytes")
                    before = len(self.h11.trailing_data[0])
                    await self._receive()
                    received += len(self.h11.trailing_data[0]) - before
                    event = self._head_event()
            if timer.cancelled_caught:
                raise _Refused(408, f"no whole request head within {limits.header_timeout:g} s")
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise _Refused(400, f"unexpected {type(event).__name__} before a request")
        # A block that arrived in one read never tripped the count above (nor h11's own
        # limit, h11 issue 182): measure what was parsed.
        size = len(event.target) + sum(len(name) + len(value) + 4 for name, value in event.headers)
        if size > limits.max_header_bytes:
            raise _Refused(431, f"headers of {size} bytes (at most {limits.max_header_bytes})")
        return event

    # -- writing -----------------------------------------------------------------------

    async def _send_response(self, request: Request, response: Response) -> None:
        headers = [(name.lower(), value) for name, value in response.headers]
        names = {name for name, _ in headers}
        bodyless = response.status in (204, 304) or response.status < 200
        stream = response.stream
        framed = "content-length" in names or "transfer-encoding" in names
        if not bodyless and not framed and stream is None:
            headers.append(("content-length", str(len(response.body))))
        if "server" not in names:
            headers.append(("server", SERVER_NAME))
        if self.answered + 1 >= self.limits.max_requests or self.conn.stopping:
            headers.append(("connection", "close"))
        data = self.h11.send(
            h11.Response(
                status_code=response.status,
                headers=headers,
                reason=_REASONS.get(response.status, b""),
            )
        )
        with_body = request.method != "HEAD" and not bodyless
        try:
            if stream is not None and with_body:
                await self._send(data or b"")
                await self._send_stream(request, stream)
                return
            if with_body and response.body:
                data = (data or b"") + (self.h11.send(h11.Data(data=response.body)) or b"")
            data = (data or b"") + (self.h11.send(h11.EndOfMessage()) or b"")
            await self._send(data)
        finally:
            if stream is not None:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:  # even when cancelled (a file to close), briefly
                    with trio.move_on_after(1.0, shield=True):
                        await aclose()

    async def _send_stream(self, request: Request, stream: AsyncIterable[bytes]) -> None:
        """A streamed body, piece by piece; a failure ends the connection, not the server
        (its head is out: the client sees the body end short)."""
        try:
            async for piece in stream:
                if piece:
                    await self._send(self.h11.send(h11.Data(data=piece)) or b"")
            await self._send(self.h11.send(h11.EndOfMessage()) or b"")
        except (_SendTimedOut, trio.BrokenResourceError, trio.ClosedResourceError):
            raise
        except Exception as exc:  # a file gone short or unreadable: h11 is in ERROR now
            LOGGER.error("%s %s: the body failed midway: %s", request.method, request.target, exc)
            if self.h11.our_state is not h11.ERROR:
                self.h11.send_failed()

    async def _send(self, data: bytes) -> None:
        """Write ``data``; a client that takes none of it for the send timeout raises
        :class:`_SendTimedOut`. The clock restarts whenever the kernel takes some (as
        nginx's ``send_timeout``: between two writes, not for the whole response)."""
        conn = self.conn
        timeout = self.limits.send_timeout
        if not conn.can_try_send:  # TLS: a piece at a time, each within the timeout
            for start in range(0, len(data), SEND_PIECE):
                with trio.move_on_after(timeout) as timer:
                    await conn.send_all(data[start : start + SEND_PIECE])
                if timer.cancelled_caught:
                    raise _SendTimedOut
            return
        view = memoryview(data)
        deadline: float | None = None
        while view:
            sent = conn.try_send(view)
            if sent:
                view, deadline = view[sent:], None
                continue
            if deadline is None:
                deadline = trio.current_time() + timeout
            with trio.move_on_at(deadline):
                await conn.wait_send_all_might_not_block()
            if trio.current_time() >= deadline:
                raise _SendTimedOut
            self.received = False  # the wait yielded
        if self.received:  # a receive just yielded to the others: no second pass needed
            self.received = False
            await trio.lowlevel.checkpoint_if_cancelled()
        else:
            await trio.lowlevel.checkpoint()

    async def _send_error(self, status: int) -> None:
        """Answer ``status`` and close, if h11 still lets us say anything."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{status} {_REASONS[status].decode()}\n".encode()
        try:
            data = self.h11.send(
                h11.Response(
                    status_code=status,
                    headers=[
                        ("content-type", "text/plain; charset=utf-8"),
                        ("content-length", str(len(body))),
                        ("connection", "close"),
                        ("server", SERVER_NAME),
                    ],
                    reason=_REASONS[status],
                )
            )
            data = (data or b"") + (self.h11.send(h11.Data(data=body)) or b"")
            data += self.h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            return  # h11 has no request to answer (it failed before one was parsed)
        with trio.move_on_after(1.0), _quietly():
            await self.conn.send_all(data)


class _quietly:
    """Swallow the errors of writing to a client that is already gone."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        return isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError)


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name == "content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 refuses it when the body is read
    return None
