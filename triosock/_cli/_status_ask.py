"""``python -m triosock SERVICE status``: ask a server's status port, and show it.

The command reads the figures (:mod:`._status_serve` says what they hold), takes a
second reading a moment later for the rates, and prints them as people read them, or
the JSON as it came. It asks with :func:`triosock.fetch`, the HTTP client.
"""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import dataclass
from typing import Any

import trio

from .._sansio.addresses import format_address
from .._transport.http import Response
from .._transport.http_client import NotHTTPError, fetch
from ._console import CLIError
from ._parser import Parser, record
from ._run import Job
from ._values import Address, parse_hostport, positive

__all__ = ["fetch_status", "register_status", "render"]

Figures = dict[str, Any]
#: Seconds the status command waits for an answer.
STATUS_WAIT = 5.0
#: The most of a refusal's first line the command repeats.
_REASON_LIMIT = 120


class NotAStatusPort(CLIError):
    """The address answered, but is no status port (another protocol's, or another
    HTTP server's)."""


def _said(answer: Response) -> str:
    """What an HTTP answer that is not a status says: its status, and the first line of
    a short plain-text body (a chat port says it is one), printable characters only."""
    said = str(answer.status)
    content_type = next((v for k, v in answer.headers if k.lower() == "content-type"), "")
    if content_type.startswith("text/plain") and len(answer.body) <= 4096:
        first = answer.body.decode("utf-8", "replace").partition("\n")[0]
        first = _printable(first)[:_REASON_LIMIT].strip()
        if first:
            said = first if first.startswith(said) else f"{said}: {first}"
    return said


async def fetch_status(address: Address) -> Figures:
    """The figures the status port at ``address`` answers (a cancel point: callers
    bound its time with a cancel scope).

    Raises:
      ConnectError: nothing listens there.
      NotAStatusPort: something listens there that does not answer HTTP, or answers
        with something else than 200.
      HTTPResponseError: a bad HTTP answer.
      CLIError: an answer of 200 that is not a triosock status.
    """
    where = format_address(address)
    try:
        answer = await fetch(f"http://{where}/status")
    except NotHTTPError:
        raise NotAStatusPort(f"{where} is not a status port: it does not answer HTTP") from None
    if answer.status == 421:  # the Host rule: see _status_serve
        raise CLIError(
            f"{where} answers its status only to its own address or localhost "
            "(421 Misdirected Request): ask it by IP address"
        )
    if answer.status != 200:
        raise NotAStatusPort(f"{where} is not a status port: it answered {_said(answer)}")
    try:
        figures = json.loads(answer.body)
    except ValueError:
        raise CLIError(f"{where} answered something that is not JSON") from None
    if not isinstance(figures, dict) or "service" not in figures:
        raise CLIError(f"{where} answered JSON that is not a triosock status")
    return figures


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


def _listener_line(listener: Figures, then: Figures | None, seconds: float) -> str:
    head = f"  {listener['name']} ({listener['transport']}) {listener['address']}:"
    if listener["transport"] != "udp":
        return (
            f"{head} {_n(listener['connections'], 'connection')} "
            f"({listener['connections_total']} since start)"
        )
    kernel = listener.get("kernel_drops")
    return (
        f"{head} {_n(listener['peers'], 'peer')} ({listener['peers_total']} since start), "
        f"datagrams in {listener['datagrams_in']}"
        f"{_rate(listener, then, 'datagrams_in', seconds)}, out "
        f"{listener['datagrams_out']}{_rate(listener, then, 'datagrams_out', seconds)}, "
        f"dropped {listener['dropped']}"
        + (f" (and {kernel} by the kernel, its buffer full)" if kernel else "")
    )


def _chat_lines(chat: Figures, earlier: Figures | None, seconds: float) -> list[str]:
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(chat["users_by_transport"].items()))
    rooms = ", ".join(f"{name} {n}" for name, n in sorted(chat["rooms"].items()))
    return [
        f"  users: {chat['users']}{f' ({kinds})' if kinds else ''}, "
        f"{_n(chat['sessions_total'], 'session')} since start",
        f"  rooms: {rooms or 'none'}",
        f"  lines in: {chat['lines_in']}{_rate(chat, earlier, 'lines_in', seconds)}, "
        f"out: {chat['lines_out']}{_rate(chat, earlier, 'lines_out', seconds)}",
        f"  dropped: {chat['dropped']}, disconnected for not reading: "
        f"{chat['disconnected_slow']}, paced: {chat['paced']}",
    ]


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
        then = earlier.get((listener["name"], listener["transport"]))
        lines.append(_listener_line(listener, then, seconds))
    chat = figures.get("chat")
    if chat is not None:
        lines += _chat_lines(chat, (before or {}).get("chat"), seconds)
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


# -- the command ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusQuery:
    """What ``SERVICE status`` was asked for."""

    service: str
    default_port: int
    address: Address
    json: bool
    once: bool
    interval: float
    prog: str


async def _ask(query: StatusQuery) -> Figures:
    where = format_address(query.address)
    with trio.move_on_after(STATUS_WAIT):
        try:
            return await fetch_status(query.address)
        except NotAStatusPort as exc:
            raise CLIError(
                f"{exc} ({query.service} servers answer status on "
                f"127.0.0.1:{query.default_port} unless --status moved it)"
            ) from None
    raise CLIError(f"no answer from {where} within {STATUS_WAIT:g} s")


def _printable(text: str) -> str:
    """``text`` without control characters (but its line ends): what another host's
    status says must not drive this terminal (escape sequences, a title, a clear)."""
    return "".join(c for c in text if c == "\n" or c.isprintable())


def _readable(
    query: StatusQuery, figures: Figures, before: Figures | None = None, seconds: float = 0.0
) -> str:
    """:func:`render` of the readings, or a one-line error for a status this version
    cannot read (a field missing or of another type: another version, or not ours)."""
    try:
        return _printable(render(figures, before, seconds))
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        raise CLIError(
            f"{format_address(query.address)} answered a status this triosock cannot read "
            f"({type(exc).__name__}: {_printable(str(exc))[:80]})"
        ) from None


async def _status_command(query: StatusQuery) -> None:
    first = await _ask(query)
    if first["service"] != query.service:
        service = _printable(str(first["service"]))[:40]
        article = "an" if service[:1] in ("a", "e", "i", "o", "u") else "a"
        raise CLIError(
            f"{format_address(query.address)} is {article} {service} server, not "
            f"{query.service}: try {query.prog} {service} status"
        )
    if query.json or query.once:
        # (json.dumps writes control characters as \u escapes.)
        print(json.dumps(first, indent=1) if query.json else _readable(query, first), flush=True)
        return
    began = trio.current_time()
    await trio.sleep(query.interval)
    second = await _ask(query)
    print(_readable(query, second, first, trio.current_time() - began), flush=True)


def _job(service: str, port: int, args: argparse.Namespace) -> Job:
    query = record(StatusQuery, args, service=service, default_port=port)
    return functools.partial(_status_command, query)


def register_status(service_parser: Parser, service: str, port: int) -> None:
    """The ``status`` command of ``service``, whose status port is ``port`` by default."""
    parser = service_parser.add_command(
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
    parser.set_defaults(job=functools.partial(_job, service, port))
