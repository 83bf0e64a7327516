"""``--status HOST:PORT`` on every server, and ``python -m triosock SERVICE status``.

A server started from the command line also listens on a status port (loopback by
default; ``--status none`` turns it off) and answers ``GET /status`` with its figures as
JSON. ``python -m triosock chat status`` (or ``echo``, ``time``, ``http``) reads them,
takes a second reading a moment later for the rates, and prints them.

With ``--workers N`` the supervisor holds the status port. Each worker has one of its
own on a free loopback port, which only the supervisor knows; the supervisor's answer is
every worker's figures and their sum.

The JSON (documented in the README, "Status"):

* ``service``, ``version``, ``pid``, ``worker`` (its number, or null), ``started``
  (Unix time), ``uptime`` (seconds).
* ``listeners``: one object per listening socket with ``name``, ``transport`` (``tcp``,
  ``udp`` or ``web``) and ``address``; TCP and web listeners add ``connections`` (now)
  and ``connections_total``; UDP listeners add ``peers``, ``peers_total``,
  ``datagrams_in``, ``datagrams_out``, ``dropped`` (by the server: full queues, the peer
  limit, oversize), ``receive_buffer`` (bytes, as the kernel reports it) and
  ``kernel_drops`` (datagrams the kernel dropped on a full receive buffer before the
  server saw them; null where the system does not say); all add ``errors`` (handler
  failures).
* ``chat`` (chat only): ``users``, ``users_by_transport``, ``sessions_total``,
  ``rooms`` (name to users, as the directory knows them: every server's with
  ``--redis``), ``lines_in``, ``lines_out``, ``paced``, ``dropped``,
  ``disconnected_slow``.
* With workers: ``workers`` (each worker's object as above, or ``{"worker": I,
  "error": ...}`` for one that did not answer) and ``total`` (the sums), beside
  ``service``, ``version``, ``pid`` and ``uptime`` of the supervisor.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .. import __version__
from .._errors import BindError
from .._sansio.addresses import format_address
from .._transport.http import Request, Response, serve_http
from .._transport.tcp import TCPServer
from .._transport.udp import UDPServer
from .._transport.websocket import WebSocketServer
from ._common import CLIError, parse_hostport, positive
from ._parser import CommandParser

__all__ = [
    "DefaultAddress",
    "Status",
    "add_status_option",
    "fetch_status",
    "register_status",
]

Figures = dict[str, Any]
AnyServer = TCPServer | UDPServer | WebSocketServer


class DefaultAddress(tuple[str, int]):
    """A ``--status`` address the user did not give: when it is taken (another server
    of the same kind holds it), the server warns and runs without one."""

    __slots__ = ()


def _status_address(text: str) -> tuple[str, int] | None:
    return None if text.lower() == "none" else parse_hostport(text)


def add_status_option(parser: argparse.ArgumentParser, port: int, *, defaults: bool = True) -> None:
    """``--status HOST:PORT|none``, by default 127.0.0.1:``port``."""
    parser.add_argument(
        "--status",
        type=_status_address,
        default=DefaultAddress(("127.0.0.1", port)) if defaults else argparse.SUPPRESS,
        metavar="HOST:PORT|none",
        help=f"where to answer GET /status with this server's figures as JSON (default "
        f"127.0.0.1:{port}; skipped with a warning when that is taken; none: nowhere). "
        "Anyone who reaches it sees the figures: keep it on loopback",
    )


class Status:
    """What one server process reports: its listeners, and the service's own figures."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.started = time.time()
        self._clock = time.monotonic()
        self._listeners: list[tuple[str, str, AnyServer]] = []
        #: The service's own figures (the chat's), under the service's name.
        self.extra: Callable[[], Awaitable[Figures]] | None = None

    def add(
        self, name: str, transport: str, server: TCPServer | UDPServer | WebSocketServer
    ) -> None:
        self._listeners.append((name, transport, server))

    async def figures(self) -> Figures:
        from ._workers import worker_index

        result: Figures = {
            "service": self.service,
            "version": __version__,
            "pid": os.getpid(),
            "worker": worker_index(),
            "started": round(self.started, 3),
            "uptime": round(time.monotonic() - self._clock, 3),
            "listeners": [_listener(*entry) for entry in self._listeners],
        }
        if self.extra is not None:
            result[self.service] = await self.extra()
        else:
            await trio.lowlevel.checkpoint()
        return result


