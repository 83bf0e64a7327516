"""``python -m triosock chat join HOST:PORT [--udp]``: the interactive chat client.

It has two faces. When stdin and stdout are both terminals it is a line editor:
prompt_toolkit's prompt, with the arrow keys, Home/End and the Emacs keys, history (Up,
Down, Ctrl-R), the nick as the prompt, and the room's lines printed above the prompt,
which keeps what is being typed intact. Otherwise it is a filter: stdin's lines go to
the room and the room's lines come out on stdout byte for byte as the server sent them,
so that scripts (and the tests) can drive it. Output to a terminal has the server's
text neutralised once more (a hostile server could send escape sequences) and, unless
``NO_COLOR`` is set, colour; ``--timestamps`` puts the time before each line.

The pieces: :mod:`._join_links` (TCP lines, the UDP dialect), :mod:`._join_screen` (what
the screen shows), :mod:`._join_prompt` (what the user types); here the session that
runs them, and the command.

How a session ends, and the exit status:

* The user leaves: ``/quit`` (over UDP ``quit`` too), Ctrl-D on an empty line, Ctrl-C,
  the end of stdin, or SIGINT, SIGTERM or SIGHUP (a terminal's Ctrl-C when the prompt is
  not reading, or ``kill``). The client says so to the server (``/quit``, or over UDP
  :data:`~triosock._sansio.chat.UDP_QUIT`), so that the room sees the leaving at once,
  shows the goodbye if it comes within :data:`GOODBYE_WAIT` seconds, and exits with 0.
  A second signal leaves without waiting.
* The server ends it (it stopped, was killed, disconnected us, an idle timeout): a last
  line on stderr says so, e.g. ``triosock: the server closed the connection``, and the
  status is :data:`EXIT_ENDED`.
* The server cannot be reached at all: the usual one-line ``triosock: error: ...`` and
  status 1 (raised as :class:`~triosock.ConnectError` to the CLI's runner).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, NoReturn, TypeVarTuple

import trio

from .._errors import ConnectError, TriosockError
from .._sansio.addresses import format_address
from .._transport.channel import FramedChannel
from .._transport.tcp import open_tcp_stream
from .._transport.udp import PeerUnreachableError, open_udp_channel
from ._join_links import Link, TCPLink, UDPLink
from ._join_prompt import Prompter, prompt_output, stdin_lines
from ._join_screen import Screen, colour_wanted
from ._parser import Parser
from ._run import Job
from ._values import Address, parse_hostport, positive

__all__ = ["EXIT_ENDED", "GOODBYE_WAIT", "HEARTBEAT_DEFAULT", "register"]

HEARTBEAT_DEFAULT = 5.0
#: Seconds to wait for the server's goodbye after saying quit (a lost datagram, or a
#: server that does not answer, must not keep a leaving user waiting).
GOODBYE_WAIT: Final = 2.0
#: The exit status when the session ended other than by the user's choice.
EXIT_ENDED: Final = 1

_LEAVE_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: What a dead or misbehaving connection raises.
_GONE: Final = (trio.BrokenResourceError, trio.ClosedResourceError, TriosockError)

Ts = TypeVarTuple("Ts")
UserInput = Callable[[trio.MemorySendChannel[bytes]], Awaitable[None]]


# -- a session -------------------------------------------------------------------------------


class _Session:
    """One visit to the chat, from connecting to leaving, and how it ended.

    Four tasks run in one nursery once connected: the server's lines to the screen, the
    link's keep-alive, the user's input (in a cancel scope of its own, which leaving
    cancels) and the forwarder of that input to the server. A transport error in any of
    them ends the session; so does the server ending it. The nursery's body waits for
    signals.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[Link]],
        where: str,
        nick: str | None,
        screen: Screen,
        user_input: UserInput,
    ) -> None:
        self._connect = connect
        self._where = where
        self._nick = nick
        self._screen = screen
        self._user_input = user_input
        self._user_scope = trio.CancelScope()
        self._link: Link | None = None
        self._heard = False
        self._cancel: Callable[[], None] = lambda: None
        #: The user chose to leave (then the exit status is 0 whatever follows).
        self.leaving = False
        #: Why the session ended when the user did not choose it.
        self.ended: str | None = None
        #: The server could not be reached at all.
        self.refused: ConnectError | None = None
        #: Nobody reads our output any more (``| head``): we left for that.
        self.unread = False

    async def run(self, signals: AsyncIterator[int]) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._cancel = nursery.cancel_scope.cancel
                nursery.start_soon(self._start, nursery)
                async for _ in signals:
                    if self.leaving or self._link is None:
                        break  # a second signal, or one before we are in: leave now
                    self._user_scope.cancel()  # the forwarder then says quit
                self.leaving = True
                nursery.cancel_scope.cancel()
        finally:
            if self._link is not None:
                with trio.CancelScope(shield=True):
                    await self._link.aclose()

    def finish(self) -> None:
        """Report how the session ended: raise for the CLI, or return (status 0)."""
        if self.refused is not None:
            raise self.refused
        if self.unread:
            # Nothing to say, and nobody to say it to; and the exit's flush of stdout
            # must not complain about the pipe again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(EXIT_ENDED)
        if self.ended is not None and not self.leaving:
            _say_last(self.ended)

    async def _start(self, nursery: trio.Nursery) -> None:
        try:
            link = await self._connect()
        except ConnectError as exc:
            self.refused = exc
            self._cancel()
            return
        self._link = link
        if link.nick:
            self._screen.nick = link.nick
        lines_in, lines_out = trio.open_memory_channel[bytes](0)
        nursery.start_soon(self._guarded, self._from_server, link)
        nursery.start_soon(self._guarded, self._hello, link)
        nursery.start_soon(self._read_user, lines_in)
        nursery.start_soon(self._guarded, self._forward, link, lines_out)

    async def _guarded(self, fn: Callable[[*Ts], Awaitable[object]], *args: *Ts) -> None:
        try:
            await fn(*args)
        except _GONE as exc:
            self._lost(exc)

    async def _hello(self, link: Link) -> None:
        await link.hello(self._nick)
        await link.keep_alive()

    async def _from_server(self, link: Link) -> None:
        while (line := await link.receive()) is not None:
            self._heard = True
            if self.unread:
                continue  # still read, to see the server close after our quit
            try:
                self._screen.show(line)
            except BrokenPipeError:
                self.unread = True
                self._user_scope.cancel()  # the forwarder says quit
        if self.ended is None:
            self.ended = link.closed
        self._cancel()

    async def _read_user(self, send: trio.MemorySendChannel[bytes]) -> None:
        with self._user_scope:
            await self._user_input(send)
        send.close()  # even if cancelled before it began: the forwarder sees the end

    async def _forward(self, link: Link, lines: trio.MemoryReceiveChannel[bytes]) -> None:
        async for line in lines:
            if link.is_quit(line):
                break
            await link.send(line)
        # The user leaves: say so, so that the room sees it now (not at an expiry).
        self.leaving = True
        self._user_scope.cancel()
        await link.send(link.quit)
        await trio.sleep(GOODBYE_WAIT)  # the goodbye normally ends the session first
        self._cancel()

    def _lost(self, exc: BaseException) -> None:
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, PeerUnreachableError) and not self._heard:
            # UDP learns of a refusal only now, from the ICMP answer to its hello.
            self.refused = ConnectError(f"cannot reach {self._where} (udp): connection refused")
        elif self.ended is None:
            if isinstance(exc, PeerUnreachableError):
                self.ended = f"the server is gone ({detail})"
            else:
                self.ended = f"lost the connection to the server ({detail})"
        self._cancel()


