"""The chat's WebSocket users and its page, with TCP and UDP users in the same rooms.

Judged by clients nobody here wrote: ``python -m websockets`` (websockets' own
interactive client), websockets' client library, ``nc``, ``curl``; a raw client on
websockets' sans-I/O protocol for what a well-behaved library will not send.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.trio.client import ClientConnection, connect
from websockets.typing import Origin
from websockets.uri import parse_uri

from triosock import WebSocketServer, serve_websocket
from triosock._sansio import chat as proto
from triosock._services.chat._websocket import FIRST_MESSAGE_WAIT
from triosock.chat import ChatServer

from .chattools import LineSocket, socat_join, web_chat
from .clitools import PYTHON, cli_server, line_process, need, run
from .conftest import GUARD


async def events(ws: ClientConnection) -> list[dict[str, str]]:
    """The events of the next message: JSON lines."""
    message = await ws.recv()
    assert isinstance(message, str)
    assert message.endswith("\n"), message
    return [json.loads(line) for line in message.splitlines()]


async def expect_event(ws: ClientConnection, **wanted: str) -> dict[str, str]:
    while True:
        for event in await events(ws):
            if all(event.get(k) == v for k, v in wanted.items()):
                return event


ALL_ON_FREE_PORTS = ("--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--web", "127.0.0.1:0")


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


# -- real clients ----------------------------------------------------------------------

_ESCAPES = re.compile(rb"\x1b[\[\d;?]*[A-Za-z78]|\r")


class WebsocketsCLI:
    """``python -m websockets URL``: lines typed in, what it prints read back."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.shown = b""
        self._looked = 0

    async def send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line + b"\n")

    async def expect(self, wanted: bytes) -> bytes:
        """What it printed from the last match on, up to and including ``wanted``."""
        assert self.process.stdout is not None
        while (at := self.shown.find(wanted, self._looked)) < 0:
            data = await self.process.stdout.receive_some()
            assert data, f"the client ended first: {self.shown[-500:]!r}"
            self.shown += _ESCAPES.sub(b"", data)
        start, self._looked = self._looked, at + len(wanted)
        return self.shown[start : self._looked]


