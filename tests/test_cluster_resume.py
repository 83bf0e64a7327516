"""Sessions that resume on another server of a cluster (one Redis): a session detached
on one server taken over by its token on another; a killed server's sessions adopted by
a live one, waiting, then resumed there, exactly after the ids the client saw.

Redis keeps time in real seconds (leases, reaping), so these tests run on real time, each
under an absolute guard.
"""

from __future__ import annotations

import os
import re
import signal

import pytest
import trio

from triosock._sansio import chat as proto

from .chattools import LineSocket, detached
from .clitools import cli_server
from .conftest import GUARD
from .redistools import chat_node, redis_server
from .test_chat_resume import token_of
from .test_cluster import _port

pytest.importorskip("coredis")

STAMP = rb"\[\d\d:\d\d:\d\d\] "
EPOCH = re.compile(rb"^@epoch=([0-9a-f]+) ")


def _said(user: LineSocket) -> list[bytes]:
    """The lines said that ``user`` got, with their tags, without the time of earlier ones."""
    return [re.sub(STAMP, b"", line) for line in user.lines if line.startswith(b"@id=")]


async def test_a_session_detached_on_one_server_resumes_on_another() -> None:
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            chat_node(redis.url, "127.0.0.2", history=100) as (chat_a, a),
            chat_node(redis.url, "127.0.0.3", history=100) as (chat_b, b),
        ):
            bob, token, epoch = await _tagged_at("127.0.0.2", a.port, b"bob")
            alice = await LineSocket.connect(b.port, host="127.0.0.3")
            await alice.send(b"/nick alice\n")
            await bob.read_until(b"is now known as alice")
            await alice.send(b"one\n")
            await bob.read_until(b"alice: one")
            bob.close()  # no /quit: detached on a
            await detached(chat_a, "bob")
            await alice.send(b"two\nthree\n/msg bob psst\n")
            await alice.read_until(b"[dm to bob] psst")
            back = await LineSocket.connect(b.port, host="127.0.0.3")  # the other server
            resume = proto.resume_line(token.decode(), epoch.decode(), {"#lobby": 1, "direct": 0})
            await back.send(b"/tags on\n" + resume + b"\n")
            await back.read_until(b"end of earlier lines")
            await alice.send(b"four\n")
            await back.read_until(b"alice: four")
            assert _said(back) == [
                b"@id=2;key=#lobby [#lobby] alice: two",
                b"@id=3;key=#lobby [#lobby] alice: three",
                b"@id=1;key=direct [dm from alice] psst",
                b"@id=4;key=#lobby [#lobby] alice: four",
            ]
            assert back.lines[1].startswith(b"-!- welcome back, bob")
            # Server a learns at its next renewal (lease / 3) and lets it go without a word.
            while True:  # polling a's renewal
                if not chat_a._sessions.resumes.detached:
                    break
                await trio.sleep(0.05)
            await alice.send(b"/who\n")
            assert await alice.read_until(b"in #lobby:") == b"-!- in #lobby: alice, bob"
            assert not [line for line in alice.lines if re.search(rb"bob (left|joined)", line)]
            assert chat_b.statistics().resumed == 1
            for user in (alice, back):
                user.close()


async def test_a_token_taken_on_another_server_is_refused_where_it_was_issued() -> None:
    """Server b takes bob's session by its token; the same token at server a at once is
    refused: never two owners. (Server a mostly hears of the handover first and has
    forgotten the token; when the client is faster, the directory refuses it: see
    ``test_a_process_resumes_its_own_session_only_while_nobody_took_it``.)"""
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            chat_node(redis.url, "127.0.0.2", history=100) as (chat_a, a),
            chat_node(redis.url, "127.0.0.3", history=100) as (chat_b, b),
        ):
            bob, token, epoch = await _tagged_at("127.0.0.2", a.port, b"bob")
            bob.close()  # no /quit: detached on a
            await detached(chat_a, "bob")
            resume = proto.resume_line(token.decode(), epoch.decode(), {"#lobby": 0})
            back = await LineSocket.connect(b.port, host="127.0.0.3")
            await back.send(resume + b"\n")
            await back.read_until(b"welcome back, bob")
            again = await LineSocket.connect(a.port, host="127.0.0.2")
            await again.send(resume + b"\n")
            refused = await again.read_until(b"resume refused")
            assert refused in (
                b"-!- resume refused: that session was resumed on another server",
                b"-!- resume refused: no session has that token (a session waits 120 s "
                b"after its connection is lost; /quit ends it)",
            )
            assert (chat_a.statistics().resumed, chat_b.statistics().resumed) == (0, 1)
            for user in (again, back):
                await user.send(b"/quit\n")
                await user.read_to_eof()
                user.close()


async def test_a_killed_servers_sessions_wait_and_resume_on_another_server() -> None:
    with trio.fail_after(GUARD * 2):
        async with redis_server() as redis:
            serve = ["chat", "serve", "--redis", redis.url, "--web", "none", "--udp", "none"]
            async with (
                cli_server([*serve, "--tcp", "127.0.0.2:0"], 3) as a,
                cli_server([*serve, "--tcp", "127.0.0.3:0"], 3) as b,
            ):
                port_a, port_b = _port(a.lines, "(tcp)"), _port(b.lines, "(tcp)")
                bob, token, epoch = await _tagged_at("127.0.0.2", port_a, b"bob")
                alice = await LineSocket.connect(port_b, host="127.0.0.3")
                await alice.send(b"/nick alice\n")
                await bob.read_until(b"is now known as alice")
                await alice.send(b"one\n")
                await bob.read_until(b"alice: one")
                os.kill(a.process.pid, signal.SIGKILL)  # no goodbye: its sessions are orphans
                await a.process.wait()
                await bob.read_to_eof()
                await alice.send(b"two\n/msg bob psst\n")
                # Once a's lease (6 s) ends, b adopts bob: away, not gone.
                while True:
                    await alice.send(b"/who\n")
                    if b"bob (away)" in await alice.read_until(b"in #lobby:"):
                        break
                    await trio.sleep(0.25)  # polling the lease's real-time end
                await alice.send(b"three\n")
                await alice.read_until(b"alice: three")
                back = await LineSocket.connect(port_b, host="127.0.0.3")
                resume = proto.resume_line(token.decode(), epoch.decode(), {"#lobby": 1})
                await back.send(b"/tags on\n" + resume + b"\n")
                await back.read_until(b"end of earlier lines")
                assert _said(back) == [  # in the order they were said
                    b"@id=2;key=#lobby [#lobby] alice: two",
                    b"@id=1;key=direct [dm from alice] psst",
                    b"@id=3;key=#lobby [#lobby] alice: three",
                ]
                await alice.send(b"four\n")
                await back.read_until(b"alice: four")
                assert not [line for line in alice.lines if b"bob left" in line]
                for user in (alice, back, bob):
                    user.close()


async def _tagged_at(host: str, port: int, nick: bytes) -> tuple[LineSocket, bytes, bytes]:
    user = await LineSocket.connect(port, host=host)
    await user.send(b"/tags on\n/nick " + nick + b"\n")
    match = EPOCH.match(await user.read_until(b"@epoch="))
    assert match is not None
    token = await token_of(user)
    await user.read_until(b"is now known as " + nick)
    return user, token, match[1]
