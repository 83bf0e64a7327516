"""The command line: ``python -m triosock <service> <action> ...``.

Every error a user can cause (a bad address, a port in use, a refused connection) ends
the program with a one-line ``triosock: error: ...`` on stderr and a non-zero status,
never a traceback. SIGINT or SIGTERM stop a server gracefully, with status 0. Each
service's commands live in a module of their own with a ``register(services)``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

import trio

from .. import __version__
from .._errors import TriosockError
from . import chat, echo, http
from . import time as time_cli
from ._common import add_log_options
from ._parser import Parser

__all__ = ["build_parser", "main", "run_parsed"]

EXIT_ERROR = 1


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; ``prog`` is how the program calls itself in messages
    (by default the name it was run by: ``triosock`` for the console script)."""
    prog = prog or os.path.basename(sys.argv[0]) or "triosock"
    parser = Parser(
        prog=prog,
        description="Structured-concurrency network services on Trio.",
        epilog="HOST:PORT is an IPv4 address or a host name and a port (127.0.0.1:7070, "
        "localhost:7070), or [IPv6]:PORT ([::1]:7070). Each service's --help tells more.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"triosock {__version__} (trio {trio.__version__}, Python "
        f"{platform.python_version()})",
    )
    add_log_options(parser)
    parser.set_defaults(prog=prog)  # for the lines that tell users what to type
    services = parser.add_subparsers(dest="service", required=True, metavar="SERVICE")
    for module in (chat, echo, http, time_cli):
        module.register(services)
    return parser


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _user_error(exc: BaseException) -> str | None:
    """The one line to show for an error the user can cause, or None for a real bug."""
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, TriosockError):
            return str(leaf)
    for leaf in leaves:
        if isinstance(leaf, trio.BrokenResourceError | trio.ClosedResourceError):
            return f"connection lost: {leaf or type(leaf).__name__}"
    return None


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> NoReturn:
    parser = build_parser(prog)
    run_parsed(parser.parse_args(argv))


def run_parsed(args: argparse.Namespace) -> NoReturn:
    """Run a parsed command (here, or in a worker process) and exit with its status."""
    run: Callable[[argparse.Namespace], Awaitable[None]] = args.run
    try:
        trio.run(run, args)
    except BrokenPipeError:
        # Our output went into a pipe that was closed (``| head``): nobody reads more.
        # Point stdout at /dev/null so the exit's flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_ERROR)
    except BaseException as exc:
        # A second Ctrl-C while the graceful stop runs, or one in a client: it may come
        # out of a nursery, inside a group.
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in _leaves(exc)):
            sys.exit(130)
        if not isinstance(exc, Exception):
            raise
        message = _user_error(exc)
        if message is None:
            raise
        print(f"triosock: error: {message}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    sys.exit(0)
