"""One load process of the chat soak: many chat members of one transport, as users.

``python -m benchmarks.soak.chat_load --kind tcp|udp|ws --address HOST:PORT --process I
--roster SPEC ...`` connects its share of the roster's members, each to its room, prints
``ready`` when all have joined, waits for ``go`` on stdin, and then each member says
``--messages`` numbered lines ``m NICK SEQ T_NS`` at ``--interval`` seconds (with a
random phase), reads everything, and after the last line waits at least ``--drain``
seconds, and then until no numbered line has reached any of its members for ``--quiet``
seconds (at most ``--drain-cap`` seconds in all): the other processes' members may still
be speaking, and the server may be running behind. It prints one JSON object: for
every sender in the receiver's room, the numbers received, and the delivery latencies
(CLOCK_MONOTONIC is shared by processes).

The roster (``tcp:2x250,udp:1x200,ws:2x150``) says how many load processes each kind has
and how many members each; every process can thus name every member (``tcp0m17``) and
its room (``#r`` + member index modulo ``--rooms``) without talking to the others.

Members listed in ``--stop-reading`` (indices in this process) stop reading after
``go``: with the default policy the server disconnects them, and only they may lose.
``--churn N`` adds N members (not in the roster) that, during the run, join other rooms,
leave, change nick and send direct messages (``d CHURN SEQ``) to roster members; the
direct messages are counted like room lines.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from functools import partial
from typing import Any

import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import connect as ws_connect

LINE = re.compile(rb"\b([md]) ([a-z]+\d+[mc]\d+) (\d+) (\d+)")
#: An earlier line the server shows again (on entering a room, a resume): not a delivery.
#: TCP and UDP: stamped with its time; WebSocket: an event with the history flag.
EARLIER = re.compile(rb'^\[\d\d:\d\d:\d\d\] |"history":true')
HEARTBEAT_EVERY = 3.0
#: The UDP hello: a heartbeat padded so that three times it pays for the server's join
#: notice (the server sends an address it has not validated at most 3x what it got).
UDP_HELLO = b"^hb^".ljust(32)
#: The server's join notice to a new UDP address, and the token to send back.
JOIN_NOTICE = re.compile(rb"send (\^ok\^[0-9a-f]+) to join\n?")


def roster(spec: str, rooms: int) -> dict[str, str]:
    """Every roster member's nick and room."""
    members: dict[str, str] = {}
    for part in spec.split(","):
        kind, _, shape = part.partition(":")
        processes, _, each = shape.partition("x")
        for proc in range(int(processes)):
            for i in range(int(each)):
                members[f"{kind}{proc}m{i}"] = f"#r{i % rooms}"
    return members


class Latency:
    """Delivery latencies, as a histogram per second since ``go`` (0.1 ms buckets under
    100 ms, 1 ms above): small enough to print, enough for p50/p99 and a plot."""

    def __init__(self, started_ns: int) -> None:
        self.started_ns = started_ns
        self.seconds: dict[int, Counter[float]] = defaultdict(Counter)

    def add(self, ns: int) -> None:
        ms = ns / 1e6
        second = (time.monotonic_ns() - self.started_ns) // 1_000_000_000
        self.seconds[int(second)][round(ms, 1) if ms < 100 else float(round(ms))] += 1


#: Bytes of receive buffer for each UDP member's socket.
UDP_RECEIVE_BUFFER = 1024 * 1024
#: When a numbered line last reached a member of this process (trio's clock).
LAST_ARRIVAL = [0.0]


async def drain(minimum: float, quiet: float, cap: float) -> float:
    """Wait ``minimum`` seconds, then until nothing arrived for ``quiet`` (``cap`` in
    all); the seconds it waited."""
    start = trio.current_time()
    await trio.sleep(minimum)
    while (now := trio.current_time()) - start < cap:
        idle = now - LAST_ARRIVAL[0]
        if idle >= quiet:
            break
        await trio.sleep(min(quiet - idle, cap - (now - start)))
    return trio.current_time() - start


