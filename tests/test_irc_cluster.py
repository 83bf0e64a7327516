"""IRC users and nc users of two servers sharing their rooms through Redis: lines,
direct messages, nicks and history with its times cross from one server to the other."""

from __future__ import annotations

import contextlib

import trio

from tests.chattools import LineSocket
from tests.irctools import IrcSocket, close_all
from tests.redistools import chat_node, redis_server
from triosock import TCPServer, serve_tcp

GUARD = 60


async def test_an_irc_user_talks_with_an_nc_user_of_another_server() -> None:
    with trio.fail_after(GUARD):
        async with redis_server() as redis, contextlib.AsyncExitStack() as stack:
            node_a = chat_node(redis.url, "127.0.0.2", history=50)
            chat_a, _ = await stack.enter_async_context(node_a)
            _, tcp_b = await stack.enter_async_context(
                chat_node(redis.url, "127.0.0.3", history=50)
            )
            nursery = await stack.enter_async_context(trio.open_nursery())
            irc_a: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(
                    chat_a.serve_irc_client, 0, host="127.0.0.2", task_status=task_status
                )
            )
            nc = await LineSocket.connect(tcp_b.port, host="127.0.0.3")
            alice = await IrcSocket.connect(irc_a.port, host="127.0.0.2")
            try:
                await nc.read_until(b"joined #lobby")
                await nc.send(b"/nick carol\nsaid before alice came\n")
                await nc.read_until(b"carol: said before")
                # its nick is taken on the other server too
                await alice.say("NICK carol", "USER a 0 * :a")
                assert "433" in await alice.until(" 433 ")
                await alice.say("CAP REQ :server-time", "NICK alice", "CAP END")
                welcome = await alice.until(" 001 ")
                assert welcome.startswith(":triosock 001 alice ")
                # the history of the room, from Redis, with its time
                said = await alice.until("said before alice came")
                assert said.startswith("@time=")
                assert said.endswith(":carol!chat@triosock PRIVMSG #lobby :said before alice came")
                names = await alice.until(" 353 ")
                assert sorted(names.split(":", 2)[2].split()) == ["alice", "carol"]
                await nc.read_until(b"* alice joined #lobby")
                await alice.say("PRIVMSG #lobby :hello across servers")
                assert await nc.read_until(b"alice:") == b"[#lobby] alice: hello across servers"
                await nc.send(b"and back\n")
                line = await alice.until("and back")
                assert line.endswith(":carol!chat@triosock PRIVMSG #lobby :and back")
                await alice.say("PRIVMSG carol :a direct one")
                assert await nc.read_until(b"[dm") == b"[dm from alice] a direct one"
                await alice.say("WHOIS carol")
                assert (await alice.until(" 311 ")).startswith(":triosock 311 alice carol ")
                await alice.say("QUIT")
                await nc.read_until(b"* alice left #lobby")
            finally:
                close_all(nc, alice)
            nursery.cancel_scope.cancel()
