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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import unquote, urlsplit

import h11
import trio

from .tcp import TCPConnection, TCPServer, serve_tcp

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
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
}
_RECEIVE_SIZE = 64 * 1024


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
        (which a URL parser would take for a host); an absolute URL gives its path."""
        return unquote(self._split()[0])

    @property
    def query(self) -> str:
        """The target's query, as sent (``/a?x=1&y=2`` gives ``x=1&y=2``)."""
        return self._split()[1]

    def _split(self) -> tuple[str, str]:
        target = self.target
        if target.startswith("/"):  # origin form (RFC 9112): the path, then the query
            path, _, query = target.partition("?")
            return path.partition("#")[0], query.partition("#")[0]
        parts = urlsplit(target)
        return parts.path, parts.query

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first header called ``name`` (any case), or ``default``."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return default


@dataclass
class Response:
    """What a handler returns. ``Content-Length`` is set from ``body`` unless given."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def text(cls, status: int, text: str, *, content_type: str = "text/plain") -> Response:
        return cls(status, [("content-type", f"{content_type}; charset=utf-8")], text.encode())


Handler = Callable[[Request], Awaitable[Response]]


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
    grace_period: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[TCPServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``handler`` over HTTP/1.1 on a TCP port until stopped (see the module notes).

    Args:
      handler: ``async def handler(request: Request) -> Response``.
      port, host, max_connections, grace_period, ssl_context, reuse_port, task_status: as for
        :func:`~triosock.serve_tcp` (``nursery.start`` receives the :class:`TCPServer`).
      keep_alive_timeout: seconds a connection may wait between requests.
      header_timeout: seconds from a request's first byte to the end of its headers.
      body_timeout: seconds to receive a request's body.
      max_requests: requests answered on one connection before it is closed.
      max_target, max_header_bytes, max_body: the size limits, in bytes.
    """
    for name, value in (
        ("keep_alive_timeout", keep_alive_timeout),
        ("header_timeout", header_timeout),
        ("body_timeout", body_timeout),
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
    )
    await serve_tcp(
        partial(_serve_connection, handler, limits),
        port,
        host=host,
        max_connections=max_connections,
        grace_period=grace_period,
        ssl_context=ssl_context,
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
            await self._send_response(request, response)
            self.answered += 1
            if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                return  # h11 says this connection cannot go on (close, HTTP/1.0, error)
            if self.conn.stopping:
                return  # the request in flight when the stop began was answered: done
            self.h11.start_next_cycle()

    # -- reading -----------------------------------------------------------------------

    async def _receive(self) -> None:
        data = await self.conn.receive_some(_RECEIVE_SIZE)
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

    async def _read_head(self) -> h11.Request | None:
        """The request line and headers: idle wait, then the header deadline and size.

        Cancel scopes cost trio several microseconds each, so the common case (a whole
        request in one read, no body) takes one: the wait for the request.
        """
        limits = self.limits
        event = self._next_event()  # a pipelined request may be complete already
        if event is h11.NEED_DATA and not self.h11.trailing_data[0]:
            # Nothing of the next request yet: wait up to the keep-alive timeout for it,
            # or until the server stops (a request in flight is answered first).
            waiting = self.conn.stop_scope()
            waiting.deadline = trio.current_time() + limits.keep_alive_timeout
            with waiting:
                await self._receive()
                event = self._next_event()
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
                    event = self._next_event()
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
        if not bodyless and "content-length" not in names and "transfer-encoding" not in names:
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
        if request.method != "HEAD" and response.body and not bodyless:
            data = (data or b"") + (self.h11.send(h11.Data(data=response.body)) or b"")
        data = (data or b"") + (self.h11.send(h11.EndOfMessage()) or b"")
        await self.conn.send_all(data)

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