@asynccontextmanager
async def websockets_cli(url: str) -> AsyncIterator[WebsocketsCLI]:
    process = await trio.lowlevel.open_process(
        [PYTHON, "-m", "websockets", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield WebsocketsCLI(process)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_a_websockets_client_talks_with_an_nc_user_and_a_udp_peer() -> None:
    nc = need("nc")
    socat = need("socat")
    with trio.fail_after(GUARD):
        async with cli_server(
            ["chat", "serve", *ALL_ON_FREE_PORTS],
            ready_lines=3,
        ) as server:
            tcp, udp, web = (server.port(f"chat ({kind})") for kind in ("tcp", "udp", "web"))
            async with (
                line_process([nc, "127.0.0.1", str(tcp)]) as alice,
                line_process([socat, "-", f"UDP:127.0.0.1:{udp}"]) as peer,
                websockets_cli(f"ws://127.0.0.1:{web}/ws") as carol,
            ):
                await alice.expect(b"welcome")
                await alice.send(b"/nick alice")
                await alice.expect(b"is now known as alice")
                await carol.expect(b'"type":"hello"')
                await carol.send(b"/nick carol")  # typed as in nc: plain text lines
                await alice.expect(b"* guest2 is now known as carol")
                await socat_join(peer)
                udp_name = (await alice.expect(b"joined #lobby")).split()[1]
                await carol.send(b"hello from the web <b>")
                assert await alice.expect(b"hello from the web") == (
                    b"[#lobby] carol: hello from the web <b>"
                )
                await peer.expect(b"[#lobby] carol: hello from the web <b>")
                await alice.send(b"hi carol")
                await carol.expect(b'"room":"#lobby","sender":"alice","text":"hi carol"')
                await peer.send(b"hi from udp")
                await carol.expect(b'"sender":"' + udp_name + b'","text":"hi from udp"')
                await alice.send(b"/msg carol psst")
                await carol.expect(b'"recipient":"carol","sender":"alice","text":"psst"')
                await carol.send(b'{"type":"msg","to":"alice","text":"psst back"}')
                assert await alice.expect(b"psst back") == b"[dm from carol] psst back"
                await carol.send(b"/who")
                await carol.expect(
                    b"in #lobby: " + b", ".join(sorted([b"alice", b"carol", udp_name]))
                )
                await carol.send(b"/quit")
                await carol.expect(b'"text":"bye"')
                await carol.expect(b"1000")  # the close code it printed: a normal closure
                await alice.expect(b"* carol left #lobby")
                assert await carol.process.wait() == 0


async def test_the_page_the_room_list_and_404_over_curl() -> None:
    curl = need("curl")
    with trio.fail_after(GUARD):
        async with web_chat(ChatServer()) as (tcp, _, web):
            page = await run([curl, "-s", "-i", f"http://127.0.0.1:{web}/"])
            head, _, body = page.stdout.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert b"Content-Type: text/html; charset=utf-8" in head
            assert b"Content-Security-Policy: default-src 'self'" in head
            assert b'<script src="/chat.js"' in body
            assert b"<script>" not in body  # no inline script: the CSP forbids it
            script = await run(
                [curl, "-s", "-w", "%{content_type}", f"http://127.0.0.1:{web}/chat.js"]
            )
            assert script.stdout.endswith(b"text/javascript; charset=utf-8")
            assert b"textContent" in script.stdout
            assert b"innerHTML" not in script.stdout
            user = await LineSocket.connect(tcp)
            await user.read_until(b"welcome")
            await user.send(b"/join #games\n")
            await user.read_until(b"joined #games")
            rooms = await run([curl, "-s", f"http://127.0.0.1:{web}/rooms"])
            assert json.loads(rooms.stdout) == {"rooms": {"#games": 1}}
            asker = await LineSocket.connect(web)  # curl -I would not read a body anyway
            await asker.send(b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = b"\n".join(await asker.read_to_eof())
            assert head.startswith(b"HTTP/1.1 200")
            assert f"Content-Length: {len(body)}".encode() in head
            assert head.endswith(b"\r\n\r")  # headers only: nothing after the blank line
            asker.close()
            posted = await run([curl, "-s", "-i", "-X", "POST", f"http://127.0.0.1:{web}/rooms"])
            assert posted.stdout.startswith(b"HTTP/1.1 405")
            assert b"Allow: GET, HEAD" in posted.stdout
            missing = await run(
                [
                    curl,
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    f"http://127.0.0.1:{web}/etc/passwd",
                ]
            )
            assert missing.stdout == b"404"
            user.close()


# -- the API's client ------------------------------------------------------------------


async def test_json_events_in_and_out_and_the_hello_comes_first() -> None:
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with web_chat(chat) as (tcp, _, web), connect(ws_url(web)) as ws:
            first = await events(ws)
            hello = dict(first[0])
            token = hello.pop("token")
            assert proto.check_token_untrusted(token) is None
            assert hello == {
                "epoch": chat.store.epoch,
                "nick": "guest1",
                "room": "#lobby",
                "type": "hello",
            }
            await expect_event(ws, type="joined", nick="guest1", room="#lobby")
            nc = await LineSocket.connect(tcp)
            await nc.read_until(b"welcome")
            await ws.send(json.dumps({"type": "nick", "nick": "web"}))
            assert await expect_event(ws, type="nick") == {
                "new": "web",
                "old": "guest1",
                "type": "nick",
            }
            await ws.send(json.dumps({"type": "say", "text": "/not a command"}))
            await nc.read_until(b"[#lobby] web: /not a command")
            await ws.send(json.dumps({"type": "me", "text": "waves"}))
            await nc.read_until(b"[#lobby] * web waves")
            await ws.send("two\r\nlines\n")  # plain text: each line is a line
            await nc.read_until(b"[#lobby] web: two")
            await nc.read_until(b"[#lobby] web: lines")
            await ws.send('{"type": "msg", "to": "two words", "text": "x"}')
            refused = await expect_event(ws, type="notice")
            assert refused["text"] == "refused: the 'to' of a msg event is one word"
            # A nick with a space is the chat's to refuse, with the reason a TCP user gets.
            await ws.send(json.dumps({"type": "nick", "nick": "two words"}))
            refused = await expect_event(ws, type="notice")
            assert refused["text"].startswith(
                "nick 'two words' contains ' ': nicks cannot contain spaces"
            ), refused
            await ws.send(json.dumps({"type": "join", "room": "a\nb"}))
            refused = await expect_event(ws, type="notice")
            assert refused["text"] == "refused: the 'room' of a join event is a name on one line"
            await ws.send(b"\x00binary")
            refused = await expect_event(ws, type="notice")
            assert refused["text"].startswith("refused: binary messages are not accepted")
            # A { message is JSON events: one typo'd /msg must not reach the room.
            await ws.send('{"type": "msg", "to": "guest2", "text": "my password"')
            refused = await expect_event(ws, type="notice")
            assert refused["text"].startswith("refused: not a JSON event")
            await ws.send('{"type": "say", "text": "one"}\n{"type": "say", "text": "two"}\n')
            await nc.read_until(b"[#lobby] web: one")  # JSON lines, as the server sends
            await nc.read_until(b"[#lobby] web: two")
            assert not any(b"password" in line for line in nc.lines)
            await ws.send(json.dumps({"type": "join", "room": "#games"}))
            assert await expect_event(ws, type="joined") == {
                "nick": "web",
                "room": "#games",
                "type": "joined",
            }
            await nc.read_until(b"* web left #lobby")
            # What a user typed reaches others as text, neutralised like on a terminal.
            await nc.send(b"/join #games\n")
            await nc.send(b"<img src=x onerror=alert(1)> \x1b[31mred\n")
            said = await expect_event(ws, type="message")
            assert said["text"] == "<img src=x onerror=alert(1)> red"
            nc.close()


async def test_quit_closes_with_1000_and_a_stop_with_1001_after_the_goodbye() -> None:
    with trio.fail_after(GUARD):
        async with web_chat(ChatServer()) as (_, _, web), connect(ws_url(web)) as ws:
            await expect_event(ws, type="joined")
            await ws.send(json.dumps({"type": "quit"}))
            assert (await expect_event(ws, type="notice"))["text"] == "bye"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "bye")
        chat = ChatServer()
        async with chat, trio.open_nursery() as nursery:
            server: WebSocketServer = await nursery.start(
                lambda task_status: serve_websocket(
                    chat.serve_websocket_peer, 0, task_status=task_status
                )
            )
            async with connect(ws_url(server.port)) as ws:
                await expect_event(ws, type="joined")
                server.stop()
                assert await expect_event(ws, type="closing") == {
                    "text": "goodbye",
                    "type": "closing",
                }
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1001


async def test_the_origin_must_be_the_page_own() -> None:
    with trio.fail_after(GUARD):
        async with web_chat(ChatServer()) as (_, _, web):
            for host, origin in [
                ("127.0.0.1", "http://evil.example"),
                ("evil.example", f"http://evil.example:{web}"),  # DNS rebinding
                ("127.0.0.1", f"http://127.0.0.1:{web + 1}"),
                ("127.0.0.1", f"http://127.0.0.1:{web}, http://evil.example"),
            ]:
                client = await RawClient.connect(web, host=host, origin=origin, check=False)
                assert isinstance(client.protocol.handshake_exc, InvalidStatus), origin
                assert client.protocol.handshake_exc.response.status_code == 403, origin
                client.sock.close()
            accepted: list[tuple[str, str | None]] = [
                ("127.0.0.1", f"http://127.0.0.1:{web}"),
                ("localhost", f"http://localhost:{web}"),
                ("127.0.0.1", None),  # not a browser
            ]
            for host, maybe in accepted:
                client = await RawClient.connect(web, host=host, origin=maybe)
                client.sock.close()


# -- what a library will not send ------------------------------------------------------


class RawClient:
    """A WebSocket client on websockets' sans-I/O protocol over a plain trio socket: it
    sends any frame and reads only when asked (or never)."""

    def __init__(self, sock: trio.socket.SocketType, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.protocol = protocol

    @classmethod
    async def connect(
        cls,
        port: int,
        *,
        rcvbuf: int | None = None,
        host: str = "127.0.0.1",
        origin: str | None = None,
        check: bool = True,
    ) -> RawClient:
        """Connect to 127.0.0.1 (as if to ``host``) and do the opening handshake."""
        sock = trio.socket.socket()
        if rcvbuf is not None:
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, rcvbuf)
        await sock.connect(("127.0.0.1", port))
        protocol = ClientProtocol(
            parse_uri(f"ws://{host}:{port}/ws"),
            origin=None if origin is None else Origin(origin),
            max_size=None,
        )
        protocol.send_request(protocol.connect())
        client = cls(sock, protocol)
        await client.flush()
        while protocol.handshake_exc is None and not protocol.events_received():
            if not await client.read():
                break
        if check:
            assert protocol.handshake_exc is None
        return client

    async def flush(self) -> None:
        for data in self.protocol.data_to_send():
            view = memoryview(data)
            while view:
                view = view[await self.sock.send(view) :]

    async def read(self) -> bool:
        data = await self.sock.recv(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        return bool(data)

    async def send_frame(self, frame: Frame) -> None:
        self.protocol.send_frame(frame)
        await self.flush()

    async def close_code(self) -> int | None:
        """Read to the end (answering the close), then close the socket, as browsers do;
        the close code the server sent."""
        while await self.read():
            with contextlib.suppress(OSError):  # our own frame may be unfinished
                await self.flush()
        self.sock.close()
        assert self.protocol.close_rcvd is not None or self.protocol.close_exc is not None
        return None if self.protocol.close_rcvd is None else self.protocol.close_rcvd.code


async def test_invalid_utf8_gets_1007_and_a_huge_message_1009_and_the_room_goes_on() -> None:
    with trio.fail_after(GUARD):
        async with (
            web_chat(ChatServer(resume_window=0)) as (tcp, _, web),  # a close leaves at once
            connect(ws_url(web)) as other,
        ):
            await expect_event(other, type="joined")
            bad = await RawClient.connect(web)
            await expect_event(other, type="joined", nick="guest2")
            await bad.send_frame(Frame(Opcode.TEXT, b"caf\xc3 \xff\xfe"))
            assert await bad.close_code() == 1007
            await expect_event(other, type="left", nick="guest2")
            huge = await RawClient.connect(web)
            await expect_event(other, type="joined", nick="guest3")
            with trio.move_on_after(5):  # the server may close before it has all of it
                await huge.send_frame(Frame(Opcode.TEXT, b"x" * (2 * 1024 * 1024)))
            assert await huge.close_code() == 1009
            await expect_event(other, type="left", nick="guest3")
            nc = await LineSocket.connect(tcp)
            await nc.send(b"still here\n")
            assert (await expect_event(other, type="message"))["text"] == "still here"
            nc.close()
            bad.sock.close()
            huge.sock.close()


async def test_a_websocket_member_that_never_reads_is_dropped_and_the_room_gets_everything(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="triosock.chat")
    # the default rule: 256 KiB waiting, or 30 s taking nothing; it leaves at once
    chat = ChatServer(rate=None, resume_window=0)
    text = "x" * 900
    most = 20_000  # ~18 MB, a bound: the kernel holds a few MB for a reader that stops
    messages: list[str] = []  # what the sleeper gets when it reads at last
    with trio.fail_after(most):
        async with web_chat(chat) as (tcp, _, web):
            sleeper = await RawClient.connect(web, rcvbuf=4096)  # reads nothing from here on
            async with connect(ws_url(web)) as listener, connect(ws_url(web)) as talker:
                await expect_event(listener, type="joined", nick="guest3")
                nc = await LineSocket.connect(tcp)
                await expect_event(listener, type="joined", nick="guest4")
                said: list[str] = []
                heard: list[str] = []
                dropped = trio.Event()

                async def listen() -> None:
                    while len(heard) < len(said) or not dropped.is_set():
                        for event in await events(listener):
                            if event == {"nick": "guest1", "room": "#lobby", "type": "left"}:
                                dropped.set()
                            elif event["type"] == "message":
                                heard.append(event["text"])

                async def drain_talker() -> None:
                    while True:
                        await talker.recv()

                async def wake_the_sleeper() -> None:
                    await dropped.wait()
                    # Now it reads: the server still offers it the notice, then closes.
                    while await sleeper.read():
                        with contextlib.suppress(OSError):  # the server may be gone
                            await sleeper.flush()
                        for event in sleeper.protocol.events_received():
                            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                                messages.append(bytes(event.data).decode())

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(drain_talker)
                    nursery.start_soon(nc.read_to_eof)
                    async with trio.open_nursery() as listening:
                        listening.start_soon(listen)
                        listening.start_soon(wake_the_sleeper)
                        for i in range(most):
                            said.append(f"{i} {text}")
                            await talker.send(said[-1])
                            if dropped.is_set():
                                break
                    nursery.cancel_scope.cancel()
                nc.close()
            sleeper.sock.close()
    assert heard == said  # every line, once, in order
    assert chat.statistics().disconnected_slow == 1
    (record,) = [r for r in caplog.records if "disconnecting" in r.getMessage()]
    assert re.search(r"disconnecting guest1 \(ws 127\.0\.0\.1:\d+\): ", record.getMessage())
    # The sleeper got whole messages of whole events, the notice saying why, then 1008.
    assert all(m.endswith("\n") for m in messages)
    lines = [json.loads(line) for m in messages for line in m.splitlines()]
    assert lines[-1]["type"] == "notice"
    assert lines[-1]["text"].startswith("disconnected: your connection stopped taking")
    assert sleeper.protocol.close_rcvd is not None
    assert sleeper.protocol.close_rcvd.code == 1008


async def test_slowloris_on_the_web_port_holds_up_nobody(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Clients trickling a handshake: a WebSocket user still joins at once, and each slow
    # one is closed at the opening-handshake timeout (10 s, and up to 2 s more).
    with trio.fail_after(1000):
        async with web_chat(ChatServer()) as (_, _, web):
            slow = []
            for _ in range(200):
                sock = trio.socket.socket()
                await sock.connect(("127.0.0.1", web))
                slow.append(sock)
            start = trio.current_time()

            async def trickle(sock: trio.socket.SocketType) -> float:
                for byte in b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n":
                    try:
                        await sock.send(bytes([byte]))
                    except OSError:
                        break
                    await trio.sleep(1)
                return trio.current_time() - start  # a send fails a second or two after

            ended: list[float] = []
            closed: list[float] = []  # when the server closed each one

            async def run(sock: trio.socket.SocketType) -> None:
                ended.append(await trickle(sock))

            async def watch(sock: trio.socket.SocketType) -> None:
                with contextlib.suppress(OSError):
                    while await sock.recv(100):
                        pass
                closed.append(trio.current_time() - start)

            async with trio.open_nursery() as nursery:
                for sock in slow:
                    nursery.start_soon(run, sock)
                    nursery.start_soon(watch, sock)
                await trio.sleep(3)
                asked = trio.current_time()
                async with connect(ws_url(web)) as ws:
                    await expect_event(ws, type="joined")
                # only the wait for a first message (a resume) before the session begins
                assert trio.current_time() - asked == pytest.approx(FIRST_MESSAGE_WAIT)
            assert len(ended) == len(slow)
            assert all(10 <= t <= 13 for t in ended), (min(ended), max(ended))
            # Each deadline has up to 2 s added at random: opened together, the slow ones
            # do not all time out in the same instant (one scheduler pass for them all).
            assert all(10 <= t <= 12 for t in closed), (min(closed), max(closed))
            assert max(closed) - min(closed) >= 1, (min(closed), max(closed))
            for sock in slow:
                sock.close()


async def test_handshakes_that_time_out_leave_no_cancelled_in_reference_cycles(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A handshake that times out ends in a Cancelled that websockets' race_events left in
    reference cycles (its frames hold it, its traceback holds them): about 160 objects
    for the collector's full pass to find later, and 1,000 slowloris connections made
    that one pause 450 ms. The server frees those frames as the handshake ends."""
    gc.collect()
    gc.disable()
    try:
        with trio.fail_after(1000):
            async with web_chat(ChatServer()) as (_, _, web):
                slow = []
                for _ in range(20):
                    sock = trio.socket.socket()
                    await sock.connect(("127.0.0.1", web))
                    await sock.send(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no end
                    slow.append(sock)
                for sock in slow:
                    with contextlib.suppress(OSError):
                        while await sock.recv(100):
                            pass
                    sock.close()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        cycled = sum(1 for o in gc.garbage if type(o) is trio.Cancelled)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert cycled == 0


async def test_a_client_that_never_answers_pings_is_closed_by_the_keepalive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # websockets pings every 20 s, gives up 20 s later and then waits up to 10 s for the
    # closing handshake: the session ends, the room is told, and what the client finds at
    # last is a close saying why.
    with trio.fail_after(1000):
        async with (
            web_chat(ChatServer(resume_window=0)) as (_, _, web),  # a close leaves at once
            connect(ws_url(web)) as other,
        ):
            await expect_event(other, type="joined")
            mute = await RawClient.connect(web)  # reads nothing, so never answers a ping
            await expect_event(other, type="joined", nick="guest2")
            joined = trio.current_time()
            await expect_event(other, type="left", nick="guest2")
            assert 40 <= trio.current_time() - joined <= 50  # ping, its timeout, the close's
            assert await mute.close_code() == 1011  # keepalive ping timeout


async def test_max_connections_keeps_the_next_websocket_waiting_until_one_leaves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        async with web_chat(ChatServer(), max_connections=2) as (_, _, web):
            async with connect(ws_url(web)) as first, connect(ws_url(web)):
                await expect_event(first, type="joined", nick="guest2")
                with trio.move_on_after(30) as waited:  # in the listen backlog meanwhile
                    async with connect(ws_url(web), open_timeout=None):
                        pass
                assert waited.cancelled_caught
            async with connect(ws_url(web)) as third:  # the two left: room again
                await expect_event(third, type="hello")
