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
"""

from __future__ import annotations

import importlib.resources
import json
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.trio.server import ServerConnection

if TYPE_CHECKING:
    from ._server import ChatServer

__all__ = ["ChatPage"]

#: The WebSocket's path.
WS_PATH: Final = "/ws"

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
    """

    def __init__(self, chat: ChatServer) -> None:
        self.chat = chat
        self._assets = {path: (_asset(name), kind) for path, (name, kind) in _ASSETS.items()}

    async def __call__(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == WS_PATH and request.method == "GET":
            return None  # the handshake goes on
        if request.method not in ("GET", "HEAD"):
            response = _response(
                HTTPStatus.METHOD_NOT_ALLOWED, b"method not allowed\n", "text/plain; charset=utf-8"
            )
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
            response = _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
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
