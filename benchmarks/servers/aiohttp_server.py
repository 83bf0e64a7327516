"""``GET /`` on aiohttp's web server, as its docs teach: an ``Application`` with one route,
run by an ``AppRunner`` on a ``TCPSite``, access log off (``access_log=None``).

The handler returns ``web.Response(text="hello world\\n")`` (text/plain); the loop is
asyncio's default one.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from benchmarks.servers._common import HOST, announce, parse_args


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello world\n")


async def serve(port: int) -> None:
    app = web.Application()
    app.add_routes([web.get("/", hello)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    announce(runner.addresses[0][1])  # the bound (host, port)
    try:
        await asyncio.Event().wait()  # serve until killed
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve(parse_args(__doc__ or "").port))