def _listener(
    name: str, transport: str, server: TCPServer | UDPServer | WebSocketServer
) -> Figures:
    if isinstance(server, UDPServer):
        udp = server.statistics()
        return {
            "name": name,
            "transport": transport,
            "address": format_address(server.address),
            "peers": udp.peers,
            "peers_total": udp.peers_total,
            "datagrams_in": udp.datagrams_in,
            "datagrams_out": udp.datagrams_out,
            "dropped": udp.dropped_queue_full + udp.dropped_peer_limit + udp.dropped_oversize,
            "expired": udp.expired,
            "errors": udp.handler_errors,
            "receive_buffer": server.receive_buffer,
            "kernel_drops": server.kernel_drops(),
        }
    figures: Figures = {
        "name": name,
        "transport": transport,
        "address": format_address(server.addresses[0]),
    }
    if isinstance(server, WebSocketServer):
        ws = server.statistics()
        figures.update(
            connections=ws.open_connections,
            connections_total=ws.total_connections,
            errors=ws.handler_errors,
        )
    else:
        tcp = server.statistics()
        figures.update(
            connections=tcp.open_connections,
            connections_total=tcp.total_connections,
            idle_timeouts=tcp.idle_timeouts,
            errors=tcp.handler_errors,
        )
    return figures


def _json(figures: Figures) -> Response:
    body = json.dumps(figures, indent=1).encode() + b"\n"
    return Response(200, [("content-type", "application/json")], body)


def status_handler(
    figures: Callable[[], Awaitable[Figures]],
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        if request.path not in ("/status", "/status.json"):
            await trio.lowlevel.checkpoint()
            return Response.text(404, "only /status here\n")
        if request.method not in ("GET", "HEAD"):
            await trio.lowlevel.checkpoint()
            return Response(405, [("allow", "GET, HEAD")])
        return _json(await figures())

    return handle


async def start_status(
    nursery: trio.Nursery,
    where: tuple[str, int],
    figures: Callable[[], Awaitable[Figures]],
    prog: str,
    service: str,
) -> str:
    """Start the status listener; the start-up line to print (or a warning's)."""
    host, port = where
    try:
        server: TCPServer = await nursery.start(
            lambda task_status: serve_http(
                status_handler(figures),
                port,
                host=host,
                max_connections=16,
                grace_period=0.5,
                task_status=task_status,
            )
        )
    except BindError as exc:
        if not isinstance(where, DefaultAddress):
            raise
        return f"no status port: {exc} (another {service} server? give --status HOST:PORT)"
    address = format_address(server.addresses[0])
    return f"status (http) listening on {address}: {prog} {service} status {address}"


# -- the status command ----------------------------------------------------------------


async def fetch_status(address: tuple[str, int], wait: float = 5.0) -> Figures:
    """The figures a server's status port answers."""
    from .http import fetch

    host, port = address
    where = format_address(address)
    with trio.move_on_after(wait):
        head, body = await fetch("http", host, port, "/status", where)
        if head.status_code != 200:
            raise CLIError(f"{where} answered {head.status_code}: not a triosock status port?")
        try:
            figures = json.loads(body)
        except ValueError:
            raise CLIError(f"{where} answered something that is not JSON") from None
        if not isinstance(figures, dict) or "service" not in figures:
            raise CLIError(f"{where} answered JSON that is not a triosock status")
        return figures
    raise CLIError(f"no answer from {where} within {wait:g} s")


def _n(count: int, thing: str) -> str:
    return f"{count} {thing}" if count == 1 else f"{count} {thing}s"


def _span(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days} d {text}" if days else text


def _rate(now: Figures, then: Figures | None, key: str, seconds: float) -> str:
    if then is None or seconds <= 0:
        return ""
    return f" ({(now.get(key, 0) - then.get(key, 0)) / seconds:.1f}/s)"


def _describe(
    figures: Figures, before: Figures | None, seconds: float, head: str | None = None
) -> list[str]:
    """The lines for one process's figures (``before``: an earlier reading, for rates)."""
    who = f"worker {figures['worker']}, pid" if figures.get("worker") else "pid"
    lines = [
        head
        or f"{figures['service']}: {who} {figures['pid']}, up {_span(figures['uptime'])}, "
        f"triosock {figures['version']}"
    ]
    earlier = {(x["name"], x["transport"]): x for x in (before or {}).get("listeners", [])}
    for listener in figures.get("listeners", []):
        head = f"  {listener['name']} ({listener['transport']}) {listener['address']}:"
        then = earlier.get((listener["name"], listener["transport"]))
        if listener["transport"] == "udp":
            lines.append(
                f"{head} {_n(listener['peers'], 'peer')} ({listener['peers_total']} since "
                "start), "
                f"datagrams in {listener['datagrams_in']}"
                f"{_rate(listener, then, 'datagrams_in', seconds)}, out "
                f"{listener['datagrams_out']}{_rate(listener, then, 'datagrams_out', seconds)}, "
                f"dropped {listener['dropped']}"
                + (
                    f" (and {listener['kernel_drops']} by the kernel, its buffer full)"
                    if listener.get("kernel_drops")
                    else ""
                )
            )
        else:
            lines.append(
                f"{head} {_n(listener['connections'], 'connection')} "
                f"({listener['connections_total']} since start)"
            )
    chat = figures.get("chat")
    if chat is not None:
        earlier_chat = (before or {}).get("chat")
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(chat["users_by_transport"].items()))
        rooms = ", ".join(f"{name} {n}" for name, n in sorted(chat["rooms"].items()))
        lines += [
            f"  users: {chat['users']}{f' ({kinds})' if kinds else ''}, "
            f"{_n(chat['sessions_total'], 'session')} since start",
            f"  rooms: {rooms or 'none'}",
            f"  lines in: {chat['lines_in']}{_rate(chat, earlier_chat, 'lines_in', seconds)}, "
            f"out: {chat['lines_out']}{_rate(chat, earlier_chat, 'lines_out', seconds)}",
            f"  dropped: {chat['dropped']}, disconnected for not reading: "
            f"{chat['disconnected_slow']}, paced: {chat['paced']}",
        ]
    return lines


