"""What a user of the command line sees and does at the terminal: the errors they can
cause, the lines a command prints, the log's format and level, the stop signals, and
stdin.

A mistake in the command line is a :class:`UsageError` (the command's one-line usage
error, status 2); anything a user can cause at run time is a
:class:`~triosock.TriosockError` such as :class:`CLIError` (``triosock: error: ...``,
status 1). Neither ever shows a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import Final, NoReturn

import trio

from .._errors import TriosockError

__all__ = [
    "EXIT_INTERRUPTED",
    "STOP_SIGNALS",
    "CLIError",
    "UsageError",
    "configure_logging",
    "exit_at_once",
    "log_level",
    "read_stdin_chunk",
    "say",
    "stop_at_second_signal",
]

#: What stops a server: Ctrl-C, ``kill``, and a closed terminal.
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: The status of a process a second Ctrl-C ended, as a shell reports a SIGINT death.
EXIT_INTERRUPTED: Final = 130


class CLIError(TriosockError):
    """A problem with what the user asked for, found at run time: one line, status 1."""


class UsageError(Exception):
    """The command line asks for something it cannot mean (such as serving nothing):
    the command's one-line usage error, status 2, as argparse's own."""


def say(text: str) -> None:
    """Print a line for the user (start-up lines, which scripts read), flushed at once."""
    print(text, flush=True)


#: -qq, -q, nothing, -v, -vv.
_LEVELS: Final = [logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG, 5]


def log_level(verbose: int, quiet: int) -> int:
    """The level that ``-v`` (``verbose`` times) and ``-q`` ask for (INFO for neither)."""
    return _LEVELS[max(0, min(len(_LEVELS) - 1, 2 + verbose - quiet))]


def configure_logging(level: int = logging.INFO, worker: int | None = None) -> None:
    """Log lines with the time, the level, ``[worker I]`` in a worker, and the logger's
    name. ``level`` applies to triosock's own loggers; the libraries under it
    (websockets, coredis, trio) log their warnings only, or everything at ``-vv``."""
    tag = f"[worker {worker}] " if worker is not None else ""
    logging.basicConfig(
        level=logging.WARNING if level > 5 else level,
        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s",
    )
    logging.getLogger("triosock").setLevel(level)


#: What must be undone even by an exit at once (a private directory on disk).
_AT_ONCE: list[Callable[[], object]] = []


def undo_at_exit_at_once(undo: Callable[[], object]) -> None:
    """Have :func:`exit_at_once` call ``undo()`` (it must not wait, nor raise)."""
    _AT_ONCE.append(undo)


def exit_at_once(status: int = EXIT_INTERRUPTED) -> NoReturn:
    """End the process now, whatever is still running: what was printed is flushed,
    nothing else waits (no graceful stop, no shielded cleanup; only what was given to
    :func:`undo_at_exit_at_once`)."""
    for undo in _AT_ONCE:
        with contextlib.suppress(Exception):
            undo()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or file: no matter
            stream.flush()
    os._exit(status)


async def stop_at_second_signal(
    signals: AsyncIterator[int], before: Callable[[], object] = lambda: None
) -> None:
    """Run while a graceful stop runs: a second stop signal ends the process at once
    with :data:`EXIT_INTERRUPTED` (after ``before()``, say to kill child processes).

    A graceful stop holds shielded cancel scopes (goodbyes, lingering writes) that no
    exception can cut short; a user who presses Ctrl-C twice wants out now.
    """
    async for _ in signals:
        before()
        exit_at_once()


async def read_stdin_chunk() -> bytes:
    """Up to 64 KiB of stdin (b"" at its end), read in a thread so trio keeps running.

    ``os.read`` rather than ``sys.stdin.buffer``: a client that exits while this thread
    still waits must not hold the buffered reader's lock at interpreter shutdown (Python
    aborts on that). The abandoned thread just dies with the process.
    """
    return await trio.to_thread.run_sync(os.read, 0, 65536, abandon_on_cancel=True)
