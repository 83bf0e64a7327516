"""TCP echo on asyncio streams as the asyncio docs teach: ``start_server``, read, write, drain."""

from __future__ import annotations

import asyncio

from benchmarks.servers._common import HOST, announce, parse_args, run_asyncio


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(echo, HOST, port)
    announce(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = parse_args(__doc__ or "", loop_choice=True)
    run_asyncio(main(args.port), use_uvloop=args.uvloop)
