"""``python -m triosock http serve|get|status``.

``http serve --tls-cert FILE`` serves HTTPS (``--plain-port`` adds a plaintext port
beside it); ``http get https://...`` checks the server against the system's CAs, or
``--ca FILE`` (see :mod:`._tls`).
"""

from __future__ import annotations

import argparse
import functools
import http
import math
import ssl
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

import trio

from .._services.http import StaticFiles, tutorial_handler
from .._transport.http import Handler, serve_http
from .._transport.http_client import fetch
from .._transport.tcp import TCPServer
from ._console import CLIError, UsageError, say
from ._parser import Parser, record
from ._run import Job
from ._serve_settings import (
    PortSlot,
    ServeSettings,
    add_host_port,
    add_serve_options,
    serve_common,
)
from ._serving import run_serve, run_servers, tcp_line
from ._status_ask import register_status
from ._status_serve import Status
from ._tls import (
    TLSFiles,
    add_tls_client_options,
    add_tls_serve_options,
    client_context,
    tls_files,
    tls_note,
)
from ._values import parse_port, positive
from ._workerenv import worker_index

#: The default port: the tutorials' 8080.
HTTP_PORT = 8080
STATUS_PORT = 8081
#: Seconds a connection may wait between requests, unless --idle-timeout says.
KEEP_ALIVE = 5.0
#: Seconds a client may take nothing of a response (nginx's send_timeout).
SEND_TIMEOUT = 60.0


@dataclass(frozen=True)
class HTTPSettings(ServeSettings):
    """What ``http serve`` was asked for."""

    host: str = "127.0.0.1"
    port: int = HTTP_PORT
    root: str | None = None
    send_timeout: float = SEND_TIMEOUT
    tls: TLSFiles | None = None
    plain_port: int | None = None

    def port_slots(self) -> list[PortSlot]:
        slots = [PortSlot("port", self.host, self.port, ("tcp",), False)]
        if self.plain_port is not None:
            slots.append(PortSlot("plain_port", self.host, self.plain_port, ("tcp",), False))
        return slots

    async def serve(self, status: Status) -> None:
        handler: Handler = tutorial_handler
        if self.root is not None:
            try:
                handler = StaticFiles(self.root)
            except OSError as exc:
                raise CLIError(f"--root {self.root}: {exc.strerror or exc}") from exc
        servers: list[TCPServer] = []
        context = None if self.tls is None else self.tls.context()

        async def start(port: int, tls: bool, nursery: trio.Nursery) -> str:
            server: TCPServer = await nursery.start(
                lambda task_status: serve_http(
                    handler,
                    port,
                    host=self.host,
                    max_connections=self.common.max_connections,
                    # "none": wait for the next request as long as the client likes.
                    keep_alive_timeout=self.common.idle_or(KEEP_ALIVE) or math.inf,
                    send_timeout=self.send_timeout,
                    grace_period=self.common.grace,
                    reuse_port=worker_index() is not None,
                    ssl_context=context if tls else None,
                    handshake_timeout=self.tls.handshake_timeout if self.tls else None,
                    task_status=task_status,
                )
            )
            servers.append(server)
            status.add("http", "tcp+tls" if tls else "tcp", server)
            what = f"files under {handler.root}" if isinstance(handler, StaticFiles) else "hello"
            note = tls_note(tls, context is not None)
            return tcp_line("http", server, f"{note}, {what}" if note else what)

        starters = [functools.partial(start, self.port, context is not None)]
        if self.plain_port is not None:
            starters.append(functools.partial(start, self.plain_port, False))
        await run_servers(starters, status)
        worker = worker_index()
        if worker is not None and servers:  # how the kernel spread the connections
            served = servers[0].statistics().total_connections
            say(f"worker {worker} served {served} connections")


_IDLE_HELP = (
    "close a connection that waits this long for its next request "
    f"({KEEP_ALIVE:g}; none: as long as the client likes)"
)


def _serve_job(args: argparse.Namespace) -> Job:
    tls = tls_files(args, "--plain-port")
    common = serve_common(args, "http", STATUS_PORT)
    return functools.partial(run_serve, record(HTTPSettings, args, common=common, tls=tls))


# -- the client ----------------------------------------------------------------------------


async def _get(
    url: str, include: bool, within: float, context: ssl.SSLContext | None = None
) -> None:
    """``http get``: the answer's body on stdout (with ``include``, its head before);
    an ``https://`` URL's server checked with ``context`` (default: the system's CAs)."""
    try:
        with trio.move_on_after(within) as timer:
            answer = await fetch(url, ssl_context=context)
    except ValueError as exc:  # fetch's word on the URL, before any IO
        raise CLIError(str(exc)) from None
    if timer.cancelled_caught:
        where = urlsplit(url).netloc
        raise CLIError(f"no answer from {where} within {within:g} s")
    try:
        reason = http.HTTPStatus(answer.status).phrase
    except ValueError:  # a status Python has no name for
        reason = ""
    out = sys.stdout.buffer
    if include:
        out.write(f"HTTP/1.1 {answer.status} {reason}\r\n".encode())
        for name, value in answer.headers:
            out.write(f"{name}: {value}\r\n".encode("latin-1"))
        out.write(b"\r\n")
    out.write(answer.body)
    out.flush()
    if answer.status >= 400:
        raise CLIError(f"HTTP {answer.status} {reason}".rstrip())


def _get_job(args: argparse.Namespace) -> Job:
    context = None
    if args.ca is not None:
        if urlsplit(args.url).scheme != "https":
            raise UsageError("--ca is for https:// URLs")
        context = client_context(args.ca)
    return functools.partial(_get, args.url, args.include, args.timeout, context)


def register(top: Parser) -> None:
    service = top.add_command("http", help="a tiny HTTP server (hello/echo, or files) and client")
    service.add_commands(leaf=True, metavar="ACTION")
    serve = service.add_command(
        "serve", help="serve the files under --root, or the tutorial's / and /echo"
    )
    add_host_port(serve, HTTP_PORT)
    serve.add_argument("--root", metavar="DIR", help="serve the files under DIR")
    serve.add_argument(
        "--send-timeout",
        type=positive,
        metavar="SECONDS",
        default=SEND_TIMEOUT,
        help=f"reset a client that takes nothing of a response this long ({SEND_TIMEOUT:g})",
    )
    add_tls_serve_options(serve, what="--port (HTTPS)")
    serve.add_argument(
        "--plain-port",
        type=parse_port,
        default=None,
        metavar="PORT",
        help="with --tls-cert: a plaintext HTTP port beside the HTTPS one, on --host "
        "(default none)",
    )
    add_serve_options(serve, status_port=STATUS_PORT, idle_help=_IDLE_HELP, job=_serve_job)
    register_status(service, "http", STATUS_PORT)
    get = service.add_command("get", help="GET a URL and print the body (exit 1 for 4xx/5xx)")
    get.add_argument("url", metavar="URL", help="http://HOST[:PORT]/PATH (or https://)")
    get.add_argument("-i", "--include", action="store_true", help="print the status and headers")
    get.add_argument(
        "--timeout",
        type=positive,
        metavar="SECONDS",
        default=10.0,
        help="seconds for the whole exchange (10)",
    )
    add_tls_client_options(get, flag=False)
    get.set_defaults(job=_get_job)
