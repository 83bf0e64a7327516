"""The cluster's resume, as a user sees it: two servers of two workers each through one
Redis; WebSocket clients and ``chat join`` clients on the first, a sender on the second.
The first server is killed (``kill -9``, its workers with it) while the sender talks:
every client reconnects to the other server, resumes, and ends with every line exactly
once and in order (ids checked per WebSocket client). And a Redis with its data
(``appendonly yes``) killed and restarted under the same load: nothing lost, nothing
twice.

Real time (Redis's leases), each test under an absolute guard.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import connect

from .chattools import LineReader, LineSocket
from .clitools import PYTHON, Supervisor, supervisor
from .conftest import GUARD
from .redistools import chat_node, redis_server

pytest.importorskip("coredis")

SAID = re.compile(rb"sender: n (\d+)$")
#: Lines the sender says, a few a second over the kill.
LINES = 150


class WebClient:
    """A WebSocket client that counts ids: it resumes after the last one it saw."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.numbers: list[int] = []
        self.ids: list[int] = []
        self.token = ""
        self.epoch = ""
        self.welcomed = trio.Event()
        self.done = trio.Event()  # it got the last line
        self.resumes = 0

    async def run(self) -> None:
        for port in self.ports:  # the first server, then (once it is gone) the other
            while True:
                try:
                    await self._visit(port)
                    return
                except (ConnectionClosed, OSError, trio.BrokenResourceError):
                    if port == self.ports[0]:
                        break  # its server died: the next one
                    await trio.sleep(0.2)  # the other server is busy: again

    async def _visit(self, port: int) -> None:
        query = "?resume=1" if self.token else ""
        async with connect(f"ws://127.0.0.1:{port}/ws{query}") as ws:
            if self.token:
                after = {"#lobby": self.ids[-1]} if self.ids else {}
                request = {"type": "resume", "token": self.token, "after": after}
                await ws.send(json.dumps({**request, "epoch": self.epoch}))
                self.resumes += 1
            while not self.numbers or self.numbers[-1] < LINES:
                message = await ws.recv()
                assert isinstance(message, str)
                for line in message.splitlines():
                    self._take(json.loads(line))
        self.done.set()

    def _take(self, event: dict[str, Any]) -> None:
        if event["type"] == "hello":
            self.token, self.epoch = event["token"], event["epoch"]
            self.welcomed.set()
        elif event["type"] == "message" and event["sender"] == "sender":
            self.numbers.append(int(event["text"].split()[1]))
            self.ids.append(event["id"])


class JoinClient(LineReader):
    """``chat join A B`` as a filter: what it prints."""

    def __init__(self, process: trio.Process) -> None:
        super().__init__()
        self.process = process

    async def receive(self) -> bytes:
        assert self.process.stdout is not None
        return bytes(await self.process.stdout.receive_some())

    def numbers(self) -> list[int]:
        return [int(m[1]) for line in self.lines if (m := SAID.search(line))]


async def _join(addresses: list[str], stack: contextlib.AsyncExitStack) -> JoinClient:
    process = await trio.lowlevel.open_process(
        [PYTHON, "-m", "triosock", "chat", "join", *addresses],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )

    async def stop() -> None:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()

    stack.push_async_callback(stop)
    return JoinClient(process)


async def _until_all(client: JoinClient) -> None:
    while LINES not in client.numbers():
        assert await client.read_some() or not client.eof, client.lines[-5:]


def _cluster_args(redis: str) -> list[str]:
    return ["chat", "serve", "--workers", "2", "--redis", redis, "--udp", "none"]


async def test_a_killed_server_s_clients_resume_on_the_other_every_line_once_in_order() -> None:
    web, joins = 100, 100
    listen = ["--tcp", "127.0.0.1:0", "--web", "127.0.0.1:0"]
    with trio.fail_after(GUARD * 4):
        async with (
            redis_server() as redis,
            supervisor([*_cluster_args(redis.url), *listen]) as first,
            supervisor([*_cluster_args(redis.url), *listen]) as second,
            contextlib.AsyncExitStack() as stack,
            trio.open_nursery() as nursery,
        ):
            ports = [await _port(s, "web") for s in (first, second)]
            webs = [WebClient(ports) for _ in range(web)]
            for ws in webs:
                nursery.start_soon(ws.run)
            addresses = [f"127.0.0.1:{await _port(s, 'chat (tcp)')}" for s in (first, second)]
            joined = [await _join(addresses, stack) for _ in range(joins)]
            for ws in webs:
                await ws.welcomed.wait()
            for client in joined:
                await client.read_until(b"welcome")
            sender = await LineSocket.connect(await _port(second, "chat (tcp)"))
            await sender.send(b"/nick sender\n")
            await sender.read_until(b"is now known as sender")
            for i in range(1, LINES + 1):
                await sender.send(b"n %d\n" % i)
                if i == LINES // 3:
                    _kill(first)
                await trio.sleep(0.04)  # a steady sender: 25 lines a second
            for client in joined:
                await _until_all(client)
            for ws in webs:
                await ws.done.wait()
            everything = list(range(1, LINES + 1))
            for ws in webs:
                assert ws.numbers == everything
                assert ws.ids == list(range(ws.ids[0], ws.ids[0] + LINES))
                assert ws.resumes >= 1
            for client in joined:
                assert client.numbers() == everything, client.lines[-5:]
            sender.close()


def _kill(sup: Supervisor) -> None:
    """kill -9 the workers and their supervisor, at once: a crash, no goodbye (a
    supervisor killed alone has its workers stop gracefully)."""
    for pid in [*sup.pids(), sup.process.pid]:
        os.kill(pid, signal.SIGKILL)


async def _port(sup: Supervisor, label: str) -> int:
    """The port of a listener of ``sup``, once its start-up line is out."""
    await sup.wait_until(
        lambda: re.search(re.escape(label).encode() + rb".*:\d+", sup.out) is not None
    )
    return sup.port(label)


async def test_redis_with_its_data_killed_and_restarted_loses_nothing(tmp_path: Path) -> None:
    with trio.fail_after(GUARD * 2):
        async with (
            redis_server(tmp_path) as redis,
            chat_node(redis.url, "127.0.0.2", history=1000) as (_, a),
            chat_node(redis.url, "127.0.0.3", history=1000) as (_, b),
        ):
            here = [await _tagged(a.port, "127.0.0.2") for _ in range(5)]
            there = [await _tagged(b.port, "127.0.0.3") for _ in range(5)]
            sender = await LineSocket.connect(b.port, host="127.0.0.3")
            await sender.send(b"/nick sender\n")
            for user in [*here, *there]:
                await user.read_until(b"is now known as sender")
            for i in range(1, LINES + 1):
                await sender.send(b"n %d\n" % i)
                if i == LINES // 3:
                    await redis.kill()
                if i == LINES // 2:
                    await redis.start()  # the same port, its append-only file read back
                await trio.sleep(0.02)
            for user in [*here, *there]:
                await user.read_until(b"sender: n %d" % LINES)
                said = [m for line in user.lines if (m := re.match(rb"@id=(\d+);.*n (\d+)$", line))]
                assert [int(m[2]) for m in said] == list(range(1, LINES + 1))
                ids = [int(m[1]) for m in said]
                assert ids == list(range(ids[0], ids[0] + LINES))  # the epoch kept
                assert not any(b"history was reset" in line for line in user.lines)
            for user in [*here, *there, sender]:
                user.close()


async def _tagged(port: int, host: str) -> LineSocket:
    user = await LineSocket.connect(port, host=host)
    await user.send(b"/tags on\n")
    await user.read_until(b"@epoch=")
    return user