def render(figures: Figures, before: Figures | None = None, seconds: float = 0.0) -> str:
    """The status as people read it."""
    if "workers" not in figures:
        return "\n".join(_describe(figures, before, seconds))
    earlier = {w.get("worker"): w for w in (before or {}).get("workers", [])}
    lines = [
        f"{figures['service']}: {len(figures['workers'])} workers under pid {figures['pid']}, "
        f"up {_span(figures['uptime'])}, triosock {figures['version']}"
    ]
    for worker in figures["workers"]:
        if "error" in worker:
            lines.append(f"worker {worker['worker']}: no answer ({worker['error']})")
        else:
            lines += _describe(worker, earlier.get(worker["worker"]), seconds)
    lines += _describe(figures["total"], (before or {}).get("total"), seconds, "all workers:")
    return "\n".join(lines)


def register_status(
    actions: argparse._SubParsersAction[CommandParser], service: str, port: int
) -> None:
    """The ``status`` action of ``service``, whose status port is ``port`` by default."""
    parser = actions.add_parser(
        "status",
        help=f"print a running {service} server's figures",
        description=f"Read a running {service} server's figures from its status port "
        f"(its --status; default 127.0.0.1:{port}) and print them, with rates from a "
        "second reading --interval later.",
    )
    parser.add_argument(
        "address",
        nargs="?",
        type=parse_hostport,
        default=("127.0.0.1", port),
        metavar="HOST:PORT",
        help=f"the server's status port (default 127.0.0.1:{port})",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON as it came")
    parser.add_argument(
        "--interval",
        type=positive,
        default=1.0,
        metavar="SECONDS",
        help="seconds between the two readings the rates come from (1)",
    )
    parser.add_argument("--once", action="store_true", help="one reading, no rates (for scripts)")
    parser.set_defaults(run=_status_command, status_service=service)


async def _status_command(args: argparse.Namespace) -> None:
    first = await fetch_status(args.address)
    if first["service"] != args.status_service:
        raise CLIError(
            f"{format_address(args.address)} is a {first['service']} server, not "
            f"{args.status_service}: try {args.prog} {first['service']} status"
        )
    if args.json or args.once:
        print(json.dumps(first, indent=1) if args.json else render(first), flush=True)
        return
    began = trio.current_time()
    await trio.sleep(args.interval)
    second = await fetch_status(args.address)
    print(render(second, first, trio.current_time() - began), flush=True)


# -- wiring ------------------------------------------------------------------------------


def status_starter(
    args: argparse.Namespace, figures: Callable[[], Awaitable[Figures]]
) -> Callable[[trio.Nursery], Awaitable[str]] | None:
    """The starter of the status listener ``args.status`` asks for, or None."""
    where = getattr(args, "status", None)
    if where is None:
        return None
    prog = getattr(args, "prog", "python -m triosock")

    async def start(nursery: trio.Nursery) -> str:
        return await start_status(nursery, where, figures, prog, args.service)

    return start


def combine(workers: list[Figures]) -> Figures:
    """The sum of the workers' figures (the rooms: the first's, as they share them)."""
    answered = [w for w in workers if "error" not in w]
    total: Figures = {"service": answered[0]["service"] if answered else "", "worker": None}
    for key in ("version", "pid", "started", "uptime"):
        total[key] = answered[0][key] if answered else 0
    listeners: dict[tuple[str, str], Figures] = {}
    for worker in answered:
        for listener in worker["listeners"]:
            which = (listener["name"], listener["transport"])
            if which not in listeners:
                listeners[which] = dict(listener)
            else:
                _add_into(listeners[which], listener)
    total["listeners"] = list(listeners.values())
    chats = [w["chat"] for w in answered if "chat" in w]
    if chats:
        chat = dict(chats[0])
        chat["users_by_transport"] = dict(chat["users_by_transport"])
        for other in chats[1:]:
            _add_into(chat, other)
        chat["rooms"] = chats[0]["rooms"]
        total["chat"] = chat
    return total


def _add_into(into: Figures, other: Figures) -> None:
    for key, value in other.items():
        if isinstance(value, bool) or key == "rooms":
            continue
        if isinstance(value, int | float):
            into[key] = (into.get(key) or 0) + value
        elif isinstance(value, dict):
            inner = into.setdefault(key, {})
            for name, n in value.items():
                if isinstance(n, int):
                    inner[name] = inner.get(name, 0) + n
