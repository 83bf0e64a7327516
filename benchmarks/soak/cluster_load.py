"""One load process of the cluster-faults soak: chat members over TCP, spread over the
servers, saying numbered lines until told to stop.

``python -m benchmarks.soak.cluster_load --process P --servers HOST:PORT,HOST:PORT
--members N --rooms R --interval S`` connects its N members (``c<P>m<i>``; member ``i``
is number ``P * N + i`` of the run, in room ``#r`` + number modulo R, and on server
(number // R) modulo the number of servers, so that every room has members on every
server), each to its room, and prints ``ready`` and a JSON object (each nick's guest name
from its welcome line, which the servers' logs tie to a worker, and its server). On
``go`` (stdin) each member says ``m NICK SEQ T_NS`` every S seconds (a random phase)
until ``stop``; it reads all the while, and ``--drain`` seconds after ``stop`` it closes.
It then prints one JSON object: each member's send times (by number), the numbers it
got from each sender with their latency, the notices and leave lines it saw and when,
whether and when the server closed it, and its errors. Times are CLOCK_MONOTONIC
nanoseconds, which the processes share.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import defaultdict
from typing import Any

import trio

from .chat_load import TCPMember, close_all

LINE = re.compile(rb"\bm (c\d+m\d+) (\d+) (\d+)")
WELCOME = re.compile(rb"welcome to triosock chat, (\S+);")
LEFT = re.compile(rb"^\* (\S+) left (#\S+)")


def placement(process: int, members: int, rooms: int, servers: int) -> list[tuple[str, str, int]]:
    """Each of a load process's members: nick, room, server index."""
    placed = []
    for i in range(members):
        number = process * members + i
        placed.append((f"c{process}m{i}", f"#r{number % rooms}", (number // rooms) % servers))
    return placed


class ClusterMember(TCPMember):
    """A TCP member that keeps, with times, what the cluster soak needs."""

    def __init__(self, nick: str, room: str, stream: trio.SocketStream, server: int) -> None:
        super().__init__(nick, room, stream)
        self.server = server
        self.guest = ""
        self.welcomed = trio.Event()
        self.got_lines: dict[str, list[list[int]]] = defaultdict(list)  # sender -> [seq, µs]
        self.said_at: list[int] = []  # the send time of each number
        self.notices: list[tuple[str, int]] = []  # ("degraded" | "back", ns)
        self.left: dict[str, int] = {}  # nick -> when first heard leaving this room
        self.closed_at = 0
        self.send_error: tuple[int, str] | None = None

    def seen(self, data: bytes) -> None:
        now = time.monotonic_ns()
        data = data.rstrip(b"\r")
        said = LINE.search(data)
        if said is not None:
            sender = said.group(1).decode()
            if sender != self.nick:
                latency_us = (now - int(said.group(3))) // 1000
                self.got_lines[sender].append([int(said.group(2)), latency_us])
            return
        left = LEFT.match(data)
        if left is not None:
            if left.group(2).decode() == self.room:
                self.left.setdefault(left.group(1).decode(), now)
            return
        if data.startswith(b"-!- "):
            if b"rooms are degraded" in data:
                self.notices.append(("degraded", now))
            elif b"rooms are back" in data:
                self.notices.append(("back", now))
            elif (welcome := WELCOME.search(data)) is not None:
                self.guest = welcome.group(1).decode()
                self.welcomed.set()
            return
        if (
            not self.joined.is_set()
            and data.startswith(b"* ")
            and data.endswith(b" joined " + self.room.encode())
            and self.nick.encode() in data
        ):
            self.joined.set()

    def report(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "server": self.server,
            "guest": self.guest,
            "said_at": self.said_at,
            "got": dict(self.got_lines),
            "notices": self.notices,
            "left": self.left,
            "closed_at": self.closed_at,
            "send_error": self.send_error,
        }


async def run_member(
    host: str,
    port: int,
    nick: str,
    room: str,
    server: int,
    *,
    task_status: trio.TaskStatus[ClusterMember] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Connect one member, hand it over (``nursery.start``), and read until cancelled."""
    stream = await trio.open_tcp_stream(host, port)
    member = ClusterMember(nick, room, stream, server)
    task_status.started(member)
    await member.read_forever()
    if member.closed_by_server:
        member.closed_at = time.monotonic_ns()


async def speak(member: ClusterMember, interval: float, stop: trio.Event) -> None:
    await trio.sleep(random.random() * interval)
    seq = 0
    while not stop.is_set():
        now = time.monotonic_ns()
        try:
            await member.send(f"m {member.nick} {seq} {now}")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            member.send_error = (time.monotonic_ns(), repr(exc))
            return
        member.said_at.append(now)
        seq += 1
        await trio.sleep(interval)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    servers = []
    for address in args.servers.split(","):
        host, _, port = address.rpartition(":")
        servers.append((host, int(port)))
    mine = placement(args.process, args.members, args.rooms, len(servers))
    members: list[ClusterMember] = []
    errors: list[str] = []
    async with trio.open_nursery() as nursery:
        limiter = trio.CapacityLimiter(20)  # connects at once

        async def join(nick: str, room: str, server: int) -> None:
            async with limiter:
                host, port = servers[server]
                member: ClusterMember = await nursery.start(
                    run_member, host, port, nick, room, server
                )
                members.append(member)
                with trio.fail_after(60):
                    await member.welcomed.wait()
                    await member.send(f"/nick {nick}")
                    await member.send(f"/join {room}")
                    await member.joined.wait()

        async with trio.open_nursery() as joining:
            for nick, room, server in mine:
                joining.start_soon(join, nick, room, server)
        who = {m.nick: [m.guest, m.server] for m in members}
        print("ready " + json.dumps(who), flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        assert line.strip() == "go", line
        stop = trio.Event()
        async with trio.open_nursery() as speaking:
            for member in members:
                speaking.start_soon(speak, member, args.interval, stop)
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            assert line.strip() == "stop", line
            stop.set()
        await trio.sleep(args.drain)
        await close_all(members, errors)
        nursery.cancel_scope.cancel()
    return {
        "process": args.process,
        "members": {m.nick: m.report() for m in members},
        "errors": errors,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--process", type=int, default=0)
    parser.add_argument("--servers", required=True, help="HOST:PORT,HOST:PORT")
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument("--rooms", type=int, required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--drain", type=float, default=3.0)
    result = trio.run(main, parser.parse_args())
    print(json.dumps(result), flush=True)
