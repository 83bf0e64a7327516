"""An HTTP/1.1 client on h11: one request, one answer, bounded memory.

:func:`fetch` is the client half of :mod:`triosock._transport.http`: h11 does the
protocol, triosock the IO and the limits, and the answer is the server side's own
:class:`~triosock.Response` record. It is the client ``python -m triosock http get``
and the ``status`` commands use.

Trio's conventions: no ``timeout=`` argument (put the call in a cancel scope: a server
that never answers waits as long as the scope lets it), errors translated at this edge
(:class:`~triosock.ConnectError` when the server cannot be reached, an
:class:`HTTPResponseError` when what comes back is not an acceptable HTTP answer), and
memory bounded by ``max_header_bytes`` and ``max_body`` whatever the server sends.

One request a connection (``Connection: close``): the client is for commands and
scripts, not for a crawl, and a connection pool would be a second cache of state.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlsplit

import h11
import trio

from .._errors import TriosockError
from .http import Response
from .tcp import open_tcp_stream

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_HEADER_BYTES",
    "HTTPResponseError",
    "ResponseTooLargeError",
    "fetch",
]

#: The largest body :func:`fetch` keeps by default (16 MiB).
DEFAULT_MAX_BODY: Final = 16 * 1024 * 1024
#: The largest status line and header block it reads by default (64 KiB).
DEFAULT_MAX_HEADER_BYTES: Final = 64 * 1024
_RECEIVE_SIZE: Final = 64 * 1024
#: How every HTTP/1.x answer begins: anything else is not HTTP, known from its first byte.
_HTTP_PREFIX: Final = b"HTTP/"
_PORTS: Final = {"http": 80, "https": 443}
#: What a request target may hold as it is: visible ASCII (the rest is percent-encoded).
_VISIBLE: Final = "".join(chr(c) for c in range(0x21, 0x7F))
_UNSAFE_IN_HOST: Final = re.compile(r"[\x00-\x20\x7f]")


class HTTPResponseError(TriosockError):
    """The server's answer is not an acceptable HTTP answer: not HTTP at all, malformed,
    cut short, or (:class:`ResponseTooLargeError`) over a limit.

    Attributes:
      where: the ``host:port`` that answered, as the URL named it.
    """

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where


class NotHTTPError(HTTPResponseError):
    """The server answered, but not in HTTP (its first bytes say so): another
    protocol's port."""


class ResponseTooLargeError(HTTPResponseError):
    """The answer's header block or body is over the limit :func:`fetch` was given."""


async def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    ssl_context: ssl.SSLContext | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> Response:
    """Send one request to ``url`` and return the whole answer.

    Args:
      url: ``http://HOST[:PORT]/PATH[?QUERY]`` or ``https://...``; ``[IPv6]`` hosts too.
      method: the request method; ``HEAD`` answers have no body.
      headers: extra request headers; ``Host``, ``Connection: close`` and (with a body)
        ``Content-Length`` are added unless given.
      body: the request body.
      ssl_context: for ``https``: the context that checks the server (by default
        :func:`ssl.create_default_context`, the system's certificates).
      max_body: the most body bytes kept; a larger answer is refused, before it is read
        when its ``Content-Length`` says so.
      max_header_bytes: the most bytes of status line and headers read.

    Returns:
      The answer as a :class:`~triosock.Response`: ``status``, ``headers`` (names in
      lower case, in the order sent) and ``body``.

    Raises:
      ValueError: ``url`` is not an ``http``/``https`` URL with a host, or has a bad port.
      ConnectError: the server cannot be reached (refused, unreachable, unknown host, a
        failed TLS handshake).
      NotHTTPError: the server's first bytes are not HTTP's (raised at once, without
        waiting for more).
      ResponseTooLargeError: the header block or the body is over its limit.
      HTTPResponseError: the answer is malformed, or the connection ended before it did.

    A cancel point (it waits for the network); cancel it to bound its time.
    """
    parts = urlsplit(url)
    if parts.scheme not in _PORTS or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {_shown(url)}")
    if _UNSAFE_IN_HOST.search(parts.netloc):
        raise ValueError(f"a space or a control character in the URL's host: {url!r}")
    try:
        port = parts.port or _PORTS[parts.scheme]
    except ValueError as exc:
        raise ValueError(f"bad port in {_shown(url)}: {exc}") from None
    where = parts.netloc.rpartition("@")[2]
    if parts.scheme == "https" and ssl_context is None:
        ssl_context = ssl.create_default_context()
    # Spaces, control characters and what is not ASCII, percent-encoded: a target is one
    # token of the request line (never a way to write a second line).
    target = quote((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), _VISIBLE)
    # h11 checks the request line and the headers as it frames them: before connecting.
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_bytes)
    try:
        request = _request(conn, where, method, target, list(headers), body)
    except (h11.LocalProtocolError, UnicodeError) as exc:  # a bad method or header
        raise ValueError(f"cannot send that request: {exc}") from None
    stream = await open_tcp_stream(
        parts.hostname, port, ssl_context=ssl_context if parts.scheme == "https" else None
    )
    async with stream:
        exchange = _Exchange(stream, where, conn, max_header_bytes, max_body)
        return await exchange.run(request)


