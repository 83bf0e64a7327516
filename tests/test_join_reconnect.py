"""``chat join`` reconnects by itself: a lost TCP connection is made again after a
jittered back-off (to the next address in turn), and the session resumed after the
last ids the client showed, so that every line is shown once and in order."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from triosock._cli._join_resume import MAX_DELAY, Resumer, backoff, is_final
from triosock.chat import ChatServer

from .chattools import LineSocket, chat_servers
from .conftest import GUARD
from .test_join_client import JOIN, chat_server, observer, piped_client, stderr_of

STAMP = re.compile(rb"\[\d\d:\d\d:\d\d\] ")
TOKEN = "T" * 32


# -- the pieces, without IO ------------------------------------------------------------


def test_the_back_off_doubles_from_half_a_second_to_ten_with_full_jitter() -> None:
    assert [backoff(n, lambda: 1.0) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert backoff(1000, lambda: 1.0) == MAX_DELAY
    assert backoff(3, lambda: 0.0) == 0
    assert backoff(2, lambda: 0.25) == 0.5


def test_the_resumer_strips_tags_drops_repeats_and_asks_after_the_last_ids() -> None:
    said: list[str] = []
    resumer = Resumer("ann", said.append)
    assert resumer.hello() == [b"/tags on", b"/nick ann"]
    lines = [
        b"@epoch=e1 -!- tags on: ...",
        b"-!- welcome to triosock chat, guest1; /help lists commands",
        b"-!- your resume token: " + TOKEN.encode() + b" (secret; if ...)",
        b"* guest1 joined #lobby",
        b"* guest1 is now known as ann",
        b"@id=4;key=#lobby [#lobby] bob: four",
        b"@id=1;key=direct [dm from bob] psst",
        b"@id=4;key=#lobby [#lobby] bob: four",  # a repeat: dropped
    ]
    shown = [resumer.receive(line) for line in lines]
    assert shown == [None, *lines[1:5], b"[#lobby] bob: four", b"[dm from bob] psst", None]
    assert resumer.hello() == [
        b"/tags on",
        b"/resume " + TOKEN.encode() + b" e1 #lobby=4 direct=1",
    ]
    # the same history, a new session (the resume was refused): the earlier lines it
    # is shown on arrival are repeats; its direct messages count anew
    assert resumer.receive(b"@epoch=e1 -!- tags on") is None
    assert resumer.receive(b"-!- welcome to triosock chat, guest7; /help") is not None
    assert resumer.resumed is False
    assert said == ["the session was not resumed (the server says why): now guest7"]
    assert resumer.nick_lines() == [b"/nick ann"]
    assert resumer.receive(b"@id=3;key=#lobby [12:00:00] [#lobby] bob: three") is None
    assert resumer.receive(b"@id=1;key=direct [dm from bob] new") == b"[dm from bob] new"
    # asked for: /history shows them again
    resumer.sent(b"/history 5")
    assert resumer.receive(b"@id=3;key=#lobby [12:00:00] [#lobby] bob: three") is not None
    # another epoch: the ids held mean nothing
    resumer.hello()
    assert resumer.receive(b"@epoch=e2 -!- tags on") is None
    assert resumer.receive(b"@id=1;key=#lobby [#lobby] bob: one") == b"[#lobby] bob: one"
    assert is_final(b"-!- your session went on on another connection (/resume); closing this one")
    assert is_final(b"-!- disconnected: idle for 30 s")
    assert not is_final(b"-!- server closing: goodbye")
    assert not is_final(b"-!- disconnected: 262144 bytes were waiting")


def test_the_resumer_turns_nothing_else_into_a_repeat() -> None:
    resumer = Resumer(None, lambda text: None)
    assert resumer.hello() == [b"/tags on"]
    for line in (b"-!- bye", b"* bob joined #lobby", b"[#lobby] bob: untagged"):
        assert resumer.receive(line) == line
    assert resumer.receive(b"@id=1;key=#lobby x") == b"x"
    assert resumer.receive(b"@id=1;key=#other y") == b"y"  # another key, its own count


# -- over real sockets -----------------------------------------------------------------


class Proxy:
    """A TCP proxy between the client and a server, which the test can hold back (the
    server's bytes stay in the proxy) and cut (every connection through it is closed
    at once: what it held is lost, as on a dead link)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.holding = False
        self.held = b""
        self._scopes: set[trio.CancelScope] = set()
        self._changed = trio.Event()

    async def serve(
        self,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self._handle, listeners, task_status=task_status)

    async def _handle(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            server = await trio.open_tcp_stream("127.0.0.1", self.target)
            async with client, server, trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, client, server, False)
                nursery.start_soon(self._pump, server, client, True)
        self._scopes.discard(scope)

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, down: bool) -> None:
        while data := await source.receive_some():
            if down and self.holding:
                self.held += data
                self._changed.set()
                self._changed = trio.Event()
            else:
                await sink.send_all(data)
        await sink.send_eof()

    async def holds(self, wanted: bytes) -> None:
        while wanted not in self.held:
            await self._changed.wait()

    def cut(self) -> None:
        for scope in self._scopes:
            scope.cancel()
        self.holding, self.held = False, b""


