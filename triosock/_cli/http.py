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
from .._transport.tcp import TCPServer, connect_tcp
from ._common import CLIError, configure_logging, parse_port, run_servers, say, tcp_line
from ._workers import PortSlot, add_workers_option, supervise, worker_index

#: The default port: the tutorials' 8080.
HTTP_PORT = 8080


_PORT_SLOT = PortSlot(
    lambda args: (args.host, args.port), lambda args, port: setattr(args, "port", port), ("tcp",)
)


async def _http_serve(args: argparse.Namespace) -> None:
    if args.workers > 1:
        slot = PortSlot(
            lambda a: (a.host, a.port), lambda a, port: setattr(a, "port", port), ("tcp",)
        )
        await supervise(args, [slot], grace=5.0)
        return
    configure_logging()
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
        what = f"files under {handler.root}" if isinstance(handler, StaticFiles) else "hello"
        return f"{tcp_line('http', server)} ({what})"

    servers: list[TCPServer] = []
    await run_servers([start])
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
        head, body = await _get(url.scheme, url.hostname, port, target, url.netloc)
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


async def _get(
    scheme: str, host: str, port: int, target: str, netloc: str
) -> tuple[h11.Response, bytes]:
    context = ssl.create_default_context() if scheme == "https" else None
    stream = await connect_tcp(host, port, ssl_context=context)
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


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text}")
    return value


def register(services: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    http = services.add_parser("http", help="a tiny HTTP server (hello/echo, or files) and client")
    actions = http.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = actions.add_parser(
        "serve", help="serve the files under --root, or the tutorial's / and /echo"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=parse_port, default=HTTP_PORT, help=f"port (default {HTTP_PORT})"
    )
    serve.add_argument("--root", metavar="DIR", help="serve the files under DIR")
    add_workers_option(serve, default=1)
    serve.set_defaults(run=_http_serve)
    get = actions.add_parser("get", help="GET a URL and print the body (exit 1 for 4xx/5xx)")
    get.add_argument("url", metavar="URL", help="http://HOST[:PORT]/PATH (or https://)")
    get.add_argument("-i", "--include", action="store_true", help="print the status and headers")
    get.add_argument(
        "--timeout", type=_positive, default=10.0, help="seconds for the whole exchange (10)"
    )
    get.set_defaults(run=_http_get)
