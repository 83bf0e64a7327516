"""``python -m triosock chat join HOST:PORT [--udp]``: the interactive chat client.

It has two faces. When stdin and stdout are both terminals it is a line editor:
prompt_toolkit's prompt, with the arrow keys, Home/End and the Emacs keys, history (Up,
Down, Ctrl-R), the nick as the prompt, and the room's lines printed above the prompt,
which keeps what is being typed intact. Otherwise it is a filter: stdin's lines go to
the room and the room's lines come out on stdout byte for byte as the server sent them,
so that scripts (and the tests) can drive it. Output to a terminal has the server's
text neutralised once more (a hostile server could send escape sequences) and, unless
``NO_COLOR`` is set, colour; ``--timestamps`` puts the time before each line.

prompt_toolkit and trio in one process: prompt_toolkit runs on asyncio, so each prompt
runs in a worker thread (``trio.to_thread``) on an event loop of its own, while
``patch_stdout`` turns what the trio thread prints into ``run_in_terminal`` calls on the
prompt's loop: the prompt is erased, the line printed, and the prompt drawn again with
the text being typed. The worker thread cannot be cancelled, so :class:`_Prompter` makes
a prompt a cancellable trio operation: on cancellation it ends the prompt through
``Application.exit``, called on the prompt's own loop, and waits for the thread. The
terminal is thus back in its normal mode before the client prints its last line.

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
import os
import re
import signal
import sys
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Final, NoReturn, Protocol, TypeVarTuple

import trio

from .._errors import ConnectError, TriosockError
from .._liveness import send_heartbeats
from .._sansio import chat as proto
from .._sansio.addresses import format_address
from .._transport.channel import FramedChannel
from .._transport.tcp import open_tcp_stream
from .._transport.udp import PeerUnreachableError, UDPChannel, open_udp_channel
from ._common import parse_hostport, positive, read_stdin_chunk

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.formatted_text import StyleAndTextTuples

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


# -- the two ways of talking to the server -----------------------------------------------


class _Link(Protocol):
    """A connection to the chat server, over TCP lines or the UDP dialect."""

    #: The line that asks the server to end the session.
    quit: bytes
    #: Why the session ended when the server ended it.
    closed: str
    #: The user's nick as far as the client knows before the server says it ("": unknown).
    nick: str

    async def hello(self, nick: str | None) -> None:
        """Announce the client (and take ``nick``)."""

    async def send(self, line: bytes) -> None:
        """Say ``line`` (a message or a command)."""

    def is_quit(self, line: bytes) -> bool:
        """Whether the user's ``line`` asks to leave."""

    async def receive(self) -> bytes | None:
        """The server's next line, or None once the server has ended the session."""

    async def keep_alive(self) -> None:
        """Run for the session: whatever keeps it alive."""

    async def aclose(self) -> None: ...


class _TCPLink:
    quit = b"/quit"
    closed = "the server closed the connection"
    nick = ""

    def __init__(self, chan: FramedChannel) -> None:
        self._chan = chan

    async def hello(self, nick: str | None) -> None:
        if nick:
            await self._chan.send(b"/nick " + os.fsencode(nick))
        else:
            await trio.lowlevel.checkpoint()

    async def send(self, line: bytes) -> None:
        await self._chan.send(line)

    def is_quit(self, line: bytes) -> bool:
        return proto.parse_line_untrusted(line) == proto.Quit()

    async def receive(self) -> bytes | None:
        try:
            return await self._chan.receive()
        except trio.EndOfChannel:
            return None

    async def keep_alive(self) -> None:
        await trio.lowlevel.checkpoint()  # TCP needs nothing

    async def aclose(self) -> None:
        await self._chan.aclose()


class _UDPLink:
    quit = proto.UDP_QUIT
    closed = "the server closed the session"

    def __init__(self, chan: UDPChannel, heartbeat: float) -> None:
        self._chan = chan
        self._heartbeat = heartbeat
        self._over = False
        # The server names a UDP peer by its address (right unless a NAT is in between).
        self.nick = format_address(chan.socket.getsockname())

    async def hello(self, nick: str | None) -> None:
        await self._chan.send(proto.HEARTBEAT)  # the server learns our address
        if nick:
            await self._chan.send(b"/nick " + os.fsencode(nick))

    async def send(self, line: bytes) -> None:
        if line.strip():  # an empty datagram says nothing
            await self._chan.send(line)

    def is_quit(self, line: bytes) -> bool:
        if isinstance(proto.classify_datagram_untrusted(line), proto.UdpQuit):
            return True
        return proto.parse_line_untrusted(line) == proto.Quit()

    async def receive(self) -> bytes | None:
        if self._over:
            return None
        datagram = (await self._chan.receive()).rstrip(b"\n")
        self._over = datagram == proto.BYE  # the server's last word, asked for or not
        return datagram

    async def keep_alive(self) -> None:
        await send_heartbeats(lambda: self._chan.send(proto.HEARTBEAT), self._heartbeat)

    async def aclose(self) -> None:
        await self._chan.aclose()


