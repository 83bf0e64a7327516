"""``python -m triosock http serve|get``."""

from __future__ import annotations

import argparse
import ssl
import sys
from urllib.parse import urlsplit

import h11
import trio

from .._services.http import StaticFiles, tutorial_handler
from .._transport.http import Handler, serve_http
from .._transport.tcp import TCPServer, open_tcp_stream
from ._common import (
    CLIError,
    add_log_options,
    configure_logging,
    parse_port,
    positive,
    run_servers,
    say,
    tcp_line,
)
from ._parser import CommandParser, add_config_option
from ._status import Status, add_status_option, register_status, status_starter
from ._workers import PortSlot, add_workers_option, supervise, worker_index

#: The default port: the tutorials' 8080.
HTTP_PORT = 8080
STATUS_PORT = 8081


_PORT_SLOT = PortSlot(
    lambda args: (args.host, args.port), lambda args, port: setattr(args, "port", port), ("tcp",)
)


async def _http_serve(args: argparse.Namespace) -> None:
    configure_logging(args)
    if args.workers > 1:
        slot = PortSlot(
            lambda a: (a.host, a.port), lambda a, port: setattr(a, "port", port), ("tcp",)
        )
        await supervise(args, [slot], grace=5.0)
        return
    handler: Handler = tutorial_handler
    if args.root is not None:
        try:
            handler = StaticFiles(args.root)
        except OSError as exc:
            raise CLIError(f"--root {args.root}: {exc.strerror or exc}") from exc

    async def start(nursery: trio.Nursery) -> str:
        server: TCPServer = await nursery.start(
            lambda task_status: serve_http(
                handler,
                args.port,
                host=args.host,
                reuse_port=worker_index() is not None,
                task_status=task_status,
            )
        )
        servers.append(server)
        status.add("http", "tcp", server)
        what = f"files under {handler.root}" if isinstance(handler, StaticFiles) else "hello"
        return f"{tcp_line('http', server)} ({what})"

    servers: list[TCPServer] = []
    status = Status("http")
    await run_servers([start, status_starter(args, status.figures)])
    worker = worker_index()
    if worker is not None and servers:  # how the kernel spread the connections
        served = servers[0].statistics().total_connections
        say(f"worker {worker} served {served} connections")


async def _http_get(args: argparse.Namespace) -> None:
    url = urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise CLIError(f"not an http:// or https:// URL: {args.url}")
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError as exc:
        raise CLIError(f"bad port in {args.url}: {exc}") from exc
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    with trio.move_on_after(args.timeout) as timer:
        head, body = await fetch(url.scheme, url.hostname, port, target, url.netloc)
    if timer.cancelled_caught:
        raise CLIError(f"no answer from {url.netloc} within {args.timeout:g} s")
    out = sys.stdout.buffer
    if args.include:
        reason = head.reason.decode("latin-1")
        out.write(f"HTTP/{head.http_version.decode()} {head.status_code} {reason}\r\n".encode())
        for name, value in head.headers:
            out.write(name + b": " + value + b"\r\n")
        out.write(b"\r\n")
    out.write(body)
    out.flush()
    if head.status_code >= 400:
        raise CLIError(f"HTTP {head.status_code} {head.reason.decode('latin-1')}")


async def fetch(
    scheme: str, host: str, port: int, target: str, netloc: str
) -> tuple[h11.Response, bytes]:
    context = ssl.create_default_context() if scheme == "https" else None
    stream = await open_tcp_stream(host, port, ssl_context=context)
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=target,
        headers=[
            ("host", netloc),
            ("user-agent", "triosock"),
            ("accept", "*/*"),
            ("connection", "close"),
        ],
    )
    async with stream:
        await stream.send_all((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        head: h11.Response | None = None
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise CLIError(f"bad response from {netloc}: {exc}") from exc
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some()))
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        if head is None:
            raise CLIError(f"{netloc} closed the connection without an answer")
        return head, bytes(body)


def register(services: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    http = services.add_parser("http", help="a tiny HTTP server (hello/echo, or files) and client")
    actions = http.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=CommandParser
    )
    serve = actions.add_parser(
        "serve", help="serve the files under --root, or the tutorial's / and /echo"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=parse_port, default=HTTP_PORT, help=f"port (default {HTTP_PORT})"
    )
    serve.add_argument("--root", metavar="DIR", help="serve the files under DIR")
    add_workers_option(serve, default=1)
    add_status_option(serve, STATUS_PORT)
    add_config_option(serve)
    add_log_options(serve, defaults=False)
    serve.set_defaults(run=_http_serve)
    register_status(actions, "http", STATUS_PORT)
    get = actions.add_parser("get", help="GET a URL and print the body (exit 1 for 4xx/5xx)")
    get.add_argument("url", metavar="URL", help="http://HOST[:PORT]/PATH (or https://)")
    get.add_argument("-i", "--include", action="store_true", help="print the status and headers")
    get.add_argument(
        "--timeout",
        type=positive,
        metavar="SECONDS",
        default=10.0,
        help="seconds for the whole exchange (10)",
    )
    get.set_defaults(run=_http_get)