def _request(
    conn: h11.Connection,
    where: str,
    method: str,
    target: str,
    extra: list[tuple[str, str]],
    body: bytes,
) -> bytes:
    """The request's bytes, framed by ``conn``: ``Host``, ``Connection: close`` and
    (with a body) ``Content-Length`` added unless given."""
    names = {name.lower() for name, _ in extra}
    headers = list(extra)
    if "host" not in names:
        headers.insert(0, ("host", where))
    if "connection" not in names:
        headers.append(("connection", "close"))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("content-length", str(len(body))))
    data = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    return data + (conn.send(h11.EndOfMessage()) or b"")


@dataclass
class _Exchange:
    """One request and its answer on one connection, with the limits."""

    stream: trio.abc.Stream
    where: str
    # The connection the request was framed by. h11's own limit is the backstop; it does
    # not fire on a header block that arrives in one read (h11 issue 182), so _head
    # counts what it parsed too.
    _h11: h11.Connection
    max_header_bytes: int
    max_body: int
    _received: int = 0

    async def run(self, request: bytes) -> Response:
        """Send ``request`` (framed by :attr:`_h11`) and read the whole answer."""
        try:
            await self.stream.send_all(request)
            head = await self._head()
            return Response(head.status_code, _decoded(head.headers), await self._body(head))
        except trio.BrokenResourceError as exc:
            raise self._error(f"the connection broke before the answer ended ({exc})") from exc

    def _error(self, message: str) -> HTTPResponseError:
        return HTTPResponseError(self.where, f"bad response from {self.where}: {message}")

    async def _receive(self) -> None:
        data = bytes(await self.stream.receive_some(_RECEIVE_SIZE))
        if self._received == 0 and not data:
            raise self._error("the connection closed without an answer")
        if self._received == 0 and not _could_be_http(data):
            shown = data[:24].decode("ascii", "replace").encode("unicode_escape").decode()
            raise NotHTTPError(self.where, f"{self.where} does not answer HTTP (it said {shown!r})")
        self._received += len(data)
        self._h11.receive_data(data)  # b"": the server closed

    def _next(self, part: str = "headers") -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            return self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            if exc.error_status_hint == 431:  # h11's "Receive buffer too long"
                raise ResponseTooLargeError(
                    self.where, f"{self.where} sent {part} over {self.max_header_bytes} bytes"
                ) from exc
            raise self._error(str(exc)) from exc

    async def _head(self) -> h11.Response:
        informational = 0  # bytes of 1xx answers so far: they count towards the limit
        while True:
            event = self._next()
            if event is h11.NEED_DATA:
                await self._receive()
            elif isinstance(event, h11.InformationalResponse):
                # A 100 Continue, or a 103: the answer comes after; an endless run of them
                # is headers without end.
                informational += _size(event)
                if informational > self.max_header_bytes:
                    raise ResponseTooLargeError(
                        self.where,
                        f"{self.where} sent headers over {self.max_header_bytes} bytes",
                    )
            elif isinstance(event, h11.Response):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise self._error("the connection closed without an answer")
            else:
                raise self._error(f"unexpected {type(event).__name__}")
        if informational + _size(event) > self.max_header_bytes:
            raise ResponseTooLargeError(
                self.where, f"{self.where} sent headers over {self.max_header_bytes} bytes"
            )
        return event

    async def _body(self, head: h11.Response) -> bytes:
        length = dict(_decoded(head.headers)).get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            raise self._too_large(int(length))
        body = bytearray()
        while True:
            event = self._next("a chunk header")  # (the only header left: chunked bodies')
            if event is h11.NEED_DATA:
                await self._receive()
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.max_body:
                    raise self._too_large(None)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return bytes(body)
            else:
                raise self._error(f"unexpected {type(event).__name__} in the body")

    def _too_large(self, size: int | None) -> ResponseTooLargeError:
        """A body of ``size`` bytes (None: it did not say, and went past the limit)."""
        sent = "a body" if size is None else f"a body of {size} bytes"
        return ResponseTooLargeError(
            self.where, f"{self.where} sent {sent}, over the limit of {self.max_body} bytes"
        )


def _shown(url: str) -> str:
    """``url`` as an error message shows it: as it is, or quoted when it holds what
    would break the message's line (a CR, an LF, an escape)."""
    return url if url.isprintable() else repr(url)


def _size(head: h11.InformationalResponse | h11.Response) -> int:
    """What a status line and header block take, about (16 bytes at least)."""
    return 16 + len(head.reason) + sum(len(n) + len(v) + 4 for n, v in head.headers)


def _could_be_http(data: bytes) -> bool:
    """Whether ``data``, a server's first bytes, can begin an HTTP/1.x answer."""
    start = data[: len(_HTTP_PREFIX)]
    return _HTTP_PREFIX.startswith(start)


def _decoded(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
