"""The command line: ``python -m triosock <service> <action> ...``.

One direction, from the words typed to the running program:

1. :func:`build_parser` registers each service's commands (``chat``, ``echo``, ``time``,
   ``http``: one module each; the options every serve command shares are registered
   once, in :mod:`._serve_settings`).
2. :func:`main` parses once. Each command's parser leaves a ``job`` maker: it turns the
   parsed options into the command's frozen settings record (a serve command's is the
   whole of what it was asked for) and returns the job that runs it.
3. :func:`~._run.run_job` runs the job and exits with its status. A serve job
   (:func:`~._serving.run_serve`) builds its service from the record and serves, or
   supervises ``--workers`` processes (:mod:`._supervisor`) that each get the record.

Every error a user can cause (a bad address, a port in use, a refused connection) ends
the program with a one-line error on stderr and a non-zero status, never a traceback: a
mistake in the command line is the command's usage error and status 2; what goes wrong
at run time is ``triosock: error: ...`` and status 1. SIGINT or SIGTERM stop a server
gracefully, with status 0; a second one during that stop ends it at once, with 130.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from typing import NoReturn

import trio

from .. import __version__
from .._errors import TriosockError
from . import _chat_options, echo, http
from . import time as time_cli
from ._console import UsageError
from ._parser import Parser
from ._run import EXIT_ERROR, Job, run_job
from ._serve_settings import add_log_options

__all__ = ["build_parser", "main"]


def build_parser(prog: str | None = None) -> Parser:
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
    parser.add_commands(leaf=False, metavar="SERVICE")
    for module in (_chat_options, echo, http, time_cli):
        module.register(parser)
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> NoReturn:
    """Parse the command line, run the command, and exit with its status."""
    args = build_parser(prog).parse_args(argv)
    try:
        job: Job = args.job(args)
    except UsageError as exc:
        usage: Parser = args.usage_parser
        usage.error(str(exc))
    except TriosockError as exc:
        print(f"triosock: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    run_job(job)