class Member:
    """One connection, the same interface for every transport: send a line, lines in."""

    def __init__(self, nick: str, room: str) -> None:
        self.nick, self.room = nick, room
        self.got: dict[str, list[int]] = defaultdict(list)  # sender -> seqs received
        self.dms: dict[str, list[int]] = defaultdict(list)
        self.latency: Latency | None = None
        self.error = ""
        self.closed_by_server = False
        self.joined = trio.Event()
        self.reading = True
        self.closing = False  # we are closing it: its end is not the server's doing
        self.said = 0

    def seen(self, data: bytes) -> None:
        """What one read gave: whole lines (a TCP line, a datagram, a WebSocket message
        of JSON lines)."""
        data = b"\n".join(line for line in data.split(b"\n") if not EARLIER.search(line))
        if (
            not self.joined.is_set()
            and b"joined" in data
            and self.room.encode() in data
            and self.nick.encode() in data
        ):
            self.joined.set()
        for kind, sender, seq, stamp in LINE.findall(data):
            LAST_ARRIVAL[0] = trio.current_time()
            name = sender.decode()
            if kind == b"m":
                if name != self.nick:
                    self.got[name].append(int(seq))
                    if self.latency is not None:
                        self.latency.add(time.monotonic_ns() - int(stamp))
            else:
                self.dms[name].append(int(seq))

    async def send(self, text: str) -> None:
        raise NotImplementedError

    async def enter(self, timeout: float = 60) -> None:
        """Take its nick, go to its room, and wait to see itself join there."""
        await self.send(f"/nick {self.nick}")
        await self.send(f"/join {self.room}")
        with trio.fail_after(timeout):
            await self.joined.wait()

    async def read_forever(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class TCPMember(Member):
    def __init__(self, nick: str, room: str, stream: trio.SocketStream) -> None:
        super().__init__(nick, room)
        self.stream = stream

    async def send(self, text: str) -> None:
        await self.stream.send_all(text.encode() + b"\n")

    async def read_forever(self) -> None:
        rest = b""
        while True:
            if not self.reading:
                await trio.sleep_forever()
            try:
                data = await self.stream.receive_some(65536)
            except trio.ClosedResourceError:
                return  # we closed it
            except trio.BrokenResourceError:
                data = b""  # reset by the server
            if not data:
                self.closed_by_server = not self.closing
                return
            *lines, rest = (rest + data).split(b"\n")
            for line in lines:
                self.seen(line)

    async def close(self) -> None:
        await self.stream.aclose()


async def validate_address(sock: trio.socket.SocketType) -> None:
    """Validate a UDP member's address as ``chat join --udp`` does: a padded heartbeat
    (three times it pays for the server's join notice), then the notice's token back."""
    await sock.send(UDP_HELLO)
    while (notice := JOIN_NOTICE.fullmatch(await sock.recv(65536))) is None:
        pass
    await sock.send(notice[1])


class UDPMember(Member):
    def __init__(self, nick: str, room: str, sock: trio.socket.SocketType) -> None:
        super().__init__(nick, room)
        self.sock = sock

    async def send(self, text: str) -> None:
        await self.sock.send(text.encode())

    async def read_forever(self) -> None:
        with contextlib.suppress(trio.ClosedResourceError):  # we closed it
            while True:
                self.seen(await self.sock.recv(65536))

    async def heartbeat(self) -> None:
        while True:
            await self.sock.send(b"^hb^")
            await trio.sleep(HEARTBEAT_EVERY)

    async def close(self) -> None:
        """Say ``quit`` (the socket is closed once its tasks are done)."""
        await self.sock.send(b"quit")


class WSMember(Member):
    def __init__(self, nick: str, room: str, ws: Any) -> None:
        super().__init__(nick, room)
        self.ws = ws

    async def send(self, text: str) -> None:
        await self.ws.send(json.dumps({"type": "line", "text": text}))

    async def read_forever(self) -> None:
        try:
            async for message in self.ws:
                self.seen(message.encode() if isinstance(message, str) else message)
        except ConnectionClosed:
            pass
        self.closed_by_server = not self.closing

    async def close(self) -> None:
        await self.ws.aclose()


async def close_all(members: Sequence[Member], errors: list[str]) -> None:
    """Close every member (2 s each at most); a failed close is an error, not fatal."""
    for member in members:
        member.closing = True
        with trio.move_on_after(2):
            try:
                await member.close()
            except Exception as exc:
                errors.append(f"{member.nick} close: {exc!r}")


async def run_member(
    kind: str,
    host: str,
    port: int,
    nick: str,
    room: str,
    *,
    small: bool = False,
    task_status: trio.TaskStatus[Member] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Connect one member, hand it over (``nursery.start``), and read until cancelled."""
    member: Member
    if kind == "ws":
        async with ws_connect(f"ws://{host}:{port}/ws", proxy=None) as ws:
            member = WSMember(nick, room, ws)
            task_status.started(member)
            await member.read_forever()
        return
    if kind == "tcp":
        sock = trio.socket.socket()
        if small:  # one that will stop reading: a small window, so the server sees it soon
            sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
        await sock.connect((host, port))
        member = TCPMember(nick, room, trio.SocketStream(sock))
        task_status.started(member)
        await member.read_forever()
        return
    sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    # 200 members in one Python process fall behind the server at times: room for a few
    # seconds of lines, so that the kernel does not drop them at this end (a UDP user's
    # client would do the same, or lose them).
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    await sock.connect((host, port))
    await validate_address(sock)
    udp = UDPMember(nick, room, sock)
    task_status.started(udp)
    with sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(udp.heartbeat)
            await udp.read_forever()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    host, _, port_text = args.address.rpartition(":")
    port = int(port_text)
    everyone = roster(args.roster, args.rooms)
    prefix = f"{args.kind}{args.process}m"
    mine = [(n, r) for n, r in everyone.items() if n.startswith(prefix)]
    stop_reading = {int(i) for i in args.stop_reading.split(",") if i}
    members: list[Member] = []
    errors: list[str] = []
    sent = 0
    dm_sent: dict[str, dict[str, list[int]]] = {}
    latency = Latency(time.monotonic_ns())
    async with trio.open_nursery() as nursery:
        limiter = trio.CapacityLimiter(50)  # connects at once

        async def join(nick: str, room: str) -> None:
            async with limiter:
                small = int(nick.split("m")[-1]) in stop_reading
                member: Member = await nursery.start(
                    partial(run_member, args.kind, host, port, nick, room, small=small)
                )
                members.append(member)
                await member.enter()

        async with trio.open_nursery() as joining:
            for nick, room in mine:
                joining.start_soon(join, nick, room)
        churners = []
        for c in range(args.churn):
            nick = f"{args.kind}{args.process}c{c}"
            member = await nursery.start(partial(run_member, args.kind, host, port, nick, "#lobby"))
            await member.send(f"/nick {nick}")
            churners.append(member)
        print("ready", flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        assert line.strip() == "go", line
        latency = Latency(time.monotonic_ns())
        for member in members:
            member.latency = latency
        by_index = {m.nick: m for m in members}
        for index in stop_reading:
            stopped = by_index.get(f"{prefix}{index}")
            if stopped is not None:
                stopped.reading = False

        async def speak(member: Member) -> None:
            nonlocal sent
            await trio.sleep(random.random() * args.interval)
            for seq in range(args.messages):
                try:
                    await member.send(f"m {member.nick} {seq} {time.monotonic_ns()}{padding}")
                    sent += 1
                    member.said += 1
                except (trio.BrokenResourceError, OSError, ConnectionClosed) as exc:
                    if member.reading:
                        errors.append(f"{member.nick}: {exc!r}")
                    return
                await trio.sleep(args.interval)

        targets = list(everyone)
        padding = " " + "p" * args.pad if args.pad else ""

        async def churn(member: Member) -> None:
            dm_sent[member.nick] = defaultdict(list)
            rounds = max(1, int(args.messages * args.interval / 2))
            for seq in range(rounds):
                target = random.choice(targets)
                await member.send(f"/msg {target} d {member.nick} {seq} {time.monotonic_ns()}")
                dm_sent[member.nick][target].append(seq)
                await member.send(f"/join #churn{seq % 3}")
                await member.send("c passing through")
                await member.send(f"/nick {member.nick}x")
                await member.send(f"/nick {member.nick}")
                await member.send("/join #lobby")
                await trio.sleep(2)

        async with trio.open_nursery() as speaking:
            for member in members:
                speaking.start_soon(speak, member)
            for member in churners:
                speaking.start_soon(churn, member)
        drained = await drain(args.drain, args.quiet, args.drain_cap)
        await close_all([*members, *churners], errors)
        nursery.cancel_scope.cancel()
    return {
        "kind": args.kind,
        "process": args.process,
        "sent": sent,
        "sent_by": {m.nick: m.said for m in members},
        # receiver -> sender -> [lines, distinct numbers, numbers below one seen before]
        "received": {
            m.nick: {sender: _summary(seqs) for sender, seqs in m.got.items()} for m in members
        },
        "dms_received": {
            m.nick: {sender: seqs for sender, seqs in m.dms.items()} for m in members if m.dms
        },
        "dms_sent": dm_sent,
        "stopped_reading": [m.nick for m in members if not m.reading],
        "closed_by_server": [m.nick for m in members if m.closed_by_server],
        "latency": {str(k): dict(v) for k, v in latency.seconds.items()},
        "errors": errors,
        "drained_s": round(drained, 1),
    }


def _summary(seqs: list[int]) -> list[int]:
    reordered = sum(1 for a, b in itertools.pairwise(seqs) if b < a)
    return [len(seqs), len(set(seqs)), reordered]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=["tcp", "udp", "ws"], required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--process", type=int, default=0)
    parser.add_argument("--roster", required=True)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--quiet", type=float, default=3.0)
    parser.add_argument("--drain-cap", type=float, default=60.0)
    parser.add_argument("--stop-reading", default="")
    parser.add_argument("--churn", type=int, default=0)
    parser.add_argument("--pad", type=int, default=0, help="bytes added to each line")
    result = trio.run(main, parser.parse_args())
    print(json.dumps(result), flush=True)
