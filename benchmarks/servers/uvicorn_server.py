"""``GET /`` on uvicorn: a minimal ASGI app, ``uvicorn.Config`` and ``uvicorn.Server``.

As uvicorn's docs teach a programmatic start: ``Config(app, host=..., port=...,
log_level="warning", access_log=False)``, ``Server(config)``, ``server.run()``, on the
event loop uvicorn picks itself (``loop="auto"``: uvloop when it is installed, as in the
``bench`` dependency group) and its default HTTP implementation (``http="auto"``:
httptools when installed, else h11, which is what ``pip install uvicorn`` without the
``[standard]`` extra gets).  The one addition: ``startup`` is extended to print the bound
port (uvicorn logs it only at ``info``), which ``--port 0`` needs.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from benchmarks.servers._common import HOST, announce, asgi_hello, parse_args


class Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:  # every listener is bound
            announce(self.servers[0].sockets[0].getsockname()[1])


def main() -> None:
    args = parse_args(__doc__ or "")
    app: Any = asgi_hello
    config = uvicorn.Config(app, host=HOST, port=args.port, log_level="warning", access_log=False)
    Server(config).run()


if __name__ == "__main__":
    main()
