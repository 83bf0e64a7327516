"""Accounts shared by the servers of a cluster through Redis: a nick registered on one
server is refused to a guest of another, a message kept on one is delivered after a
login on the other, and Redis never sees a password (``redis-cli monitor`` watches
everything it is asked, the whole time).

Redis keeps time in real seconds, so this runs on real time, under an absolute guard.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess

import pytest
import trio

from triosock._accounts import Hasher
from triosock._sansio import accounts as rules

from .conftest import GUARD
from .redistools import chat_node, redis_server
from .test_accounts import registered, tcp_user

pytest.importorskip("coredis")

FAST = rules.ScryptParameters(log2_n=4, r=1, p=1)
SECRET = "correct horse battery staple"


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
async def test_accounts_are_shared_through_redis_and_redis_never_sees_a_password() -> None:
    from triosock._accounts._redis import RedisAccounts

    with trio.fail_after(GUARD):
        async with redis_server() as redis, contextlib.AsyncExitStack() as stack:
            monitor = await trio.lowlevel.open_process(
                ["redis-cli", "-p", str(redis.port), "monitor"], stdout=subprocess.PIPE
            )
            assert monitor.stdout is not None
            seen = bytearray()
            on = trio.Event()

            async def watch() -> None:
                assert monitor.stdout is not None
                async for chunk in monitor.stdout:
                    seen.extend(chunk)
                    if b"OK" in seen:  # monitor is on
                        on.set()

            nursery = await stack.enter_async_context(trio.open_nursery())
            nursery.start_soon(watch)
            await on.wait()
            nodes = []
            for host in ("127.0.0.2", "127.0.0.3"):
                accounts = await stack.enter_async_context(RedisAccounts(redis.url))
                node = chat_node(
                    redis.url, host, history=100, accounts=accounts, hasher=Hasher(parameters=FAST)
                )
                nodes.append(await stack.enter_async_context(node))
            (_, a), (_, b) = nodes
            await registered(a.port, b"alice", SECRET, "127.0.0.2")
            guest = await tcp_user(b.port, host="127.0.0.3")
            await guest.send(b"/nick alice\n")
            assert await guest.read_until(b"registered") == (
                b"-!- alice is registered: /login alice PASSWORD if it is yours"
            )
            await guest.send(b"/msg alice kept on server b\n")
            await guest.read_until(b"is away")
            back = await tcp_user(b.port, host="127.0.0.3")
            await back.send(b"/login alice " + SECRET.encode() + b"\n")
            assert await back.read_until(b"logged in") == b"-!- you are logged in as alice"
            kept = await back.read_until(b"[dm from")
            assert kept.endswith(b"kept on server b")
            for user in (guest, back):
                user.close()
            monitor.kill()
            await monitor.wait()
            nursery.cancel_scope.cancel()
    assert b"account:alice" in seen  # it watched the registration
    assert b"offline:alice" in seen
    assert b"kept on server b" in seen  # it sees what is stored, payloads included
    assert SECRET.encode() not in seen
    assert b"correct horse" not in seen