def _say_last(reason: str) -> NoReturn:
    with contextlib.suppress(OSError):  # a terminal that has gone away
        print(f"triosock: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_ENDED)


# -- the command -------------------------------------------------------------------------------


async def _chat_join(
    address: Address, udp: bool, nick: str | None, heartbeat: float, timestamps: bool
) -> None:
    """``chat join``: a session in the room at ``address`` (see the module notes)."""
    host, port = address

    async def connect() -> Link:
        if udp:
            return UDPLink(await open_udp_channel(host, port), heartbeat)
        return TCPLink(FramedChannel(await open_tcp_stream(host, port)))

    on_terminal = sys.stdout.isatty()
    colour = colour_wanted(on_terminal)
    with contextlib.ExitStack() as stack:
        screen = Screen(terminal=on_terminal, colour=colour, timestamps=timestamps)
        user_input: UserInput = stdin_lines
        if on_terminal and sys.stdin.isatty():
            # The session is made before stdout is patched: it finds the real terminal.
            user_input = Prompter(screen, colour=colour).lines
            screen.write = stack.enter_context(prompt_output())
        session = _Session(connect, format_address(address), nick, screen, user_input)
        with trio.open_signal_receiver(*_LEAVE_SIGNALS) as signals:
            await session.run(signals)
    # Here the prompt has ended and the terminal is itself again.
    session.finish()


def _job(args: argparse.Namespace) -> Job:
    options = (args.address, args.udp, args.nick, args.heartbeat, args.timestamps)
    return functools.partial(_chat_join, *options)


def register(chat: Parser) -> None:
    """``chat join``, a command of ``chat``."""
    join = chat.add_command(
        "join",
        help="the chat client: a line editor in a terminal, stdin lines in and room "
        "lines out otherwise",
        description="Join a chat room. In a terminal: a prompt with line editing and "
        "history; room lines appear above it. Ctrl-C, Ctrl-D or /quit leave (status 0); "
        "a session the server ends exits with status 1 and says why. Piped: stdin lines "
        "in, the server's lines out unchanged. NO_COLOR turns colour off.",
    )
    join.add_argument(
        "address",
        type=parse_hostport,
        metavar="HOST:PORT",
        help="the chat server's TCP port (its UDP port with --udp)",
    )
    join.add_argument("--udp", action="store_true", help="speak the UDP dialect (heartbeats, quit)")
    join.add_argument("--nick", help="the nick to take on arrival")
    join.add_argument(
        "--heartbeat",
        type=positive,
        default=HEARTBEAT_DEFAULT,
        metavar="SECONDS",
        help=f"UDP heartbeat interval; the server forgets a silent peer ({HEARTBEAT_DEFAULT:g})",
    )
    join.add_argument(
        "--timestamps",
        action="store_true",
        help="show the time (HH:MM:SS) before each line received",
    )
    join.set_defaults(job=_job)
