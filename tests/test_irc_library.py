"""The IRC listener as a PyPI IRC library sees it (``irc``, jaraco's): what its parser
makes of the welcome, the names, messages split from a long line, a UDP peer's IRC-safe
name, WHOIS, ISON and a CAP request after registration."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import irc.client
import trio

from tests.chattools import join_over_udp
from tests.irctools import close_all, irc_chat, nc_user
from triosock.chat import ChatServer

LIMIT = 30
Event = Any  # irc.client.Event: the library has no type information


class LibClient:
    """An ``irc`` library client in a thread of its own: its reactor's loop (the
    library's ``process_once``) runs there, and the test waits for its events."""

    def __init__(self, port: int, nick: str) -> None:
        self.reactor = irc.client.Reactor()
        self.events: list[Event] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self.reactor.add_global_handler("all_events", self._record, -10)
        self.conn = self.reactor.server()
        self.port, self.nick = port, nick

    def _record(self, conn: irc.client.ServerConnection, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def _run(self) -> None:
        self.conn.connect("127.0.0.1", self.port, self.nick)
        while not self._stop.is_set():
            self.reactor.process_once(0.05)
        self.conn.disconnect("done")

    def _wait(self, kind: str, test: Callable[[Event], bool], start: int) -> Event:
        with self._changed:
            while True:
                for event in self.events[start:]:
                    if event.type == kind and test(event):
                        return event
                if not self._changed.wait(timeout=LIMIT):
                    raise AssertionError(f"no {kind} event; got {self.events[-5:]}")

    async def wait(
        self, kind: str, test: Callable[[Event], bool] = lambda e: True, start: int = 0
    ) -> Event:
        """The first event of type ``kind`` (from ``start`` on) that passes ``test``."""
        return await trio.to_thread.run_sync(self._wait, kind, test, start, abandon_on_cancel=True)

    def send(self, action: Callable[[], object]) -> None:
        """Run a call on the connection (the library's sends are thread-safe)."""
        action()


@asynccontextmanager
async def lib_client(port: int, nick: str) -> AsyncIterator[LibClient]:
    """A library client registered as ``nick`` and in #lobby, for the block."""
    client = LibClient(port, nick)
    thread = threading.Thread(target=client._run, daemon=True)
    thread.start()
    try:
        await client.wait("join")
        yield client
    finally:
        client._stop.set()
        await trio.to_thread.run_sync(thread.join, 5)


async def test_welcome_names_and_isupport_as_the_library_parses_them() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports, lib_client(ports.irc, "alice") as alice:
            welcome = await alice.wait("welcome")
            assert welcome.target == "alice"
            assert alice.conn.features.casemapping == "ascii"
            assert alice.conn.features.chantypes == "#"
            assert alice.conn.features.nicklen == 24
            names = await alice.wait("namreply")
            assert names.arguments == ["=", "#lobby", "alice"]
            async with lib_client(ports.irc, "bob") as bob:
                join = await alice.wait("join", lambda e: e.source.nick == "bob")
                assert join.target == "#lobby"
                names = await bob.wait("namreply")
                assert sorted(names.arguments[2].split()) == ["alice", "bob"]


async def test_channel_lines_direct_messages_and_a_long_line_split_whole() -> None:
    text = "ü" * 600 + " and the end"
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports, lib_client(ports.irc, "alice") as alice:
            nc = await nc_user(ports.tcp)
            try:
                await nc.send(b"/nick carol\n")
                await alice.wait("nick", lambda e: e.target == "carol")
                mark = len(alice.events)
                await nc.send(text.encode() + b"\n")
                pieces: list[str] = []
                while "".join(pieces) != text:
                    event = await alice.wait("pubmsg", start=mark)
                    mark = alice.events.index(event) + 1
                    assert event.source.nick == "carol"
                    assert event.target == "#lobby"
                    pieces.append(event.arguments[0])
                assert len(pieces) == 3
                alice.send(lambda: alice.conn.privmsg("carol", "psst, carol"))
                assert await nc.read_until(b"[dm") == b"[dm from alice] psst, carol"
                await nc.send(b"/msg alice hello alice\n")
                direct = await alice.wait("privmsg")
                assert (direct.source.nick, direct.arguments) == ("carol", ["hello alice"])
                alice.send(lambda: alice.conn.action("#lobby", "waves"))
                assert await nc.read_until(b"waves") == b"[#lobby] * alice waves"
                await nc.send(b"/me bows\n")
                action = await alice.wait("action")
                assert (action.source.nick, action.arguments) == ("carol", ["bows"])
            finally:
                close_all(nc)


async def test_a_udp_peer_is_named_and_answered_through_its_irc_safe_name() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports, lib_client(ports.irc, "alice") as alice:
            peer = await join_over_udp(ports.udp)
            try:
                host, port = peer.socket.getsockname()[:2]
                name = "`" + host.replace(".", "_") + f"-{port}"
                join = await alice.wait("join", lambda e: e.source.nick != "alice")
                assert join.source.nick == name
                await peer.send(b"hi from udp")
                said = await alice.wait("pubmsg")
                assert (said.source.nick, said.arguments) == (name, ["hi from udp"])
                alice.send(lambda: alice.conn.privmsg(name, "hello, peer"))
                while b"hello, peer" not in (got := await peer.receive()):
                    pass
                assert got == b"[dm from alice] hello, peer\n"
                alice.send(lambda: alice.conn.whois([name]))
                whois = await alice.wait("whoisuser")
                assert whois.arguments[0] == name
                alice.send(lambda: alice.conn.ison([name, "nobody"]))
                ison = await alice.wait("ison")
                assert ison.arguments == [name]
            finally:
                await peer.aclose()


async def test_a_cap_request_after_registration_turns_on_server_time() -> None:
    with trio.fail_after(LIMIT):
        async with irc_chat(ChatServer()) as ports, lib_client(ports.irc, "alice") as alice:
            alice.send(lambda: alice.conn.cap("REQ", "server-time"))
            cap = await alice.wait("cap")
            assert cap.arguments == ["ACK", "server-time"]
            nc = await nc_user(ports.tcp)
            try:
                await nc.send(b"stamped\n")
                said = await alice.wait("pubmsg")
                assert said.arguments == ["stamped"]
                times = [tag["value"] for tag in said.tags or [] if tag["key"] == "time"]
                assert len(times) == 1
                assert times[0].endswith("Z")
            finally:
                close_all(nc)
