"""The chat page: the HTTP side of the chat's WebSocket port.

:class:`ChatPage` is a ``process_request`` hook for :func:`~triosock.serve_websocket`:
it answers plain HTTP requests on the WebSocket's port and lets the handshake at
``/ws`` through. What it serves:

* ``GET /`` — the page (HTML, with ``/chat.css`` and ``/chat.js``; all of it in the
  package, no build step, nothing from elsewhere). The page's Content-Security-Policy
  allows scripts, styles and connections to this origin only, and no inline script: a
  second guard, after ``textContent``, against one user's text running in another's
  browser.
* ``GET /rooms`` — ``{"rooms": {"#lobby": 3, ...}}``, the rooms with anyone in them and
  how many (the page's room list; any client may read it).
* ``/ws`` — the WebSocket (see :mod:`triosock._sansio.chat._web` for its messages).
* ``/favicon.ico`` — 204 (there is none).
* anything else — 404; a method other than GET and HEAD — 405. (websockets reads one
  request per connection, without a body: a request with one gets no answer.)

Every answer but the handshake is for the server's own ``Host`` only: an IP address,
``localhost``, the host the port was bound to, or the host of an allowed origin
(``--web-origin``), the names the WebSocket's ``Origin`` rule accepts. Another name gets
``421 Misdirected Request`` (RFC 9110 15.5.20: not a server that answers for that host)
and nothing else, so that a page on a name an attacker points at this server (DNS
rebinding) cannot read the page or the room names. (The handshake is left to the
``Origin`` rule: a browser always sends an ``Origin``.)
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import urllib.parse
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.trio.server import ServerConnection

from ..._sansio.http_rules import host_refusal_untrusted

if TYPE_CHECKING:
    from ._server import ChatServer

__all__ = ["ChatPage"]

LOGGER = logging.getLogger("triosock.chat")

#: The WebSocket's path.
WS_PATH: Final = "/ws"

_TEXT: Final = "text/plain; charset=utf-8"
_CSP = (
    "default-src 'self'; connect-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_ASSETS: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/chat.css": ("chat.css", "text/css; charset=utf-8"),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
}


def _asset(name: str) -> bytes:
    return importlib.resources.files(__package__).joinpath("page", name).read_bytes()


class ChatPage:
    """The page, the room list and the way to ``/ws`` (see the module docstring).

    Args:
      chat: the chat server whose rooms ``/rooms`` lists.
      host: the host the web port was bound to (a name of its own).
      origins: the origins allowed besides the page's own (``--web-origin``): their hosts
        are names of its own too.
    """

    def __init__(
        self, chat: ChatServer, *, host: str = "127.0.0.1", origins: Iterable[str] = ()
    ) -> None:
        self.chat = chat
        self.host = host
        self.names = frozenset(urllib.parse.urlsplit(origin).hostname or "" for origin in origins)
        self._assets = {path: (_asset(name), kind) for path, (name, kind) in _ASSETS.items()}

    async def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == WS_PATH and request.method == "GET":
            return None  # the handshake goes on
        misdirected = host_refusal_untrusted(request.headers.get_all("Host"), self.host, self.names)
        if misdirected is not None:
            LOGGER.info("refused %s %s: %s", request.method, path[:80], misdirected)
            return _response(HTTPStatus.MISDIRECTED_REQUEST, b"not this server's host\n", _TEXT)
        if request.method not in ("GET", "HEAD"):
            response = _response(HTTPStatus.METHOD_NOT_ALLOWED, b"method not allowed\n", _TEXT)
            response.headers["Allow"] = "GET, HEAD"
            return response
        found = self._assets.get(path)
        if found is not None:
            response = _response(HTTPStatus.OK, *found)
        elif path == "/favicon.ico":
            response = _response(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        elif path == "/rooms":
            rooms = await self.chat.rooms()
            body = json.dumps({"rooms": rooms}, sort_keys=True).encode() + b"\n"
            response = _response(HTTPStatus.OK, body, "application/json")
        else:
            response = _response(HTTPStatus.NOT_FOUND, b"not found\n", _TEXT)
        if request.method == "HEAD":
            response.body = b""  # the headers say what a GET would get
        return response


def _response(status: HTTPStatus, body: bytes, kind: str) -> Response:
    length = [] if status is HTTPStatus.NO_CONTENT else [("Content-Length", str(len(body)))]
    headers = Headers(
        [
            ("Content-Type", kind),
            *length,
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", _CSP),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)
