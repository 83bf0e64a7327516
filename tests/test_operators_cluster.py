"""Room operators across the servers of a cluster through Redis: a ban said on one
server removes its user from another and keeps it out of both, and a room made
moderated on one server silences the users of the other.

Redis keeps time in real seconds, so this runs on real time, under an absolute guard.
"""

from __future__ import annotations

import contextlib

import pytest
import trio

from triosock._accounts import Hasher
from triosock.chat import ChatServer

from .chattools import LineSocket, detached
from .conftest import GUARD
from .redistools import chat_node, redis_server
from .test_accounts import FAST, PLAIN
from .test_chat_resume import token_of

pytest.importorskip("coredis")


async def user_at(port: int, host: str, source: str, nick: bytes) -> LineSocket:
    """A TCP user of the server at ``host:port``, from ``source``, named ``nick``."""
    user = await LineSocket.connect(port, source=source, host=host)
    await user.read_until(b"welcome to triosock chat")
    await user.send(b"/nick " + nick + b"\n")
    await user.read_until(b"is now known as " + nick)
    return user


async def two_nodes(
    url: str, stack: contextlib.AsyncExitStack
) -> list[tuple[ChatServer, int, str]]:
    """Two chat servers sharing Redis at ``url``, accounts too: (chat, TCP port, host)."""
    from triosock._accounts._redis import RedisAccounts

    nodes = []
    for host in ("127.0.0.2", "127.0.0.3"):
        accounts = await stack.enter_async_context(RedisAccounts(url))
        node = chat_node(url, host, accounts=accounts, hasher=Hasher(parameters=FAST))
        chat, server = await stack.enter_async_context(node)
        nodes.append((chat, server.port, host))
    return nodes


async def test_a_ban_on_one_server_holds_on_the_other_and_so_does_a_moderated_room() -> None:
    with trio.fail_after(GUARD):
        async with redis_server() as redis, contextlib.AsyncExitStack() as stack:
            nodes = await two_nodes(redis.url, stack)
            (_, a, host_a), (chat_b, b, host_b) = nodes
            alice = await user_at(a, host_a, "127.0.0.1", b"alice")
            await alice.send(b"/register " + PLAIN.encode() + b"\n/claim\n")
            await alice.read_until(b"claimed #lobby")
            # a user of the other server, silenced there by a mode set here
            bob = await user_at(b, host_b, "127.0.0.6", b"bob")
            await alice.send(b"/mode +m\n")
            await bob.read_until(b"+m (only operators speak)")
            await bob.send(b"hello?\n")
            assert await bob.read_until(b"moderated") == (
                b"-!- #lobby is moderated (+m): only its operators speak"
            )
            await alice.send(b"/mode -m\n")
            await bob.read_until(b"-m (everyone speaks)")
            # banned from here, removed there, and kept out of both
            mallory = await user_at(b, host_b, "127.0.0.5", b"mallory")
            await alice.send(b"/ban mallory flooding\n")
            assert await alice.read_until(b"banned") == b"* alice banned mallory (flooding)"
            assert (await mallory.read_to_eof())[-1] == (
                b"-!- disconnected: banned from #lobby by alice (flooding)"
            )
            mallory.close()
            for port, host in ((a, host_a), (b, host_b)):
                again = await LineSocket.connect(port, source="127.0.0.5", host=host)
                assert await again.read_to_eof() == [
                    b"-!- disconnected: you are banned from #lobby"
                ]
                again.close()
            assert "mallory" not in await chat_b.users()
            await bob.send(b"still here\n")
            assert await alice.read_until(b"still here") == b"[#lobby] bob: still here"
            for user in (alice, bob):
                user.close()


async def test_a_founder_resumed_on_another_server_is_still_logged_in_and_its_founder() -> None:
    with trio.fail_after(GUARD):
        async with redis_server() as redis, contextlib.AsyncExitStack() as stack:
            nodes = await two_nodes(redis.url, stack)
            (chat_a, a, host_a), (_, b, host_b) = nodes
            alice = await LineSocket.connect(a, host=host_a)
            token = await token_of(alice)
            await alice.send(b"/nick alice\n/register " + PLAIN.encode() + b"\n/claim\n")
            await alice.read_until(b"claimed #lobby")
            alice.close()  # no /quit: detached on a
            await detached(chat_a, "alice")
            back = await LineSocket.connect(b, host=host_b)  # the other server
            await back.send(b"/resume " + token + b"\n/topic resumed elsewhere\n")
            await back.read_until(b"welcome back, alice")
            assert await back.read_until(b"topic") == (
                b"* alice set the topic of #lobby: resumed elsewhere"
            )
            back.close()
