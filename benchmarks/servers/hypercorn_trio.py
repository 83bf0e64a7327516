"""``GET /`` on hypercorn's trio worker: ``hypercorn.trio.serve`` and a minimal ASGI app.

As hypercorn's docs teach a programmatic start: a ``Config`` with ``bind``, then
``await hypercorn.trio.serve(app, config)``, here through ``nursery.start``, which returns
the bound addresses (with the real port when ``--port`` is 0).  Access logging stays off
(``accesslog = None``, the default); everything else is hypercorn's default, HTTP/1.1 on
h11, ``keep_alive_max_requests = 1000`` included.
"""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from benchmarks.servers._common import HOST, announce, asgi_hello, parse_args


def main() -> None:
    args = parse_args(__doc__ or "")
    config = Config()
    config.bind = [f"{HOST}:{args.port}"]
    config.accesslog = None
    app: Any = asgi_hello

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(serve, app, config)
            announce(int(binds[0].rsplit(":", 1)[1]))  # "http://127.0.0.1:PORT"

    trio.run(run)


if __name__ == "__main__":
    main()
