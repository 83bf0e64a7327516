"""``python -m triosock chat join HOST:PORT [HOST:PORT ...] [--udp]``: the chat client.

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
* The TCP connection is lost without the user leaving (the server closed it, stopped,
  was killed, or dropped us for not reading; a reset): a line on stderr says so
  (``triosock: connection lost (...); reconnecting in 1.3 s``), and after a wait (see
  :func:`~._join_resume.backoff`: up to 0.5 s, doubling, at most 10 s, at random) the
  client connects again: first to the server it was on, then to the next address in
  turn, each failure a line. On the new connection it resumes after the last ids it
  showed (see :mod:`._join_resume`), says ``reconnected to HOST:PORT`` and whether the
  session was resumed; a refused resume goes on as a new session, the user's
  ``--nick`` asked for again. ``--reconnect-for`` seconds (120) after the loss without
  getting in, it gives up: the reason, ``; gave up reconnecting after 120 s``, and
  :data:`EXIT_ENDED`. ``--no-reconnect``, or UDP, keeps one connection.
* The server ends it for good (the session went on on another connection, an idle
  timeout, a refusal), or it ends with ``--no-reconnect``: a last line on stderr says
  so, e.g. ``triosock: the server closed the connection``, and the status is
  :data:`EXIT_ENDED`.
* The server cannot be reached at all: the usual one-line ``triosock: error: ...`` and
  status 1 (raised as :class:`~triosock.ConnectError` to the CLI's runner). A TLS
  server (``--tls``) whose certificate does not check out is one of those:
  ``triosock: error: TLS handshake with 127.0.0.1:7070 failed: certificate verify
  failed: self-signed certificate``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import getpass
import math
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, NoReturn, TypeVarTuple

import trio

from .._errors import ConnectError, TriosockError
from .._sansio.addresses import format_address
from .._transport.channel import FramedChannel
from .._transport.udp import PeerUnreachableError, open_udp_channel
from ._console import UsageError
from ._join_links import Link, TCPLink, UDPLink
from ._join_prompt import Prompter, prompt_output, stdin_lines
from ._join_resume import (
    DEFAULT_RECONNECT_FOR,
    FIRST_DELAY,
    MAX_DELAY,
    Resumer,
    arrival_line,
    backoff,
)
from ._join_screen import Screen, colour_wanted
from ._parser import Parser
from ._run import Job
from ._tls import add_tls_client_options, client_context, open_client_stream
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

    Once connected, three tasks run in one nursery for the whole session: the visits
    (connections) one after another, the user's input (in a cancel scope of its own,
    which leaving cancels) and the forwarder of that input to the server. A visit runs
    the server's lines to the screen and the link's keep-alive, in a nursery of its
    own; a transport error in any of them, or the server ending it, ends the visit. A
    client that reconnects (``reconnect``) then waits and connects again (see
    :meth:`_come_back`); otherwise the session ends. The nursery's body waits for
    signals.

    Args:
      connect: connects to the n-th address (``ConnectError`` when it cannot).
      where: the addresses, as shown.
      reconnect: seconds to keep trying after a lost connection; None: never.
    """

    def __init__(
        self,
        connect: Callable[[int], Awaitable[Link]],
        where: list[str],
        arrival: bytes | None,
        screen: Screen,
        user_input: UserInput,
        reconnect: float | None = None,
    ) -> None:
        self._connect = connect
        self._where = where
        self._arrival = arrival
        self._screen = screen
        self._user_input = user_input
        self._reconnect = reconnect
        self._user_scope = trio.CancelScope()
        self._visit_scope = trio.CancelScope()
        self._link: Link | None = None  # the connection up now
        self._up = trio.Event()  # set while _link is
        self._why: str | None = None  # why the current visit ended
        self._heard = False
        self._cancel: Callable[[], None] = lambda: None
        self._is_quit: Callable[[bytes], bool] = lambda line: False
        self._quit = b""
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
                nursery.start_soon(self._visits, nursery)
                async for _ in signals:
                    if self.leaving or self._link is None:
                        break  # a second signal, or none connected: leave now
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

    async def _visits(self, nursery: trio.Nursery) -> None:
        """Connect (to the first address that answers), then visit, and come back
        after each lost connection while the client reconnects."""
        index, first_error = 0, None
        for index in range(len(self._where)):
            try:
                link = await self._connect(index)
                break
            except ConnectError as exc:
                first_error = first_error or exc
        else:
            self.refused = first_error
            self._cancel()
            return
        self._is_quit, self._quit = link.is_quit, link.quit
        lines_in, lines_out = trio.open_memory_channel[bytes](0)
        nursery.start_soon(self._read_user, lines_in)
        nursery.start_soon(self._forward, lines_out)
        attempt, deadline = 0, math.inf
        while True:
            why = await self._visit(link)
            if self.leaving or self._reconnect is None or link.final:
                self.ended = self.ended or why
                self._cancel()
                return
            if link.welcomed or deadline == math.inf:  # it got in: a fresh start
                attempt, deadline = 0, trio.current_time() + self._reconnect
            back = await self._come_back(why, index, attempt, deadline)
            if back is None:
                self.ended = f"{why}; gave up reconnecting after {self._reconnect:g} s"
                self._cancel()
                return
            link, index, attempt = back

    async def _come_back(
        self, why: str, index: int, attempt: int, deadline: float
    ) -> tuple[Link, int, int] | None:
        """Wait (see :func:`~._join_resume.backoff`) and connect again: first to the
        server it was on (a resume works there), then to the next address in turn;
        None once ``deadline`` comes. The link, its address's index and the attempt."""
        reason = f"connection lost ({why})"
        while True:
            delay = backoff(attempt)
            if trio.current_time() + delay >= deadline:
                return None
            _say(f"{reason}; reconnecting in {delay:.1f} s")
            await trio.sleep(delay)
            where = (index + attempt) % len(self._where)
            attempt += 1
            with trio.move_on_at(deadline):
                try:
                    link = await self._connect(where)
                except ConnectError as exc:
                    reason = str(exc)
                    continue
                _say(f"reconnected to {self._where[where]}")
                return link, where, attempt
            return None

    async def _visit(self, link: Link) -> str:
        """One connection, until it ends; why it ended."""
        self._link, self._why = link, None
        self._up.set()
        try:
            with trio.CancelScope() as self._visit_scope:
                async with trio.open_nursery() as visit:
                    visit.start_soon(self._guarded, link, self._hello, link)
                    visit.start_soon(self._guarded, link, self._from_server, link)
        finally:
            self._gone(link)
            with trio.CancelScope(shield=True):
                await link.aclose()
        return self._why or link.closed

    def _gone(self, link: Link) -> None:
        """``link`` is over: nothing more is sent on it, and its visit ends."""
        if self._link is link:
            self._link = None
            self._up = trio.Event()
            self._visit_scope.cancel()

    async def _guarded(
        self, link: Link, fn: Callable[[*Ts], Awaitable[object]], *args: *Ts
    ) -> None:
        try:
            await fn(*args)
        except _GONE as exc:
            self._lost(link, exc)

    async def _hello(self, link: Link) -> None:
        await link.hello(self._arrival)
        await link.keep_alive()

    async def _from_server(self, link: Link) -> None:
        if link.nick:
            self._screen.nick = link.nick
        while (line := await link.receive()) is not None:
            self._heard = True
            if self.unread:
                continue  # still read, to see the server close after our quit
            try:
                self._screen.show(line)
            except BrokenPipeError:
                self.unread = True
                self._user_scope.cancel()  # the forwarder says quit
        self._gone(link)

    async def _read_user(self, send: trio.MemorySendChannel[bytes]) -> None:
        with self._user_scope:
            await self._user_input(send)
        send.close()  # even if cancelled before it began: the forwarder sees the end

    async def _forward(self, lines: trio.MemoryReceiveChannel[bytes]) -> None:
        async for line in lines:
            if self._is_quit(line):
                break
            while True:  # a line whose sending failed goes on the next connection
                while (link := self._link) is None:
                    await self._up.wait()
                try:
                    await link.send(line)
                    break
                except _GONE as exc:
                    self._lost(link, exc)
        # The user leaves: say so, so that the room sees it now (not at an expiry).
        self.leaving = True
        self._user_scope.cancel()
        if (link := self._link) is not None:
            with contextlib.suppress(*_GONE):
                await link.send(self._quit)
                await trio.sleep(GOODBYE_WAIT)  # the goodbye normally ends the session first
        self._cancel()

    def _lost(self, link: Link, exc: BaseException) -> None:
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, PeerUnreachableError) and not self._heard:
            # UDP learns of a refusal only now, from the ICMP answer to its hello.
            where = self._where[0]
            self.refused = ConnectError(f"cannot reach {where} (udp): connection refused")
            self._cancel()
        elif self._why is None and self._link is link:
            if isinstance(exc, PeerUnreachableError):
                self._why = f"the server is gone ({detail})"
            else:
                self._why = f"lost the connection to the server ({detail})"
        self._gone(link)


