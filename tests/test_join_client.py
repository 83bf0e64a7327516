"""``python -m triosock chat join``: the chat client, in a terminal and through pipes.

In a pseudo-terminal the client is a prompt_toolkit line editor; through pipes it is a
filter whose output stays the server's plain bytes. Each test runs a real chat server
(``chat serve`` as a subprocess, on loopback port 0) and watches it with a plain TCP
socket in the room, the way a second user would; where it matters, the server's log says
how a user left: ``left (quit)`` when the client said so, at once, rather than at an
expiry or an EOF.

prompt_toolkit asks the terminal for the cursor position (CPR) and, on a pty that never
answers, waits and then prints a warning; ``PROMPT_TOOLKIT_NO_CPR=1`` tells it not to
ask. A real terminal answers.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio

from triosock._cli._join_screen import colour_wanted, paint

from .chattools import TOKEN_NOTICE, LineSocket, without_token
from .clitools import PYTHON, LineProcess, ServerProcess, cli_server, run
from .conftest import GUARD
from .ptytools import Terminal, open_terminal, visible_lines

JOIN = [PYTHON, "-m", "triosock", "chat", "join"]
ESC = b"\x1b"
LEFT, UP = b"\x1b[D", b"\x1b[A"
CTRL_C, CTRL_D = b"\x03", b"\x04"
TRACEBACK = (b"Traceback", b"KeyboardInterrupt", b"ExceptionGroup")


class ChatServerProcess:
    """``chat serve`` on free loopback ports, with its log (stderr) read on demand."""

    def __init__(self, server: ServerProcess) -> None:
        self.process = server.process
        self.tcp = server.port("chat (tcp)")
        self.udp = server.port("chat (udp)")
        self.log = b""

    def port(self, transport: str) -> int:
        return self.udp if transport == "udp" else self.tcp

    async def left(self, nick: str) -> bytes:
        """Why the log says ``nick`` left: ``quit`` when the client said so."""
        return (await self.logged(re.escape(nick.encode()) + rb" left \((.*?)\)"))[1]

    async def logged(self, pattern: bytes) -> re.Match[bytes]:
        """Read the log until ``pattern`` (a regex) matches it."""
        assert self.process.stderr is not None
        while (match := re.search(pattern, self.log)) is None:
            chunk = await self.process.stderr.receive_some()
            if not chunk:
                raise AssertionError(f"log ended before {pattern!r}: {self.log!r}")
            self.log += chunk
        return match


@asynccontextmanager
async def chat_server(*options: str) -> AsyncIterator[ChatServerProcess]:
    # No status port either: it would take a fixed one, 127.0.0.1:7079.
    args = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--web", "none"]
    args += ["--status", "none"]
    async with cli_server([*args, *options], ready_lines=2) as server:
        yield ChatServerProcess(server)


@asynccontextmanager
async def observer(server: ChatServerProcess) -> AsyncIterator[LineSocket]:
    """A plain TCP user in the room, named bob."""
    sock = await LineSocket.connect(server.tcp)
    try:
        await sock.send(b"/nick bob\n")
        await sock.read_until(b"is now known as bob")
        yield sock
    finally:
        sock.close()


def terminal_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "NO_COLOR"}
    env.update(TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1", **extra)
    return env


def join_args(server: ChatServerProcess, transport: str, *options: str) -> list[str]:
    udp = ["--udp"] if transport == "udp" else []
    return [*JOIN, f"127.0.0.1:{server.port(transport)}", *udp, *options]


@asynccontextmanager
async def joined_terminal(
    server: ChatServerProcess,
    transport: str = "tcp",
    *options: str,
    typing: bool = True,
    **env: str,
) -> AsyncIterator[Terminal]:
    """The client in a pty as ann, its prompt up (``typing``: ready for keys)."""
    args = join_args(server, transport, "--nick", "ann", *options)
    async with open_terminal(args, env=terminal_env(**env)) as term:
        # The prompt may show the nick before the line that tells it is printed; wait
        # for the prompt drawn again after that line. prompt_toolkit prints in cooked
        # mode, where a key typed meanwhile is the terminal's (a Ctrl-D its EOF).
        await term.expect(b"known as")
        if typing:
            await term.expect(b"ann>")
        yield term


def last_line_of(term: Terminal) -> bytes:
    """The last line of text the screen shows."""
    return [line for line in visible_lines(term.output) if line.strip()][-1].strip()


async def say(term: Terminal, keys: bytes, bob: LineSocket, seen: bytes) -> None:
    """Type ``keys`` (ending in Enter); bob sees ann say ``seen``; the prompt is back."""
    await term.type(keys)
    assert await bob.read_until(b"ann: ") == b"[#lobby] ann: " + seen
    await term.expect(b": " + seen + b"\r\n")  # the room's echo (the nick is coloured)
    await term.expect(b"ann>")


@asynccontextmanager
async def piped_client(args: Sequence[str], **env: str) -> AsyncIterator[LineProcess]:
    """The client with pipes for stdin, stdout and stderr."""
    process = await trio.lowlevel.open_process(
        list(args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    try:
        yield LineProcess(process)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()


async def stderr_of(client: LineProcess) -> bytes:
    stream = client.process.stderr
    assert stream is not None
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data


# -- in a terminal ---------------------------------------------------------------------------


async def test_arrow_keys_edit_the_line_and_up_recalls_the_last_one() -> None:
    with trio.fail_after(GUARD):
        async with (
            chat_server() as server,
            observer(server) as bob,
            joined_terminal(server) as term,
        ):
            await term.type(b"helo")
            await term.expect(b"helo")  # echoed: the prompt reads keys now
            await say(term, LEFT + LEFT + b"l\r", bob, b"hello")
            await say(term, b"second line\r", bob, b"second line")
            await say(term, UP + UP + b"\r", bob, b"hello")  # history, oldest last
            await say(term, UP + b" again\r", bob, b"hello again")
            assert b"^[[" not in term.output  # no key shown as its escape sequence


async def test_a_line_arriving_while_typing_leaves_the_typed_text_intact() -> None:
    with trio.fail_after(GUARD):
        async with (
            chat_server() as server,
            observer(server) as bob,
            joined_terminal(server) as term,
        ):
            await term.type(b"half a li")
            await term.expect(b"half a li")
            await bob.send(b"a line from bob\n")
            await term.expect(b"bob\x1b[0m: a line from bob\r\n")  # above the prompt
            await term.expect(b"half a li")  # and the prompt drawn again with the text
            await term.type(b"ne\r")
            assert await bob.read_until(b"ann: ") == b"[#lobby] ann: half a line"


@pytest.mark.parametrize("leave", [CTRL_C, CTRL_D, b"SIGTERM"], ids=["ctrl-c", "ctrl-d", "sigterm"])
@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_ctrl_c_ctrl_d_and_sigterm_say_quit_and_exit_0(transport: str, leave: bytes) -> None:
    # Peers expire after 120 s of silence: a leaving seen within the guard was said.
    with trio.fail_after(GUARD):
        async with (
            chat_server("--heartbeat", "60") as server,
            observer(server) as bob,
            joined_terminal(server, transport) as term,
        ):
            await bob.read_until(b"is now known as ann")
            if leave == b"SIGTERM":
                term.process.send_signal(signal.SIGTERM)
            else:
                await term.type(leave)
            assert await term.wait() == 0
            await bob.read_until(b"* ann left #lobby")
            assert await server.left("ann") == b"quit"
            goodbye = b"Bye!" if transport == "udp" else b"-!- bye"
            assert goodbye in term.output
            for word in TRACEBACK:
                assert word not in term.output
            assert b"triosock:" not in term.output


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_quit_typed_leaves_with_the_servers_goodbye_and_exit_0(transport: str) -> None:
    with trio.fail_after(GUARD):
        async with chat_server() as server, joined_terminal(server, transport) as term:
            await term.type(b"/quit\r")
            await term.expect(b"Bye!" if transport == "udp" else b"-!- bye")
            assert await term.wait() == 0
            assert await server.left("ann") == b"quit"
            assert b"triosock:" not in term.output


@pytest.mark.parametrize(
    ("transport", "option", "last_line"),
    [
        ("tcp", "--no-reconnect", rb"triosock: the server closed the connection"),
        (
            "tcp",
            "--reconnect-for=1",
            rb"triosock: the server closed the connection; gave up reconnecting after 1 s",
        ),
        (
            "udp",
            "--heartbeat=0.2",
            rb"triosock: the server is gone \(nothing listens at 127\.0\.0\.1:\d+\)",
        ),
    ],
)
async def test_a_killed_server_ends_the_session_with_a_last_line_and_exit_1(
    transport: str, option: str, last_line: bytes
) -> None:
    with trio.fail_after(GUARD):
        # Over UDP only a heartbeat's ICMP answer tells: beat often.
        async with (
            chat_server() as server,
            joined_terminal(server, transport, option, typing=False) as term,
        ):
            server.process.kill()
            await server.process.wait()
            assert await term.wait() == 1
            assert re.fullmatch(last_line, last_line_of(term)), term.output[-300:]
            for word in TRACEBACK:
                assert word not in term.output


async def test_colour_in_a_terminal_and_none_with_no_color() -> None:
    with trio.fail_after(GUARD):
        async with chat_server() as server, observer(server) as bob:
            for no_color, painted in [("", True), ("1", False)]:  # NO_COLOR= is "unset"
                async with joined_terminal(server, "tcp", NO_COLOR=no_color) as term:
                    await bob.send(b"hi ann\n")
                    if painted:
                        await term.expect(b"\x1b[2m[#lobby]\x1b[0m \x1b[")
                        await term.expect(b"bob\x1b[0m: hi ann\r\n")
                    else:
                        await term.expect(b"[#lobby] bob: hi ann\r\n")
                    await term.expect(b"ann>")  # the prompt is back: see joined_terminal
                    await term.type(CTRL_D)
                    assert await term.wait() == 0
                    notice = b"\x1b[33m-!- bye\x1b[0m" if painted else b"-!- bye\r\n"
                    assert notice in term.output
                    if not painted:
                        assert b"\x1b[33m" not in term.output
                        assert b"\x1b[2m" not in term.output


# -- through pipes ---------------------------------------------------------------------------


async def test_piped_output_is_the_servers_plain_lines_even_with_a_terminal_type() -> None:
    with trio.fail_after(GUARD):
        async with chat_server() as server:
            args = join_args(server, "tcp", "--nick", "ann")
            async with piped_client(args, TERM="xterm-256color", NO_COLOR="") as client:
                await client.send(b"hello")
                await client.send(b"/me waves")
                await client.close_stdin()  # EOF: the client says /quit
                lines = await client.read_to_eof()
                assert await client.process.wait() == 0
                assert await stderr_of(client) == b""
            assert TOKEN_NOTICE.fullmatch(lines[1])  # as the server sent it
            assert without_token(lines) == [
                b"-!- welcome to triosock chat, guest1; /help lists commands",
                b"* guest1 joined #lobby",
                b"* guest1 is now known as ann",
                b"[#lobby] ann: hello",
                b"[#lobby] * ann waves",
                b"-!- bye",
            ]
            assert ESC not in b"".join(client.seen)


async def test_timestamps_come_before_each_line() -> None:
    with trio.fail_after(GUARD):
        async with chat_server() as server:
            args = join_args(server, "tcp", "--timestamps")
            async with piped_client(args) as client:
                await client.close_stdin()
                lines = await client.read_to_eof()
                assert await client.process.wait() == 0
            assert len(lines) == 4
            for line, said in zip(
                lines,
                [b"-!- welcome", b"-!- your resume token", b"* guest1 joined", b"-!- bye"],
                strict=True,
            ):
                assert re.fullmatch(rb"\d\d:\d\d:\d\d " + re.escape(said) + rb".*", line), line


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_sigint_to_a_piped_client_says_quit_and_exits_0(transport: str) -> None:
    with trio.fail_after(GUARD):
        async with (
            chat_server("--heartbeat", "60") as server,
            piped_client(join_args(server, transport, "--nick", "ann")) as client,
        ):
            await client.expect(b"is now known as ann")
            client.process.send_signal(signal.SIGINT)
            assert await client.process.wait() == 0
            assert await server.left("ann") == b"quit"
            assert await stderr_of(client) == b""


async def test_a_server_that_drops_us_ends_the_session_with_exit_1() -> None:
    with trio.fail_after(GUARD):
        # The idle timeout closes a TCP user that says nothing, and says why.
        async with (
            chat_server("--idle-timeout", "0.5") as server,
            piped_client(join_args(server, "tcp")) as idle,
        ):
            assert await idle.process.wait() == 1
            assert await stderr_of(idle) == b"triosock: the server closed the connection\n"
            assert (await idle.read_to_eof())[-2:] == [
                b"* guest1 joined #lobby",
                b"-!- disconnected: idle for 0.5 s",
            ]


async def test_a_server_that_stops_ends_the_session_with_exit_1() -> None:
    with trio.fail_after(GUARD):
        async with (
            chat_server() as server,
            piped_client(join_args(server, "udp")) as udp,
            piped_client(join_args(server, "tcp", "--no-reconnect")) as tcp,
        ):
            await udp.expect(b"joined #lobby")
            await tcp.expect(b"welcome")
            server.process.send_signal(signal.SIGINT)  # a graceful stop: goodbyes
            await tcp.expect(b"-!- server closing: goodbye")
            await udp.expect(b"Bye!")
            assert await tcp.process.wait() == 1
            assert await udp.process.wait() == 1
            assert await stderr_of(tcp) == b"triosock: the server closed the connection\n"
            assert await stderr_of(udp) == b"triosock: the server closed the session\n"


async def test_a_reader_that_goes_away_makes_the_client_quit_quietly() -> None:
    with trio.fail_after(GUARD):
        async with (
            chat_server() as server,
            observer(server) as bob,
            piped_client(join_args(server, "tcp", "--nick", "ann")) as client,
        ):
            await client.expect(b"is now known as ann")
            assert client.process.stdout is not None
            await client.process.stdout.aclose()  # as ``| head -3`` does
            await bob.send(b"anyone there?\n")  # the client's next write breaks
            assert await client.process.wait() == 1
            assert await server.left("ann") == b"quit"
            assert await stderr_of(client) == b""


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_connection_refused_is_one_line_and_exit_1(transport: str) -> None:
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with trio.fail_after(GUARD), socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", 0))  # bound, never listening or reading: refused
        port = holder.getsockname()[1]
        if transport == "udp":
            holder.close()  # a closed UDP port answers with ICMP port-unreachable
        udp = ["--udp"] if transport == "udp" else []
        result = await run([*JOIN, f"127.0.0.1:{port}", *udp])
    assert result.returncode == 1
    assert result.stdout == b""
    where = f"127.0.0.1:{port}"
    wanted = f"cannot reach {where} (udp)" if udp else f"cannot connect to {where}"
    assert result.stderr == f"triosock: error: {wanted}: connection refused\n".encode()


# -- the painting, without a terminal --------------------------------------------------------


def test_paint_colours_nicks_rooms_notices_and_direct_messages() -> None:
    def plain(text: str) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", text)

    lines = [
        "[#lobby] bob: hi there: all",
        "[#lobby] * bob waves",
        "* bob joined #lobby",
        "* bob left #lobby",
        "* bob is now known as rob",
        "-!- in #lobby: ann, bob",
        "[dm from bob] psst",
        "[127.0.0.1:5000] hi from udp",
        "Bye!",
    ]
    for line in lines:
        painted = paint(line, "ann")
        assert painted != line, line
        assert plain(painted) == line  # colour only: the text stays the same
    assert paint("[#lobby] bob: hi", "ann") == paint("[#lobby] bob: hi", "ann")
    assert "\x1b[1m" in paint("[#lobby] ann: mine", "ann")  # your own nick in bold
    assert "\x1b[1m" not in paint("[#lobby] bob: theirs", "ann")
    assert paint("something else", "ann") == "something else"


def test_colour_is_wanted_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert colour_wanted(True)
    assert not colour_wanted(False)
    monkeypatch.setenv("NO_COLOR", "")  # empty is as if unset (no-color.org)
    assert colour_wanted(True)
    monkeypatch.setenv("NO_COLOR", "0")  # any non-empty value
    assert not colour_wanted(True)
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not colour_wanted(True)


async def test_a_terminal_shows_the_resume_token_on_one_short_line() -> None:
    with trio.fail_after(GUARD):
        async with chat_server() as server, joined_terminal(server) as term:
            lines = visible_lines(term.output)
            (told,) = [line for line in lines if b"resume token" in line]
            assert re.fullmatch(
                rb"-!- resume token [A-Za-z0-9_-]{32}: send /resume and it after a drop",
                told.strip(),
            ), told
            assert b"(secret;" not in term.output  # the server's long form, not shown
            await term.type(b"/quit\r")
            assert await term.wait() == 0
