"""Running one command to its end, and the process's exit status.

Every command, once parsed, is a job: an async function of no arguments run by
``trio.run``. Its end is the exit status: 0 when it returns; 1 with the one line
``triosock: error: ...`` for an error a user can cause (any
:class:`~triosock.TriosockError`, or a connection that broke); 130 for a Ctrl-C that
reached it as ``KeyboardInterrupt``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from typing import Final, NoReturn

import trio

from .._errors import TriosockError
from ._console import EXIT_INTERRUPTED

__all__ = ["EXIT_ERROR", "Job", "run_job"]

#: The exit status of an error the user can cause (a usage error is argparse's 2).
EXIT_ERROR: Final = 1

Job = Callable[[], Awaitable[None]]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def user_error(exc: BaseException) -> str | None:
    """The one line to show for an error the user can cause, or None for a real bug."""
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, TriosockError):
            return str(leaf)
    for leaf in leaves:
        if isinstance(leaf, trio.BrokenResourceError | trio.ClosedResourceError):
            return f"connection lost: {leaf or type(leaf).__name__}"
    return None


def run_job(job: Job) -> NoReturn:
    """Run ``job`` (here, or in a worker process) and exit with its status."""
    try:
        trio.run(job)
    except BrokenPipeError:
        # Our output went into a pipe that was closed (``| head``): nobody reads more.
        # Point stdout at /dev/null so the exit's flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_ERROR)
    except BaseException as exc:
        # A Ctrl-C in a client: it may come out of a nursery, inside a group.
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in _leaves(exc)):
            sys.exit(EXIT_INTERRUPTED)
        if not isinstance(exc, Exception):
            raise
        message = user_error(exc)
        if message is None:
            raise
        print(f"triosock: error: {message}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
    sys.exit(0)
