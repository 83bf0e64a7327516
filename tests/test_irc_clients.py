"""irssi and WeeChat, the IRC clients people use, in the chat's rooms with an nc user:
what each one's screen shows (through tmux, see :mod:`tests.ircclients`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from tests.ircclients import IrcClientScreen, irssi, weechat
from tests.irctools import close_all, irc_chat, nc_user, web_chat_and_irc
from triosock._sansio import accounts as rules
from triosock.chat import ChatServer, Hasher

FAST = rules.ScryptParameters(log2_n=4, r=1, p=1)
#: What the clients show for a command or a reply they did not understand.
NOT_UNDERSTOOD = re.compile(r"Unknown command|=!=|command \"\w+\" not found|\b4[0-9]{2}\b")


async def _clean(client: IrcClientScreen) -> None:
    screen = await client.screen()
    assert NOT_UNDERSTOOD.search(screen) is None, screen


async def test_irssi_and_weechat_talk_with_an_nc_user_and_the_page(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with web_chat_and_irc(hasher=Hasher(parameters=FAST)) as (ports, page):
            nc = await nc_user(ports.tcp)
            try:
                await nc.send(b"/nick carol\n")
                async with (
                    irssi("127.0.0.1", ports.irc, "alice", tmp_path / "alice") as alice,
                    weechat("127.0.0.1", ports.irc, "bob", tmp_path / "bob") as bob,
                ):
                    await alice.window("#lobby")
                    await bob.window("#lobby")
                    await bob.wait_for("carol")  # the nicklist

                    await nc.send(b"hello from nc\n")
                    await alice.wait_for(re.compile(r"\d\d:\d\d:\d\d < carol> hello from nc"))
                    await bob.wait_for(re.compile(r"carol \| hello from nc"))

                    # the page's WebSocket protocol, as its script speaks it
                    await page.ws.send('{"type":"say","text":"hello from the page"}')
                    await alice.wait_for("< guest1> hello from the page")
                    await bob.wait_for(re.compile(r"guest1 \| hello from the page"))

                    await alice.command("hi from irssi")
                    assert await nc.read_until(b"irssi") == b"[#lobby] alice: hi from irssi"
                    await bob.wait_for(re.compile(r"alice \| hi from irssi"))

                    await bob.command("hi from weechat")
                    assert await nc.read_until(b"weechat") == b"[#lobby] bob: hi from weechat"
                    said = await page.next(type="message", sender="bob")
                    assert said["text"] == "hi from weechat"
                    await alice.wait_for("< bob> hi from weechat")

                    await bob.command("/me waves")
                    assert await nc.read_until(b"waves") == b"[#lobby] * bob waves"
                    await alice.wait_for(re.compile(r"\* bob waves"))

                    await alice.command("/msg carol psst from irssi")
                    assert await nc.read_until(b"psst") == b"[dm from alice] psst from irssi"
                    await nc.send(b"/msg bob psst from nc\n")
                    await bob.window("carol")
                    await bob.wait_for("psst from nc")
                    await bob.command("and back from weechat")
                    assert await nc.read_until(b"back") == b"[dm from bob] and back from weechat"
                    await bob.window("#lobby")

                    await bob.command("/nick bobby")
                    await alice.wait_for("bob is now known as bobby")
                    await nc.read_until(b"bob is now known as bobby")

                    # alice makes #lobby hers, sets its topic and kicks the nc user
                    await alice.command("/quote REGISTER correct-horse-battery")
                    await alice.server_window()  # the server's notices are shown there
                    await alice.wait_for("alice is yours")
                    await alice.window("#lobby")
                    await alice.command("/quote CLAIM")
                    await alice.wait_for("claimed #lobby")
                    await alice.command("/topic the lobby of the tests")
                    await alice.wait_for("changed the topic of #lobby to: the lobby of the tests")
                    await bob.wait_for('changed topic for #lobby to "the lobby of the tests"')
                    await alice.command("/kick carol flooding")
                    await alice.wait_for("carol was kicked from #lobby by alice [flooding]")
                    await bob.wait_for(re.compile(r"alice has kicked carol \(flooding\)"))
                    await nc.read_to_eof()

                    await _clean(alice)
                    await _clean(bob)
                    await bob.command("/quit")
                    await alice.wait_for("bobby")
            finally:
                close_all(nc)


#: 2020-01-02 03:04:05 UTC, in milliseconds: when the earlier line was said.
PAST_MS = 1_577_934_245_000


async def test_history_on_joining_keeps_its_times_in_weechat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(60):
        async with irc_chat(ChatServer()) as ports:
            nc = await nc_user(ports.tcp)
            try:
                await nc.send(b"/join #old\n")
                await nc.read_until(b"joined #old")
                with monkeypatch.context() as patch:  # the store stamps it in 2020
                    patch.setattr("triosock._store._memory.now_ms", lambda: PAST_MS)
                    await nc.send(b"said before anyone came\n")
                    said = await nc.read_until(b"said before")
                assert said == b"[#old] guest1: said before anyone came"
                async with weechat("127.0.0.1", ports.irc, "bob", tmp_path / "bob") as bob:
                    await bob.command("/join #old")
                    await bob.window("#old")
                    # WeeChat shows the line at its own time, under the day it was said
                    await bob.wait_for(re.compile(r"03:04:05 +guest1 \| said before anyone came"))
                    await bob.wait_for("Thu, 02 Jan 2020")
            finally:
                close_all(nc)
