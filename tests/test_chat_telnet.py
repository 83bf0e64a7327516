"""The chat with the real ``telnet`` client, driven through a pseudo-terminal.

telnet negotiates (``mode character`` asks the server to echo and suppress go-ahead),
sends commands (``send ayt``, Ctrl-C as ``IAC IP IAC DO TIMING-MARK``) and, in
character mode, sends each key as typed with Enter as CR NUL. None of it may reach
another user as garbage, and every line must arrive as the user saw it typed.
"""

from __future__ import annotations

import trio

from triosock.chat import ChatServer

from .chattools import LineSocket, chat_servers
from .clitools import need
from .conftest import GUARD
from .ptytools import open_terminal

ESCAPE = b"\x1d"  # Ctrl-]: telnet's own prompt


async def test_telnet_in_line_and_character_mode_reaches_the_room_as_typed() -> None:
    telnet = need("telnet")
    with trio.fail_after(GUARD):
        async with chat_servers(ChatServer(resume_window=0)) as (tcp, _, _):  # leaves at once
            observer = await LineSocket.connect(tcp.port)
            await observer.read_until(b"guest1 joined")
            async with open_terminal([telnet, "127.0.0.1", str(tcp.port)]) as term:
                await term.expect(b"Escape character is '^]'.")
                await term.expect(b"welcome to triosock chat, guest2")

                async def said(typed: bytes, seen: bytes) -> None:
                    await term.type(typed)
                    line = await observer.read_until(b"guest2: ")
                    assert line == b"[#lobby] guest2: " + seen
                    await term.expect(b"guest2: " + seen)  # and telnet shows it back

                # Line mode (telnet's default): the terminal edits, Enter sends CR LF.
                await said(b"hello from telnet\r", b"hello from telnet")
                await said(b"helo\x7flo\r", b"hello")  # erased by the terminal
                await said(b"helo\x08lo\r", b"hello")  # a literal BS: erased by the server
                # Ctrl-C sends IAC IP IAC DO TIMING-MARK; answered, the screen goes on.
                await term.type(b"half a line\x03")
                await said(b"after ctrl-c\r", b"after ctrl-c")
                # telnet's own commands: none of them reaches the room. A line said after
                # each shows telnet is back in the session (so the next ^] is its escape).
                commands = [b"send ayt", b"send ip", b"send brk", b"send ec", b"send el"]
                for command in commands:
                    await term.type(ESCAPE)
                    await term.expect(b"telnet> ")
                    await term.type(command + b"\r")
                    if command == b"send ayt":
                        await term.expect(b"-!- yes, the server is here")
                    await said(b"after " + command + b"\r", b"after " + command)
                # Character mode: keys go one by one (Enter is CR NUL, Backspace DEL)
                # until the server's refusal turns telnet back to whole lines; either
                # way the room gets the line as typed.
                await term.type(ESCAPE)
                await term.expect(b"telnet> ")
                # Typed at once with the mode switch, so that telnet sends these keys in
                # character mode (CR NUL, a raw DEL) before the server's refusal is back.
                await term.type(b"mode character\rabc\rde\x7ff\r")
                assert await observer.read_until(b"guest2: ") == b"[#lobby] guest2: abc"
                assert await observer.read_until(b"guest2: ") == b"[#lobby] guest2: df"
                await said(b"ghi\r", b"ghi")  # and after it, whatever mode telnet is in
                for key in b"jk\x7fl":  # one key at a time, as a person types
                    await term.type(bytes([key]))
                await said(b"\r", b"jl")
                await term.type(ESCAPE)
                await term.expect(b"telnet> ")
                await term.type(b"mode line\r")
                await said(b"xyz\r", b"xyz")
                await term.type(ESCAPE)
                await term.expect(b"telnet> ")
                await term.type(b"quit\r")
                assert await term.wait() == 0
            await observer.read_until(b"* guest2 left #lobby")
            observer.close()
    # Nothing of telnet's negotiation reached anyone: no IAC, no replacement characters.
    for line in observer.lines:
        assert b"\xff" not in line
        assert "\ufffd".encode() not in line
    said_lines = [line for line in observer.lines if line.startswith(b"[#lobby] guest2: ")]
    assert [line.split(b": ", 1)[1] for line in said_lines] == [
        b"hello from telnet",
        b"hello",
        b"hello",
        b"after ctrl-c",
        *(b"after send " + name for name in (b"ayt", b"ip", b"brk", b"ec", b"el")),
        b"abc",
        b"df",
        b"ghi",
        b"jl",
        b"xyz",
    ]