def _say(text: str) -> None:
    """A line of the client's own on stderr."""
    with contextlib.suppress(OSError):
        print(f"triosock: {text}", file=sys.stderr, flush=True)


def _say_last(reason: str) -> NoReturn:
    with contextlib.suppress(OSError):  # a terminal that has gone away
        print(f"triosock: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_ENDED)


# -- the command -------------------------------------------------------------------------------


async def _chat_join(
    addresses: list[Address],
    udp: bool,
    nick: str | None,
    heartbeat: float,
    timestamps: bool,
    reconnect: float | None,
    password: str | None = None,
    context: ssl.SSLContext | None = None,
) -> None:
    """``chat join``: a session in the room at ``addresses`` (see the module notes);
    with ``context``, over TLS."""
    reconnect = None if udp else reconnect
    resumer = Resumer(nick, _say, password) if reconnect is not None else None

    async def connect(index: int) -> Link:
        host, port = addresses[index]
        if udp:
            return UDPLink(await open_udp_channel(host, port), heartbeat)
        return TCPLink(FramedChannel(await open_client_stream(host, port, context)), resumer)

    on_terminal = sys.stdout.isatty()
    colour = colour_wanted(on_terminal)
    with contextlib.ExitStack() as stack:
        screen = Screen(terminal=on_terminal, colour=colour, timestamps=timestamps)
        user_input: UserInput = stdin_lines
        if on_terminal and sys.stdin.isatty():
            # The session is made before stdout is patched: it finds the real terminal.
            user_input = Prompter(screen, colour=colour).lines
            screen.write = stack.enter_context(prompt_output())
        where = [format_address(address) for address in addresses]
        arrival = arrival_line(nick, password)
        session = _Session(connect, where, arrival, screen, user_input, reconnect)
        with trio.open_signal_receiver(*_LEAVE_SIGNALS) as signals:
            await session.run(signals)
    # Here the prompt has ended and the terminal is itself again.
    session.finish()


def _job(args: argparse.Namespace) -> Job:
    if args.udp and len(args.address) > 1:
        raise UsageError("chat join --udp takes one HOST:PORT")
    if args.ca is not None and not args.tls:
        raise UsageError("--ca is for --tls: give both")
    if args.tls and args.udp:
        raise UsageError("--tls is for TCP: the UDP dialect has no TLS")
    reconnect = None if args.no_reconnect else args.reconnect_for
    password = _password(args)
    options = (args.address, args.udp, args.nick, args.heartbeat, args.timestamps, reconnect)
    context = client_context(args.ca) if args.tls else None
    return functools.partial(_chat_join, *options, password, context)


def _password(args: argparse.Namespace) -> str | None:
    """The password to log in with (``--login``: asked on the terminal without echo;
    ``--password-file``: its first line), or None."""
    if not (args.login or args.password_file):
        return None
    if not args.nick:
        raise UsageError("--login and --password-file log in as --nick NAME: give it")
    if args.password_file is not None:
        try:
            with open(args.password_file, encoding="utf-8") as file:
                password = file.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the password file: {exc}") from None
    else:
        try:
            password = getpass.getpass(f"password for {args.nick}: ")
        except (EOFError, KeyboardInterrupt):
            raise UsageError("no password given") from None
    if not password:
        raise UsageError("the password is empty")
    return password


def register(chat: Parser) -> None:
    """``chat join``, a command of ``chat``."""
    join = chat.add_command(
        "join",
        help="the chat client: a line editor in a terminal, stdin lines in and room "
        "lines out otherwise",
        description="Join a chat room. In a terminal: a prompt with line editing and "
        "history; room lines appear above it. Ctrl-C, Ctrl-D or /quit leave (status 0). "
        "A lost TCP connection is made again by itself (the next address in turn) and the "
        "session resumed, each line shown once; a session that ends otherwise exits with "
        "status 1 and says why. Piped: stdin lines in, the server's lines out unchanged. "
        "NO_COLOR turns colour off.",
    )
    join.add_argument(
        "address",
        type=parse_hostport,
        nargs="+",
        metavar="HOST:PORT",
        help="the chat server's TCP port (its UDP port with --udp); more than one: servers "
        "sharing rooms, tried in turn when a connection is lost",
    )
    join.add_argument("--udp", action="store_true", help="speak the UDP dialect (heartbeats, quit)")
    add_tls_client_options(join)
    join.add_argument("--nick", help="the nick to take on arrival")
    join.add_argument(
        "--login",
        action="store_true",
        help="log in as --nick (a registered nick): the password is asked without echo",
    )
    join.add_argument(
        "--password-file",
        metavar="FILE",
        help="log in as --nick with the password on the first line of FILE",
    )
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
    join.add_argument(
        "--reconnect-for",
        type=positive,
        default=DEFAULT_RECONNECT_FOR,
        metavar="SECONDS",
        help="after a lost TCP connection, keep trying this long (waits of up to "
        f"{FIRST_DELAY:g} s, doubling, at most {MAX_DELAY:g} s, at random) "
        f"({DEFAULT_RECONNECT_FOR:g}: the server's default resume window)",
    )
    join.add_argument(
        "--no-reconnect",
        action="store_true",
        help="end when the connection is lost (no tags, no resume)",
    )
    join.set_defaults(job=_job)
