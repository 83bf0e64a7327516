"""``GET /`` on triosock's public API, as its docs teach: ``serve_http`` and a handler.

The handler is ``async def hello(request: Request) -> Response`` returning
``Response.text(200, "hello world\\n")`` for every request, started with
``nursery.start(serve_http, hello, port, host=...)``, which hands back the ``TCPServer``.
All of ``serve_http``'s limits are left at their defaults (``max_requests=1000`` answers
per connection: the load client opens a new connection after the ``Connection: close``).
"""

from __future__ import annotations

import triosock
from benchmarks.servers._common import serve_triosock_http


async def hello(request: triosock.Request) -> triosock.Response:
    return triosock.Response.text(200, "hello world\n")


if __name__ == "__main__":
    serve_triosock_http(hello, __doc__)