# -- what the screen shows -----------------------------------------------------------------

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_NOTICE = "\x1b[33m"  # yellow
_DIRECT = "\x1b[1;35m"  # bold magenta
#: Each nick gets one of these, by a hash of its name, as in irssi or weechat.
_NICK_COLOURS: Final = tuple(f"\x1b[{code}m" for code in (31, 32, 36, 35, 91, 92, 94, 95, 96))

# The server's lines (see render_line in _sansio/chat/_events.py and the UDP dialect).
_ACTION = re.compile(r"(\[#\S+\]) \* (\S+)( .*)?")
_MESSAGE = re.compile(r"(\[#\S+\]) (\S+?): (.*)")
_RENAMED = re.compile(r"\* (\S+) is now known as (\S+)")
_PRESENCE = re.compile(r"\* (\S+) (joined|left) (\S+)")
_DIRECT_LINE = re.compile(r"(\[dm (?:from \S+|to \S+|\S+ -> \S+)\]) (.*)")
_UDP_SAID = re.compile(r"(\[\S+\]) (.*)")  # a UDP peer's message: [ip:port] text
_WELCOME = re.compile(r"-!- welcome to triosock chat, ([^\s;]+);.*")


def colour_wanted(stream_is_terminal: bool) -> bool:
    """Colour for a terminal, unless ``NO_COLOR`` is set (https://no-color.org: any
    non-empty value) or the terminal is ``dumb``."""
    if not stream_is_terminal or os.environ.get("NO_COLOR"):
        return False
    return os.environ.get("TERM", "") != "dumb"


def _nick_colour(nick: str, me: str) -> str:
    colour = _NICK_COLOURS[zlib.crc32(proto.nick_key(nick).encode()) % len(_NICK_COLOURS)]
    mine = bool(me) and proto.nick_key(nick) == proto.nick_key(me)
    return f"{_BOLD if mine else ''}{colour}{nick}{_RESET}"


def paint(text: str, me: str = "") -> str:
    """A line from the server with colour: notices, nicks, rooms, direct messages.

    Args:
      text: one neutralised line, as the server renders it.
      me: the user's own nick, shown in bold.
    """
    if text.startswith("-!- ") or text == proto.BYE.decode():
        return f"{_NOTICE}{text}{_RESET}"
    if match := _ACTION.fullmatch(text):
        room, nick, rest = match[1], match[2], match[3] or ""
        return f"{_DIM}{room}{_RESET} * {_nick_colour(nick, me)}{rest}"
    if match := _MESSAGE.fullmatch(text):
        return f"{_DIM}{match[1]}{_RESET} {_nick_colour(match[2], me)}: {match[3]}"
    if match := _RENAMED.fullmatch(text):
        old, new = _nick_colour(match[1], me), _nick_colour(match[2], me)
        return f"{_DIM}*{_RESET} {old}{_DIM} is now known as{_RESET} {new}"
    if match := _PRESENCE.fullmatch(text):
        who, verb, room = _nick_colour(match[1], me), match[2], match[3]
        return f"{_DIM}*{_RESET} {who}{_DIM} {verb} {room}{_RESET}"
    if match := _DIRECT_LINE.fullmatch(text):
        return f"{_DIRECT}{match[1]}{_RESET} {match[2]}"
    if match := _UDP_SAID.fullmatch(text):
        return f"[{_nick_colour(match[1][1:-1], me)}] {match[2]}"
    return text


