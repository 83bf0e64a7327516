"""The reconnect storm's clients: chat members over TCP, WebSocket and UDP that drop and
resume, and talkers that keep the rooms busy (see benchmarks/soak/storm.py).

Each member keeps a :class:`Tally` of what it received: per sender, the numbers in the
order they came and the *generation* (how many drops came before) of each, its drops
(when its socket was closed, and how), and what the server told it it could not show.
Nothing is de-duplicated: a line the server gives twice is counted twice.

One connection is one task (:meth:`Client.connection`), started with ``nursery.start``;
it hands back a :class:`Conn` that the member's storm loop uses to ask for the drop, and
that says when the socket was closed. How each transport resumes:

- TCP: ``/resume TOKEN`` as the first line; the server resumes after the last line it
  handed to the old socket whole.
- WebSocket (id-aware): ``/ws?resume=1``, then a ``resume`` event with the token, the
  epoch and the last id seen of the room and of the direct messages.
- UDP: the same address (the member binds its old port again) validated again; the
  server resumes the session it detached when the address went silent.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import socket
import struct
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import connect as ws_connect

#: A numbered line: ``m NICK SEQ T_NS`` said in a room, ``d NICK SEQ T_NS`` sent directly.
LINE = re.compile(rb"\b([md]) ([a-z]+\d+[mt]\d+) (\d+) (\d+)")
#: An earlier line (a catch-up, on TCP and UDP): stamped with its time.
STAMPED = re.compile(rb"^\[\d\d:\d\d:\d\d\] ")
TOKEN = re.compile(rb"your resume token: ([A-Za-z0-9_-]{32}) ")
WELCOME_BACK = re.compile(r"welcome back, \S+: you were away \d+ s; (\d+) lines? came meanwhile")
#: What the server says it did not show of what the member missed.
NOT_SHOWN = re.compile(
    r"(\d+) (?:earlier )?(?:direct messages|lines of \S+) came while you were away"
)
JOIN_NOTICE = re.compile(rb"send (\^ok\^[0-9a-f]+) to join\n?")
#: The UDP hello: a heartbeat padded so that three times it pays for the join notice.
UDP_HELLO = b"^hb^".ljust(32)
UDP_RECEIVE_BUFFER = 1024 * 1024
#: Seconds between two UDP heartbeats (the server's expiry is a few times this).
UDP_BEAT = 0.5
#: The receive buffer of the TCP and WebSocket members on a "small window" (one in five):
#: the server's writes to them stop part-way more often, as on a slow link.
SMALL_RCVBUF = 4096


def now_ns() -> int:
    return time.monotonic_ns()


class Tally:
    """What one member received, and its drops."""

    def __init__(self) -> None:
        self.gen = 0  # connections closed so far
        self.rooms: dict[str, tuple[array[int], array[int]]] = {}  # sender -> (seqs, gens)
        self.dms: dict[str, tuple[array[int], array[int]]] = {}
        self.drops: list[tuple[int, str]] = []  # (closed at, ns; mode), one per generation end
        self.told = 0  # missed lines the server said it did not show
        self.resume_ms: list[float] = []
        self.counts: Counter[str] = Counter()  # resumes, refused, failed, closed_by_server...
        self.gave_up_ns: int | None = None  # a resume failed: nothing expected after this

    def add(self, table: dict[str, tuple[array[int], array[int]]], sender: str, seq: int) -> None:
        pair = table.get(sender)
        if pair is None:
            pair = table[sender] = (array("q"), array("l"))
        pair[0].append(seq)
        pair[1].append(self.gen)


class Run:
    """What the clients of one process share: the go, the deadline, the latency of live
    lines, when a numbered line last came."""

    def __init__(self, seed: int, expiry: float) -> None:
        self.rng = random.Random(seed)
        self.expiry = expiry
        self.go = trio.Event()
        self.deadline = float("inf")
        self.latency: Counter[float] = Counter()  # ms bucket -> live lines
        self.last_arrival = 0.0
        self.errors: list[str] = []

    def error(self, text: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(text)

    def live(self, stamp: int) -> None:
        ms = (now_ns() - stamp) / 1e6
        self.latency[round(ms, 1) if ms < 100 else float(round(ms))] += 1


@dataclass
class Conn:
    """One connection of a member: the storm asks for its drop through it."""

    mode: str = ""
    request: trio.Event = field(default_factory=trio.Event)
    reader_done: trio.Event = field(default_factory=trio.Event)
    closed: trio.Event = field(default_factory=trio.Event)
    armed: str = ""  # a drop to make right after the next talker's line (mid-burst)
    fired: bool = False  # the armed drop was asked for by the line just read
    stall: float = 0.0  # seconds it stops reading before the drop (a stalled link)

    def drop(self, mode: str) -> None:
        if not self.request.is_set():
            self.mode = mode
            self.request.set()


@dataclass
class Resuming:
    """A resume under way: when it began, what the server said so far."""

    began_ns: int
    welcomed: bool = False
    lines: int = 0
    refused: str = ""
    not_expired: bool = False  # UDP: back before the server expired it (no resume)
    greeted: trio.Event = field(default_factory=trio.Event)  # its new token (or hello) came
    done: trio.Event = field(default_factory=trio.Event)


class Client:
    """A chat user of one transport: a member that drops and resumes, or a talker."""

    kind = ""

    def __init__(self, nick: str, room: str, host: str, port: int, run: Run) -> None:
        self.nick, self.room = nick, room
        self.host, self.port = host, port
        self.run = run
        self.tally = Tally()
        self.joined = trio.Event()
        self.said: list[int] = []  # stamps of its numbered lines, by number
        self.pending: int | None = None  # its line whose echo has not come yet
        self.echoed = trio.Event()
        self.unconfirmed: list[int] = []
        self.resuming: Resuming | None = None
        self.conn: Conn | None = None
        self.attached = False
        self.small = False
        self.late = False  # reading after a stall: its lines' latency is its own doing

    # -- what comes in ----------------------------------------------------------------------

    def room_line(self, sender: str, seq: int, stamp: int, live: bool) -> None:
        if sender == self.nick:
            if self.pending == seq:
                self.pending = None
                self.echoed.set()
            return
        self.tally.add(self.tally.rooms, sender, seq)
        self.run.last_arrival = trio.current_time()
        if not live:
            self.tally.counts["caught_up"] += 1
        elif not self.late:
            self.run.live(stamp)
        conn = self.conn
        if conn is not None and conn.armed and sender.rstrip("0123456789").endswith("t"):
            conn.fired = not conn.request.is_set()
            conn.drop(conn.armed)  # mid-burst: right after a talker's line

    def direct(self, sender: str, seq: int, live: bool = True) -> None:
        self.tally.add(self.tally.dms, sender, seq)
        if not live:
            self.tally.counts["caught_up"] += 1
        self.run.last_arrival = trio.current_time()

    def notice(self, text: str) -> None:
        """A notice (``-!- ...`` on TCP and UDP, a ``notice`` event on WebSocket)."""
        if (told := NOT_SHOWN.search(text)) is not None:
            self.tally.told += int(told[1])
        resuming = self.resuming
        if resuming is None or resuming.done.is_set():
            return
        if (back := WELCOME_BACK.search(text)) is not None:
            resuming.welcomed = True
            resuming.lines = int(back[1])
            if self.kind != "tcp":  # its token came before (WebSocket) or it has none (UDP)
                resuming.greeted.set()
            if resuming.lines == 0:
                self.resumed()
        elif "refused" in text:
            resuming.refused = text
            resuming.greeted.set()
            resuming.done.set()
        elif text.startswith("end of earlier lines") and resuming.welcomed:
            self.resumed()

    def resumed(self) -> None:
        resuming = self.resuming
        assert resuming is not None
        if not resuming.done.is_set():
            if not resuming.not_expired:
                ms = round((now_ns() - resuming.began_ns) / 1e6, 1)
                self.tally.resume_ms.append(ms)
            resuming.greeted.set()
            resuming.done.set()

    def tcp_line(self, line: bytes) -> None:
        """One line as the TCP and UDP users get it."""
        live = True
        if STAMPED.match(line):
            line, live = line[11:], False
        if line.startswith(b"[#"):
            if (m := LINE.search(line)) is not None and m[1] == b"m":
                self.room_line(m[2].decode(), int(m[3]), int(m[4]), live)
        elif line.startswith(b"[dm from "):
            if (m := LINE.search(line)) is not None and m[1] == b"d":
                self.direct(m[2].decode(), int(m[3]), live)
        elif line.startswith(b"-!- "):
            if (token := TOKEN.search(line)) is not None:
                self.token = token[1]
                if self.resuming is not None and self.resuming.welcomed:
                    self.resuming.greeted.set()  # its new token, right after the welcome
            self.notice(line[4:].decode(errors="replace"))
        elif line == b"* %s joined %s" % (self.nick.encode(), self.room.encode()):
            self.joined.set()

    # -- what goes out ----------------------------------------------------------------------

    async def send(self, text: str) -> None:
        raise NotImplementedError

    async def send_lines(self, lines: list[str]) -> None:
        """Several lines at once (a talker's burst): one write where the transport can."""
        await self.send("\n".join(lines))

    async def say(self) -> None:
        """Say its next numbered line; its echo is waited for before a drop."""
        seq = len(self.said)
        stamp = now_ns()
        self.said.append(stamp)
        self.pending = seq
        self.echoed = trio.Event()
        await self.send(f"m {self.nick} {seq} {stamp}")

    async def confirmed(self, timeout: float = 10) -> None:
        """Until the server echoed its last line (so that the server took every line it
        said before it drops)."""
        if self.pending is None:
            return
        with trio.move_on_after(timeout):
            await self.echoed.wait()
        if self.pending is not None:
            self.run.error(f"{self.nick}: no echo of its line {self.pending} in {timeout} s")
            self.unconfirmed.append(self.pending)
            self.pending = None

    # -- connections ------------------------------------------------------------------------

    async def connection(
        self, resume: bool, task_status: trio.TaskStatus[Conn] = trio.TASK_STATUS_IGNORED
    ) -> None:
        raise NotImplementedError

    def closed(self, conn: Conn) -> None:
        """The connection's socket is closed: the next generation begins."""
        self.tally.drops.append((now_ns(), conn.mode))
        self.tally.gen += 1
        self.attached = False
        conn.closed.set()

    async def enter(self) -> None:
        """The first connection: a nick, a room, seen joining it."""
        self.conn = await self.nursery.start(self.connection, False)
        await self.send(f"/nick {self.nick}")
        await self.send(f"/join {self.room}")
        with trio.fail_after(120):
            await self.joined.wait()
        self.attached = True

    async def resume(self, early: bool = False) -> bool:
        """A new connection that takes the session back; whether it did. ``early``:
        return once it is granted (its new token told), before its catch-up ends."""
        self.resuming = resuming = Resuming(now_ns())
        try:
            with trio.fail_after(20):
                self.conn = await self.nursery.start(self.connection, True)
                await (resuming.greeted if early else resuming.done).wait()
        except Exception as exc:  # a refused connect, a handshake that failed, a timeout
            self.tally.counts["failed"] += 1
            self.run.error(f"{self.nick}: resume failed: {exc!r}")
            return False
        if resuming.refused:
            self.tally.counts["refused"] += 1
            self.run.error(f"{self.nick}: {resuming.refused}")
            return False
        if not resuming.not_expired:
            self.tally.counts["resumes"] += 1
        self.attached = True
        return True

    nursery: trio.Nursery
    token: bytes = b""


class TCPClient(Client):
    kind = "tcp"
    sock: trio.socket.SocketType
    rest = b""

    async def send(self, text: str) -> None:
        data = memoryview(text.encode() + b"\n")
        while data:
            data = data[await self.sock.send(data) :]

    async def connection(
        self, resume: bool, task_status: trio.TaskStatus[Conn] = trio.TASK_STATUS_IGNORED
    ) -> None:
        conn = Conn()
        sock = trio.socket.socket()
        if self.small:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
        try:
            await sock.connect((self.host, self.port))
            self.sock, self.rest, self.late = sock, b"", False
            if resume:
                await self.send(f"/resume {self.token.decode()}")
            async with trio.open_nursery() as inner:
                inner.start_soon(self._read, sock, conn)
                task_status.started(conn)
                await conn.request.wait()
                inner.cancel_scope.cancel()  # it reads no more (a mid-burst reader stopped)
            await trio.sleep(conn.stall)  # a stalled link: the server's writes pile up
            self.late = bool(conn.stall)
            if conn.mode.startswith("clean"):  # everything it was sent, then its close
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                with trio.move_on_after(10):
                    await self._read(sock, conn, to_the_end=True)
            elif conn.stall:
                self._read_now(sock, conn)  # what the kernel holds, and at once the reset
            if conn.mode.startswith("reset"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        finally:
            sock.close()
            if not conn.closed.is_set():
                self.closed(conn)

    async def _read(
        self, sock: trio.socket.SocketType, conn: Conn, to_the_end: bool = False
    ) -> None:
        while True:
            try:
                data = await sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                if not conn.request.is_set():
                    self.tally.counts["closed_by_server"] += 1
                    conn.drop("server")
                return
            if self._take(data, conn, stop=not to_the_end):
                return  # mid-burst: the rest of this read is lost with the socket

    def _read_now(self, sock: trio.socket.SocketType, conn: Conn) -> None:
        """Read what the kernel holds for it, without waiting."""
        while True:
            try:
                data = os.read(sock.fileno(), 65536)  # the socket is non-blocking
            except OSError:  # BlockingIOError: nothing more now
                return
            if not data:
                return
            self._take(data, conn, stop=False)

    def _take(self, data: bytes, conn: Conn, stop: bool) -> bool:
        """The whole lines of what was read; True when it stopped at the mid-burst drop
        the line just read asked for (the lines after it are lost with the socket)."""
        *lines, self.rest = (self.rest + data).split(b"\n")
        for line in lines:
            self.tcp_line(line)
            if stop and conn.fired and not conn.mode.startswith("clean"):
                return True
        return False


class WSClient(Client):
    kind = "ws"
    ws: Any = None

    def __init__(self, nick: str, room: str, host: str, port: int, run: Run) -> None:
        super().__init__(nick, room, host, port, run)
        self.epoch = ""
        self.last_id = 0  # of its room's lines
        self.last_direct = 0

    async def send(self, text: str) -> None:
        await self.ws.send(json.dumps({"type": "line", "text": text}))

    async def send_lines(self, lines: list[str]) -> None:
        await self.ws.send("\n".join(lines))  # plain text: each line as typed

    async def connection(
        self, resume: bool, task_status: trio.TaskStatus[Conn] = trio.TASK_STATUS_IGNORED
    ) -> None:
        conn = Conn()
        sock = trio.socket.socket()
        if self.small:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
        url = f"ws://{self.host}:{self.port}/ws" + ("?resume=1" if resume else "")
        self.late = False
        try:
            await sock.connect((self.host, self.port))
            connecting = ws_connect(
                url,
                stream=trio.SocketStream(sock),
                proxy=None,
                ping_interval=None,
                close_timeout=2,
                open_timeout=15,
            )
            with contextlib.suppress(ConnectionClosed, OSError, trio.BrokenResourceError):
                async with connecting as ws:
                    self.ws = ws
                    if resume:
                        after = {self.room: self.last_id, "direct": self.last_direct}
                        event = {"type": "resume", "token": self.token.decode(), "after": after}
                        await ws.send(json.dumps({**event, "epoch": self.epoch}))
                    async with trio.open_nursery() as inner:
                        inner.start_soon(self._read, ws, conn)
                        task_status.started(conn)
                        await conn.request.wait()
                        clean = conn.mode.startswith("clean")
                        if clean and not conn.stall:  # the closing handshake
                            with trio.move_on_after(5):
                                await ws.aclose()
                                await conn.reader_done.wait()
                        inner.cancel_scope.cancel()
                    if conn.stall:  # a stalled link: the server's writes pile up
                        await trio.sleep(conn.stall)
                        self.late = True
                        if clean:  # reading on while closing, or the close times out
                            async with trio.open_nursery() as closing:
                                closing.start_soon(self._read, ws, conn)
                                with trio.move_on_after(5):
                                    await ws.aclose()
                                closing.cancel_scope.cancel()
                    if conn.mode.startswith("reset"):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    sock.close()  # "cut": without the closing handshake
                    self.closed(conn)
        finally:
            sock.close()
            if not conn.closed.is_set():
                self.closed(conn)

    async def _read(self, ws: Any, conn: Conn) -> None:
        try:
            async for message in ws:
                for line in message.splitlines():
                    self.event(json.loads(line))
                    if conn.fired and not conn.mode.startswith("clean"):
                        return  # mid-burst: the rest is lost with the connection
        except ConnectionClosed:
            pass
        finally:
            conn.reader_done.set()
        if not conn.request.is_set():
            self.tally.counts["closed_by_server"] += 1
            conn.drop("server")

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind in ("message", "action") and event.get("room") == self.room:
            self.last_id = max(self.last_id, int(event["id"]))
            if (m := LINE.search(event["text"].encode())) is not None and m[1] == b"m":
                self.room_line(m[2].decode(), int(m[3]), int(m[4]), not event.get("history"))
        elif kind == "direct" and event.get("recipient") == self.nick:
            self.last_direct = max(self.last_direct, int(event["id"]))
            if (m := LINE.search(event["text"].encode())) is not None and m[1] == b"d":
                self.direct(m[2].decode(), int(m[3]), not event.get("history"))
        elif kind == "hello":
            self.token = event["token"].encode()
            self.epoch = event["epoch"]
        elif kind == "notice":
            self.notice(event["text"])
        elif kind == "history_end" and self.resuming is not None and self.resuming.welcomed:
            self.resumed()
        elif kind == "joined" and event.get("nick") == self.nick and event["room"] == self.room:
            self.joined.set()


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped for the local UDP socket on ``port`` (its receive
    buffer was full), from /proc/net/udp."""
    suffix = f":{port:04X}"
    with contextlib.suppress(OSError), open("/proc/net/udp") as table:
        for row in table.readlines()[1:]:
            fields = row.split()
            if fields[1].endswith(suffix):
                return int(fields[-1])
    return 0


class UDPClient(Client):
    kind = "udp"
    sock: trio.socket.SocketType
    local_port = 0

    async def send(self, text: str) -> None:
        await self.sock.send(text.encode())

    async def send_lines(self, lines: list[str]) -> None:
        for line in lines:  # a datagram is a line
            await self.send(line)

    async def connection(
        self, resume: bool, task_status: trio.TaskStatus[Conn] = trio.TASK_STATUS_IGNORED
    ) -> None:
        conn = Conn()
        sock = trio.socket.socket(type=socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        try:
            await self._bind(sock)
            await sock.connect((self.host, self.port))
            self.sock = sock
            validated = trio.Event()
            async with trio.open_nursery() as inner:
                inner.start_soon(self._read, sock, validated)
                inner.start_soon(self._beat, sock, validated)
                with trio.fail_after(20):
                    await validated.wait()
                task_status.started(conn)
                await conn.request.wait()
                inner.cancel_scope.cancel()
            self.tally.counts["kernel_drops"] += udp_drops(self.local_port)
        finally:
            sock.close()
            if not conn.closed.is_set():
                self.closed(conn)

    async def _bind(self, sock: trio.socket.SocketType) -> None:
        """Its own port again (its address is how it resumes); the first time a port
        below the kernel's ephemeral range, so that no other socket is given it."""
        if self.local_port:
            await sock.bind(("127.0.0.1", self.local_port))
            return
        for _ in range(200):
            port = self.run.rng.randrange(20000, 32000)
            try:
                await sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            self.local_port = port
            return
        raise OSError("no free UDP port")

    async def _beat(self, sock: trio.socket.SocketType, validated: trio.Event) -> None:
        """The padded hello until validated (again each second: a notice may be lost),
        then a heartbeat every UDP_BEAT seconds."""
        while not validated.is_set():
            await sock.send(UDP_HELLO)
            with trio.move_on_after(1):
                await validated.wait()
        while True:
            await sock.send(b"^hb^")
            await trio.sleep(UDP_BEAT)

    async def _read(self, sock: trio.socket.SocketType, validated: trio.Event) -> None:
        while True:
            data = await sock.recv(65536)
            if (notice := JOIN_NOTICE.fullmatch(data)) is not None:
                await sock.send(notice[1])
                if validated.is_set():  # expired while it was here: resumed by its address
                    self.tally.counts["unplanned_resumes"] += 1
                validated.set()
                continue
            if not validated.is_set() and LINE.search(data):
                # the server had not expired it yet: the same session, no resume
                self.tally.counts["returned_before_expiry"] += 1
                validated.set()
                if self.resuming is not None:
                    self.resuming.not_expired = True
                    self.resumed()
            for line in data.split(b"\n"):
                if line:
                    self.tcp_line(line)
