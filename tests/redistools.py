"""A private ``redis-server`` (Debian's package) on a free loopback port, for a test; a
proxy in front of it that can cut one client off; chat servers sharing it."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import trio

from triosock import TCPServer, serve_tcp
from triosock._directory._redis import DEFAULT_LEASE, RedisDirectory
from triosock._hub._redis import RedisHub
from triosock._redis import redis_client
from triosock._store._redis import RedisStore
from triosock.chat import ChatServer

from .chattools import LineSocket
from .clitools import need


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Loopback only, nothing written to disk, in the foreground.
_EPHEMERAL = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no")


class RedisProcess:
    """A running redis-server: its URL, and ways to pause, kill and restart it."""

    def __init__(self, port: int, persist: Path | None = None) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}"
        self.process: trio.Process | None = None
        #: Where it keeps an append-only file (``appendonly yes``); None: nothing kept.
        self.persist = persist

    async def start(self) -> None:
        config = list(_EPHEMERAL)
        if self.persist is not None:
            config[config.index("--appendonly") + 1] = "yes"
            config += ["--dir", str(self.persist), "--appendfsync", "always"]
        process = await trio.lowlevel.open_process(
            [need("redis-server"), "--port", str(self.port), *config],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdout is not None
        seen = b""
        while b"Ready to accept connections" not in seen:
            chunk = await process.stdout.receive_some()
            assert chunk, f"redis-server exited: {seen[-500:]!r}"
            seen += chunk
        self.process = process

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    async def publish_count(self) -> int:
        """How many PUBLISH commands it has run (INFO commandstats)."""
        async with redis_client(self.url) as client:
            stats = await client.info("commandstats")
        entry = stats.get("cmdstat_publish", {})
        return int(entry["calls"]) if isinstance(entry, dict) else 0

    async def command_calls(self) -> int:
        """How many commands it has run in all, those of scripts included."""
        async with redis_client(self.url) as client:
            stats = await client.info("commandstats")
        return sum(
            int(entry["calls"])
            for name, entry in stats.items()
            if name.startswith("cmdstat_") and isinstance(entry, dict)
        )

    async def flushall(self) -> None:
        """Empty it, as a Redis that restarted with nothing saved, its clients connected."""
        async with redis_client(self.url) as client:
            await client.flushall()

    async def pttl(self, key: str) -> int:
        """Milliseconds ``key`` has left (-2: no such key; -1: no expiry)."""
        async with redis_client(self.url) as client:
            return int(await client.pttl(key))

    async def kill(self) -> None:
        """kill -9, as a crash."""
        if self.process is not None:
            self.process.kill()
            await self.process.wait()
            assert self.process.stdout is not None
            await self.process.stdout.aclose()
            self.process = None


@asynccontextmanager
async def redis_server(persist: Path | None = None) -> AsyncIterator[RedisProcess]:
    redis = RedisProcess(free_port(), persist)
    await redis.start()
    try:
        yield redis
    finally:
        with trio.CancelScope(shield=True):
            if redis.process is not None:
                redis.resume()  # a paused one must be able to die
            await redis.kill()


class LogWatch(logging.Handler):
    """The records of one logger that contain ``text``, and a way to wait for them:
    what a test waits for when the code under test says it in its log (from trio tasks
    of the test's run)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.records: list[logging.LogRecord] = []
        self._changed = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.records.append(record)
            self._changed.set()
            self._changed = trio.Event()

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]

    async def wait(self, count: int = 1) -> None:
        """Return once ``count`` records were seen."""
        while len(self.records) < count:
            await self._changed.wait()


@contextmanager
def watch_log(logger: str, text: str) -> Iterator[LogWatch]:
    """Watch ``logger`` for records containing ``text`` while the block lasts."""
    watch = LogWatch(text)
    target = logging.getLogger(logger)
    target.addHandler(watch)
    try:
        yield watch
    finally:
        target.removeHandler(watch)


class RedisProxy:
    """A TCP proxy in front of a redis-server that can stop carrying bytes: the clients
    behind it are cut off from Redis (their commands wait, then time out), the others
    are not. What waited is carried on when it heals."""

    def __init__(self, upstream: int, listener: trio.SocketListener) -> None:
        self.upstream = upstream
        self.listener = listener
        port = listener.socket.getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}"
        self._open = trio.Event()
        self._open.set()

    def cut(self) -> None:
        """Stop carrying bytes, both ways."""
        self._open = trio.Event()

    def heal(self) -> None:
        """Carry bytes again, what waited first."""
        self._open.set()

    async def _pump(self, source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some():
                await self._open.wait()
                await sink.send_all(data)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await sink.aclose()

    async def _carry(self, client: trio.SocketStream) -> None:
        try:
            server = await trio.open_tcp_stream("127.0.0.1", self.upstream)
        except OSError:
            await client.aclose()
            return
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, server)
            nursery.start_soon(self._pump, server, client)


@asynccontextmanager
async def redis_proxy(redis: RedisProcess) -> AsyncIterator[RedisProxy]:
    """A :class:`RedisProxy` on a free loopback port in front of ``redis``."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    proxy = RedisProxy(redis.port, listener)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, proxy._carry, [listener])
        yield proxy
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def chat_node(
    url: str,
    host: str,
    *,
    lease: float = DEFAULT_LEASE,
    directory_url: str | None = None,
    history: int | None = None,
    **options: Any,
) -> AsyncIterator[tuple[ChatServer, TCPServer]]:
    """One chat server sharing its rooms through Redis at ``url`` (its directory through
    ``directory_url``, if given: a proxy), TCP on ``host``; with ``history``, its
    history in Redis streams (a :class:`RedisStore`), as ``chat serve --redis`` has."""
    async with (
        RedisHub(url) as hub,
        RedisDirectory(directory_url or url, lease=lease) as directory,
        contextlib.AsyncExitStack() as stack,
    ):
        if history is not None:
            options["store"] = await stack.enter_async_context(RedisStore(hub, history))
        chat = await stack.enter_async_context(
            ChatServer(hub, directory, rate=None, policy="block", **options)
        )
        nursery = await stack.enter_async_context(trio.open_nursery())
        await hub.wait_connected()
        server: TCPServer = await nursery.start(
            lambda task_status: serve_tcp(
                chat.serve_tcp_client, 0, host=host, grace_period=1, task_status=task_status
            )
        )
        yield chat, server
        nursery.cancel_scope.cancel()


async def chat_users(server: TCPServer, host: str, count: int) -> list[LineSocket]:
    """``count`` users of ``server``'s TCP listener on ``host``, each welcomed."""
    joined = []
    for _ in range(count):
        sock = trio.socket.socket()
        await sock.connect((host, server.port))
        user = LineSocket(sock)
        await user.read_until(b"welcome")
        joined.append(user)
    return joined