@asynccontextmanager
async def proxied(target: int) -> AsyncIterator[Proxy]:
    proxy = Proxy(target)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        yield proxy
        nursery.cancel_scope.cancel()


def said_by_alice(lines: list[bytes]) -> list[bytes]:
    """alice's lines as the client showed them, earlier lines without their time."""
    return [
        STAMP.sub(b"", line, count=1)
        for line in lines
        if STAMP.sub(b"", line, count=1).startswith(b"[#lobby] alice: ")
    ]


async def test_a_cut_connection_is_made_again_and_every_line_shown_once_in_order() -> None:
    """The server wrote lines 11 to 20 to the connection, but they died in it (held
    by the proxy, then cut): only a resume after the ids the client showed gets them
    to it. Lines 21 to 30 are said while it is away."""
    chat = ChatServer(rate=None)
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _), proxied(tcp.port) as proxy:
            alice = await LineSocket.connect(tcp.port)
            await alice.send(b"/nick alice\n")
            args = [*JOIN, f"127.0.0.1:{proxy.port}", "--nick", "ann"]
            async with piped_client(args) as join:
                await join.expect(b"is now known as ann")
                await alice.send(b"".join(b"line %d\n" % i for i in range(1, 11)))
                await join.expect(b"alice: line 10")
                proxy.holding = True
                await alice.send(b"".join(b"line %d\n" % i for i in range(11, 21)))
                await proxy.holds(b"alice: line 20\n")
                proxy.cut()
                await alice.send(b"".join(b"line %d\n" % i for i in range(21, 31)))
                await join.expect(b"alice: line 30")
                await alice.send(b"/who\n")
                assert await alice.read_until(b"-!- in #lobby") == b"-!- in #lobby: alice, ann"
                assert [line for line in alice.lines if line.startswith(b"* ann")] == []
                await join.close_stdin()  # the user leaves: /quit
                rest = await join.read_to_eof()
                assert await join.process.wait() == 0
                stderr = await stderr_of(join)
            assert said_by_alice(join.seen + rest) == [
                b"[#lobby] alice: line %d" % i for i in range(1, 31)
            ]
            assert not [line for line in join.seen if line.startswith(b"@")]  # no tags
            assert re.fullmatch(
                rb"triosock: connection lost \(the server closed the connection\); "
                rb"reconnecting in \d\.\d s\n"
                rb"triosock: reconnected to 127\.0\.0\.1:\d+\n"
                rb"triosock: the session was resumed, ann\n",
                stderr,
            ), stderr
            alice.close()


async def test_a_dead_server_is_left_for_the_next_address_where_a_new_session_begins() -> None:
    """Two servers that share nothing: the first is killed; the client finds the
    second, whose refusal of the resume it tells, and goes on there as ann again."""
    with trio.fail_after(GUARD):
        async with (
            chat_server("--data", "none") as first,
            chat_server("--data", "none") as second,
        ):
            addresses = [f"127.0.0.1:{first.tcp}", f"127.0.0.1:{second.tcp}"]
            async with piped_client([*JOIN, *addresses, "--nick", "ann"]) as join:
                await join.expect(b"is now known as ann")
                first.process.kill()
                await first.process.wait()
                refused = await join.expect(b"resume refused")
                assert refused.startswith(b"-!- resume refused: the server restarted")
                await join.expect(b"is now known as ann")
                async with observer(second) as bob:
                    await bob.send(b"hello ann\n")
                    await join.expect(b"[#lobby] bob: hello ann")
                    await join.close_stdin()
                    await join.read_to_eof()
                    assert await join.process.wait() == 0
                    await bob.read_until(b"* ann left #lobby")
                stderr = await stderr_of(join)
            assert re.search(
                rb"triosock: reconnected to 127\.0\.0\.1:%d\n" % second.tcp
                + rb"triosock: the session was not resumed \(the server says why\): now guest1\n",
                stderr,
            ), stderr
            assert b"triosock: connection lost" in stderr