class _Screen:
    """Where the room's lines go, and how they look.

    Args:
      terminal: stdout is a terminal: lines are neutralised, split at line breaks, and
        written as text through ``write``. Otherwise the bytes go to stdout unchanged.
      colour: paint the lines (only with ``terminal``).
      timestamps: put ``HH:MM:SS`` before each line.

    Attributes:
      nick: the user's nick once known (from the welcome and renames): the prompt's.
      write: how text reaches the terminal; UTF-8 to stdout unless the prompt runs, when
        it goes through prompt_toolkit's proxy.
    """

    def __init__(self, *, terminal: bool, colour: bool, timestamps: bool) -> None:
        self.nick = ""
        self.write: Callable[[str], None] = _write_stdout
        self._terminal = terminal
        self._colour = colour and terminal
        self._timestamps = timestamps

    def show(self, line: bytes) -> None:
        if not self._terminal:
            when = time.strftime("%H:%M:%S ").encode() if self._timestamps else b""
            sys.stdout.buffer.write(when + line + b"\n")
            sys.stdout.flush()
            return
        shown = []
        for part in line.split(b"\n"):
            text = proto.neutralise(part.decode("utf-8", errors="replace"))
            self._follow_nick(text)
            if self._colour:
                text = paint(text, self.nick)
            if self._timestamps:
                stamp = time.strftime("%H:%M:%S")
                text = f"{_DIM}{stamp}{_RESET} {text}" if self._colour else f"{stamp} {text}"
            shown.append(text + "\n")
        self.write("".join(shown))

    def _follow_nick(self, text: str) -> None:
        if match := _WELCOME.fullmatch(text):
            self.nick = match[1]
        elif (match := _RENAMED.fullmatch(text)) and proto.nick_key(match[1]) == proto.nick_key(
            self.nick
        ):
            self.nick = match[2]


def _write_stdout(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8", errors="replace"))
    sys.stdout.flush()


# -- what the user types -------------------------------------------------------------------


async def _stdin_lines(send: trio.MemorySendChannel[bytes]) -> None:
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
        send.close()  # as in _Prompter.lines


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


class _Prompter:
    """prompt_toolkit's prompt, one line at a time, as a cancellable trio operation.

    Args:
      screen: whose ``nick`` the prompt shows.
      colour: a bold prompt.
    """

    def __init__(self, screen: _Screen, *, colour: bool) -> None:
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
def _prompt_output() -> Iterator[Callable[[str], None]]:
    """``patch_stdout``, and how to write above the prompt while it holds."""
    from prompt_toolkit.patch_stdout import patch_stdout

    def write(text: str) -> None:
        sys.stdout.write(text)  # prompt_toolkit's proxy: it redraws the prompt after
        sys.stdout.flush()

    # raw: the proxy keeps our colours (the text in them is neutralised already).
    with patch_stdout(raw=True):
        yield write


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
        connect: Callable[[], Awaitable[_Link]],
        where: str,
        nick: str | None,
        screen: _Screen,
        user_input: UserInput,
    ) -> None:
        self._connect = connect
        self._where = where
        self._nick = nick
        self._screen = screen
        self._user_input = user_input
        self._user_scope = trio.CancelScope()
        self._link: _Link | None = None
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

    async def _hello(self, link: _Link) -> None:
        await link.hello(self._nick)
        await link.keep_alive()

    async def _from_server(self, link: _Link) -> None:
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

    async def _forward(self, link: _Link, lines: trio.MemoryReceiveChannel[bytes]) -> None:
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


async def _chat_join(args: argparse.Namespace) -> None:
    host, port = args.address

    async def connect() -> _Link:
        if args.udp:
            return _UDPLink(await open_udp_channel(host, port), args.heartbeat)
        return _TCPLink(FramedChannel(await open_tcp_stream(host, port)))

    on_terminal = sys.stdout.isatty()
    colour = colour_wanted(on_terminal)
    with contextlib.ExitStack() as stack:
        screen = _Screen(terminal=on_terminal, colour=colour, timestamps=args.timestamps)
        user_input: UserInput = _stdin_lines
        if on_terminal and sys.stdin.isatty():
            # The session is made before stdout is patched: it finds the real terminal.
            user_input = _Prompter(screen, colour=colour).lines
            screen.write = stack.enter_context(_prompt_output())
        session = _Session(connect, format_address(args.address), args.nick, screen, user_input)
        with trio.open_signal_receiver(*_LEAVE_SIGNALS) as signals:
            await session.run(signals)
    # Here the prompt has ended and the terminal is itself again.
    session.finish()


def register(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    join = actions.add_parser(
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
    join.set_defaults(run=_chat_join)
