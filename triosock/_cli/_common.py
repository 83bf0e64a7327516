"""What every service's command line shares: address parsing and running servers."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
from collections.abc import Awaitable, Callable, Sequence

import trio

from .._errors import TriosockError
from .._transport.tcp import TCPServer, format_address
from .._transport.udp import UDPServer

__all__ = [
    "ADDRESS_HELP",
    "CLIError",
    "add_log_options",
    "configure_logging",
    "count",
    "factor",
    "log_level",
    "not_negative",
    "number",
    "parse_hostport",
    "parse_port",
    "positive",
    "positive_or_none",
    "run_servers",
    "say",
    "tcp_line",
    "udp_line",
]

#: The help of a HOST:PORT argument; format it with what is there.
ADDRESS_HELP = "{} to talk to: IPv4 or name and port (127.0.0.1:7007), or [IPv6]:PORT"


class CLIError(TriosockError):
    """A problem with what the user asked for, reported as one line."""


def parse_port(text: str) -> int:
    """A port number from text; argparse turns the ValueError into a usage error."""
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` into ``(host, port)``."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"expected [IPv6]:PORT, got {text!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if not host:
        raise argparse.ArgumentTypeError(f"missing host in {text!r}")
    return host, parse_port(port_text)


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text}")
    return value


def positive(text: str) -> float:
    value = number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def not_negative(text: str) -> float:
    value = number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def factor(text: str) -> float:
    value = number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def positive_or_none(text: str) -> float | None:
    return None if text.lower() == "none" else positive(text)


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def count_or_none(text: str) -> int | None:
    return None if text.lower() == "none" else count(text)


def add_log_options(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """``-v/--verbose`` and ``-q/--quiet``, each repeatable. Without ``defaults`` (on a
    command under one that has them) an option left out keeps what was said before it."""
    default: object = 0 if defaults else argparse.SUPPRESS
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="log more: each connection and UDP peer coming and going (-vv: more still)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=default,
        help="log less: warnings only (-qq: errors only)",
    )


#: -qq, -q, nothing, -v, -vv.
_LEVELS = [logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG, 5]


def log_level(args: argparse.Namespace) -> int:
    """The level that ``-v`` and ``-q`` ask for (INFO when neither is given)."""
    step = getattr(args, "verbose", 0) - getattr(args, "quiet", 0)
    return _LEVELS[max(0, min(len(_LEVELS) - 1, 2 + step))]


def configure_logging(args: argparse.Namespace | None = None) -> None:
    """Log lines with the time, the level, ``[worker I]`` in a worker, and the logger's
    name. The level applies to triosock's own loggers; the libraries under it
    (websockets, coredis, trio) log their warnings only, or everything at ``-vv``."""
    level = logging.INFO if args is None else log_level(args)
    worker = os.environ.get("TRIOSOCK_WORKER")
    tag = f"[worker {worker}] " if worker else ""
    logging.basicConfig(
        level=logging.WARNING if level > 5 else level,
        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s",
    )
    logging.getLogger("triosock").setLevel(level)


def say(text: str) -> None:
    print(text, flush=True)


# -- running servers -------------------------------------------------------------------

ServerStarter = Callable[[trio.Nursery], Awaitable[str]]


async def run_servers(starters: Sequence[ServerStarter | None]) -> None:
    """Start every server, print where each listens, and run until SIGINT, SIGTERM or
    SIGHUP (a closed terminal: a server started by hand stops the same way).

    Each starter starts one server in the nursery and returns a line describing it
    (None: nothing to start).
    A signal cancels the nursery, which stops every server gracefully.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            for start in starters:
                if start is not None:
                    say(await start(nursery))
            async for signum in signals:
                say(f"{signal.Signals(signum).name} received, shutting down")
                nursery.cancel_scope.cancel()
                break


def tcp_line(name: str, server: TCPServer) -> str:
    """The startup line for a TCP server (tests and scripts read the port from it)."""
    where = ", ".join(format_address(a) for a in server.addresses)
    return f"{name} (tcp) listening on {where}"


def udp_line(name: str, server: UDPServer) -> str:
    """The startup line for a UDP server."""
    return f"{name} (udp) listening on {format_address(server.address)}"


async def read_stdin_chunk() -> bytes:
    """Up to 64 KiB of stdin (b"" at its end), read in a thread so trio keeps running.

    ``os.read`` rather than ``sys.stdin.buffer``: a client that exits while this thread
    still waits must not hold the buffered reader's lock at interpreter shutdown (Python
    aborts on that). The abandoned thread just dies with the process.
    """
    return await trio.to_thread.run_sync(os.read, 0, 65536, abandon_on_cancel=True)
