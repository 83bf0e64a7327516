"""What the chat client's user types: stdin's lines through a pipe, or prompt_toolkit's
line editor in a terminal, made a cancellable trio operation.

prompt_toolkit runs on asyncio, so each prompt runs in a worker thread
(``trio.to_thread``) on an event loop of its own, while ``patch_stdout`` turns what the
trio thread prints into ``run_in_terminal`` calls on the prompt's loop: the prompt is
erased, the line printed, and the prompt drawn again with the text being typed. The
worker thread cannot be cancelled, so :class:`Prompter` makes a prompt a cancellable
trio operation: on cancellation it ends the prompt through ``Application.exit``, called
on the prompt's own loop, and waits for the thread. The terminal is thus back in its
normal mode before the client prints its last line.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import trio

from ._console import read_stdin_chunk
from ._join_screen import Screen

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.formatted_text import StyleAndTextTuples

__all__ = ["Prompter", "prompt_output", "stdin_lines"]


async def stdin_lines(send: trio.MemorySendChannel[bytes]) -> None:
    """Feed stdin's lines into ``send``; close it at EOF."""
    try:
        pending = b""
        while chunk := await read_stdin_chunk():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                await send.send(line.rstrip(b"\r"))
        if pending:
            await send.send(pending)
    finally:
        send.close()  # as in Prompter.lines


class _Stopped(Exception):
    """Ends a prompt that the client no longer wants (raised inside prompt_toolkit)."""


class _PromptCall:
    """One prompt in a worker thread, and a thread-safe way to end it early.

    :meth:`stop` may come before the prompt runs, while prompt_toolkit starts it, or
    while it runs: the flag is read under the lock by :meth:`run` before it starts and
    by ``pre_run`` once prompt_toolkit's loop runs (its future exists then), and a
    running prompt is ended on its own loop, which is the only place it may be touched.
    """

    def __init__(self, session: PromptSession[str]) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._stopped = False

    def run(self) -> str | None:
        """In the worker thread: the line typed, or None (Ctrl-C, Ctrl-D, stopped)."""
        with self._lock:
            if self._stopped:
                return None
        try:
            return self._session.prompt(pre_run=self._pre_run)
        except (EOFError, KeyboardInterrupt, _Stopped):
            return None
        except OSError:  # the terminal went away (SIGHUP follows): the user has left
            return None

    def stop(self) -> None:
        """From any thread: end the prompt soon (or keep it from starting)."""
        with self._lock:
            self._stopped = True
            app = self._session.app
            loop = app.loop
            if app.is_running and loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._exit)

    def _pre_run(self) -> None:
        with self._lock:
            if self._stopped:
                self._session.app.exit(exception=_Stopped())

    def _exit(self) -> None:
        app = self._session.app
        if app.future is not None and not app.future.done():
            app.exit(exception=_Stopped())


class Prompter:
    """prompt_toolkit's prompt, one line at a time, as a cancellable trio operation.

    Args:
      screen: whose ``nick`` the prompt shows.
      colour: a bold prompt.
    """

    def __init__(self, screen: Screen, *, colour: bool) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import InMemoryHistory
        from prompt_toolkit.styles import Style

        def message() -> StyleAndTextTuples:
            return [("class:prompt", f"{screen.nick}> " if screen.nick else "> ")]

        self._session: PromptSession[str] = PromptSession(
            message,
            history=InMemoryHistory(),
            # The server echoes each line said into the room: the prompt line goes, so
            # that the screen shows it once, as the room saw it.
            erase_when_done=True,
            style=Style.from_dict({"prompt": "bold" if colour else ""}),
            include_default_pygments_style=False,
        )

    async def read(self) -> str | None:
        """The next line typed; None when the user leaves (Ctrl-C, Ctrl-D)."""
        call = _PromptCall(self._session)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_when_cancelled, call)
            # Not abandoned on cancellation: _stop_when_cancelled ends the prompt, and
            # this waits for the thread, so the terminal is restored when it returns.
            typed = await trio.to_thread.run_sync(call.run)
            nursery.cancel_scope.cancel()
        return typed

    async def lines(self, send: trio.MemorySendChannel[bytes]) -> None:
        """Feed the lines typed into ``send``; close it when the user leaves."""
        # close(), not ``async with``: its aclose() is a checkpoint, where a cancellation
        # would replace whatever exception is on its way out.
        try:
            while (typed := await self.read()) is not None:
                for line in typed.splitlines():  # a paste may hold several
                    if line.strip():
                        await send.send(line.encode("utf-8", errors="replace"))
        finally:
            send.close()


async def _stop_when_cancelled(call: _PromptCall) -> None:
    try:
        await trio.sleep_forever()
    finally:
        call.stop()


@contextlib.contextmanager
def prompt_output() -> Iterator[Callable[[str], None]]:
    """``patch_stdout``, and how to write above the prompt while it holds."""
    from prompt_toolkit.patch_stdout import patch_stdout

    def write(text: str) -> None:
        sys.stdout.write(text)  # prompt_toolkit's proxy: it redraws the prompt after
        sys.stdout.flush()

    # raw: the proxy keeps our colours (the text in them is neutralised already).
    with patch_stdout(raw=True):
        yield write
