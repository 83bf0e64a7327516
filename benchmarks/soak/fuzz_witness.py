"""The witnesses of the fuzz soak: ordinary peers that must not notice the junk.

``python -m benchmarks.soak.fuzz_witness --ports JSON --seconds S --interval I`` prints
``ready`` once its peers are connected (and, for the chat, in #lobby), waits for ``go``,
then for S seconds each peer does its exchange every I seconds and checks the answer:

* ``chat-tcp`` and ``chat-ws``: a TCP member and a WebSocket member in #lobby say
  numbered lines ``w NICK SEQ T_NS``; each must get all of the other's, once, in order
  (and every line the TCP member reads, the junk others said included, must be UTF-8).
* ``echo-tcp`` / ``echo-udp``: a numbered line / datagram must come back the same.
* ``sntp``: a client request must get a mode-4 reply to it, its time within 5 s.
* ``strftime-udp`` / ``strftime-tcp``: ``%Y`` must come back as the year.
* ``rfc868-tcp``: a connection must get the time within 5 s; ``http``: ``GET /`` on one
  keep-alive connection must get 200 and ``hello world``.

It prints one JSON object: per witness, sent, answered right, lost, wrong, duplicated,
reordered, and the latency histogram (ms) of the right answers.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import connect as ws_connect

HOST = "127.0.0.1"
ANSWER_WITHIN = 5.0  # seconds an answer may take before it counts as lost
LINE = re.compile(rb"\bw (wtcp|wws) (\d+) (\d+)")
NTP_EPOCH = 2_208_988_800


class Witness:
    def __init__(self) -> None:
        self.sent = 0
        self.right = 0
        self.lost = 0
        self.wrong: list[str] = []
        self.duplicated = 0
        self.reordered = 0
        self.errors: list[str] = []
        self.latency: Counter[float] = Counter()

    def ok(self, seconds: float) -> None:
        self.right += 1
        ms = seconds * 1000
        self.latency[round(ms, 1) if ms < 100 else float(round(ms))] += 1

    def bad(self, text: str) -> None:
        if len(self.wrong) < 10:
            self.wrong.append(text[:200])

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "right": self.right,
            "lost": self.lost,
            "wrong": self.wrong,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "errors": self.errors,
            "latency": {str(k): v for k, v in self.latency.items()},
        }


class ChatMember:
    """One of the two chat witnesses: what it said, what it got from the other."""

    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.witness = Witness()
        self.got: list[int] = []
        self.joined = trio.Event()

    def seen(self, data: bytes) -> None:
        # A new member is in #lobby already: "/join #lobby" (said after "/nick") says so.
        if b"#lobby already" in data:
            self.joined.set()
        for sender, seq, stamp in LINE.findall(data):
            if sender.decode() != self.nick:
                self.got.append(int(seq))
                self.witness.ok((time.monotonic_ns() - int(stamp)) / 1e9)


async def chat_witnesses(
    ports: dict[str, int], args: argparse.Namespace, ready: Callable[[], Awaitable[None]]
) -> dict[str, Witness]:
    tcp, ws = ChatMember("wtcp"), ChatMember("wws")
    stream = await trio.open_tcp_stream(HOST, ports["chat-tcp"])
    async with stream, ws_connect(f"ws://{HOST}:{ports['chat-ws']}/ws", proxy=None) as conn:

        async def read_tcp() -> None:
            rest = b""
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    tcp.witness.errors.append("closed by the server")
                    return
                *lines, rest = (rest + data).split(b"\n")
                for line in lines:
                    # What others sent reaches a reader as UTF-8 (the parser replaces
                    # what is not): junk must not reach a terminal as raw bytes.
                    try:
                        line.decode()
                    except UnicodeDecodeError:
                        tcp.witness.bad(f"a line that is not UTF-8: {line[:60]!r}")
                    tcp.seen(line)

        async def read_ws() -> None:
            try:
                async for message in conn:
                    ws.seen(message.encode() if isinstance(message, str) else message)
            except ConnectionClosed as exc:
                ws.witness.errors.append(f"closed: {exc!r}")

        async def say_tcp(text: str) -> None:
            await stream.send_all(text.encode() + b"\n")

        async def say_ws(text: str) -> None:
            await conn.send(json.dumps({"type": "line", "text": text}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_tcp)
            nursery.start_soon(read_ws)
            for member, say in ((tcp, say_tcp), (ws, say_ws)):
                await say(f"/nick {member.nick}")
                await say("/join #lobby")
                with trio.fail_after(20):
                    await member.joined.wait()
            await ready()

            async def speak(member: ChatMember, say: Callable[[str], Awaitable[None]]) -> None:
                for seq in range(int(args.seconds / args.interval)):
                    await say(f"w {member.nick} {seq} {time.monotonic_ns()}")
                    member.witness.sent += 1
                    await trio.sleep(args.interval)

            async with trio.open_nursery() as speaking:
                speaking.start_soon(speak, tcp, say_tcp)
                speaking.start_soon(speak, ws, say_ws)
            await trio.sleep(ANSWER_WITHIN)
            nursery.cancel_scope.cancel()
    # Each member's loss is what the other said and it did not get.
    for me, other in ((tcp, ws), (ws, tcp)):
        distinct = set(me.got)
        me.witness.lost = other.witness.sent - len(distinct & set(range(other.witness.sent)))
        me.witness.duplicated = len(me.got) - len(distinct)
        me.witness.reordered = sum(1 for a, b in zip(me.got, me.got[1:], strict=False) if b < a)
    return {"chat-tcp": tcp.witness, "chat-ws": ws.witness}


async def ask_udp(
    port: int, request: bytes, witness: Witness, check: Callable[[bytes], str]
) -> None:
    """One request on its own socket, its answer within ANSWER_WITHIN seconds."""
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
        await sock.connect((HOST, port))
        began = time.monotonic()
        await sock.send(request)
        witness.sent += 1
        with trio.move_on_after(ANSWER_WITHIN):
            reply = await sock.recv(65536)
            wrong = check(reply)
            if wrong:
                witness.bad(wrong)
            else:
                witness.ok(time.monotonic() - began)
            return
        witness.lost += 1


class LineClient:
    """A TCP connection asked one line at a time (echo, strftime)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.rest = b""

    async def ask(self, line: bytes) -> bytes | None:
        await self.stream.send_all(line + b"\n")
        with trio.move_on_after(ANSWER_WITHIN):
            while b"\n" not in self.rest:
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                self.rest += data
            answer, _, self.rest = self.rest.partition(b"\n")
            return answer
        return None


async def every(
    args: argparse.Namespace, witness: Witness, exchange: Callable[[int], Awaitable[None]]
) -> None:
    for seq in range(int(args.seconds / args.interval)):
        began = trio.current_time()
        try:
            await exchange(seq)
        except (OSError, trio.BrokenResourceError) as exc:
            witness.errors.append(repr(exc))
            return
        await trio.sleep_until(began + args.interval)


async def line_witness(
    port: int, args: argparse.Namespace, witness: Witness, make: Callable[[int], bytes],
    expect: Callable[[int], bytes],
) -> None:  # fmt: skip
    stream = await trio.open_tcp_stream(HOST, port)
    async with stream:
        client = LineClient(stream)

        async def exchange(seq: int) -> None:
            witness.sent += 1
            began = time.monotonic()
            answer = await client.ask(make(seq))
            if answer is None:
                witness.lost += 1
            elif answer.rstrip(b"\r") != expect(seq):
                witness.bad(f"{make(seq)!r} -> {answer[:80]!r}")
            else:
                witness.ok(time.monotonic() - began)

        await every(args, witness, exchange)


def sntp_request() -> tuple[bytes, bytes]:
    now = time.time() + NTP_EPOCH
    stamp = struct.pack("!II", int(now), int((now % 1) * 2**32))
    return bytes([0x23]) + bytes(39) + stamp, stamp


def sntp_check(stamp: bytes) -> Callable[[bytes], str]:
    def check(reply: bytes) -> str:
        if len(reply) != 48 or reply[0] & 7 != 4 or reply[24:32] != stamp:
            return f"bad SNTP reply {reply[:8].hex()}"
        seconds = struct.unpack("!I", reply[40:44])[0] - NTP_EPOCH
        return (
            f"SNTP time off by {seconds - time.time():.0f} s"
            if abs(seconds - time.time()) > 5
            else ""
        )

    return check


async def http_witness(port: int, args: argparse.Namespace, witness: Witness) -> None:
    stream: trio.SocketStream | None = None
    rest = b""

    async def exchange(seq: int) -> None:
        nonlocal stream, rest
        if stream is None:
            stream, rest = await trio.open_tcp_stream(HOST, port), b""
        witness.sent += 1
        began = time.monotonic()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: witness\r\n\r\n")
        with trio.move_on_after(ANSWER_WITHIN):
            while b"\r\n\r\n" not in rest:
                data = await stream.receive_some(65536)
                if not data:
                    break
                rest += data
            head, _, rest = rest.partition(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length: *(\d+)", head)
            size = int(match.group(1)) if match else 0
            while len(rest) < size:
                data = await stream.receive_some(65536)
                if not data:
                    break
                rest += data
            body, rest = rest[:size], rest[size:]
            if not head.startswith(b"HTTP/1.1 200") or body != b"hello world\n":
                witness.bad(f"{head[:40]!r} {body[:40]!r}")
            else:
                witness.ok(time.monotonic() - began)
            if b"connection: close" in head.lower():
                await stream.aclose()
                stream = None
            return
        witness.lost += 1
        if stream is not None:
            await stream.aclose()
        stream = None

    await every(args, witness, exchange)


async def rfc868_witness(port: int, args: argparse.Namespace, witness: Witness) -> None:
    async def exchange(seq: int) -> None:
        witness.sent += 1
        began = time.monotonic()
        got = b""
        with trio.move_on_after(ANSWER_WITHIN):
            async with await trio.open_tcp_stream(HOST, port) as stream:
                while len(got) < 4:
                    data = await stream.receive_some(64)
                    if not data:
                        break
                    got += data
        if len(got) < 4:
            witness.lost += 1
            return
        off = struct.unpack("!I", got[:4])[0] - NTP_EPOCH - time.time()
        if abs(off) > 5:
            witness.bad(f"rfc868 off by {off:.0f} s")
        else:
            witness.ok(time.monotonic() - began)

    await every(args, witness, exchange)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    ports: dict[str, int] = json.loads(args.ports)
    witnesses: dict[str, Witness] = {}
    go, joined = trio.Event(), trio.Event()

    async def ready() -> None:
        joined.set()
        await go.wait()

    async with trio.open_nursery() as nursery:
        if "chat-tcp" in ports:

            async def chat() -> None:
                witnesses.update(await chat_witnesses(ports, args, ready))

            nursery.start_soon(chat)
        others: list[Callable[[], Awaitable[None]]] = []

        def add(name: str, fn: Callable[[Witness], Awaitable[None]]) -> None:
            if name in ports:
                witness = witnesses[name] = Witness()

                async def run() -> None:
                    await go.wait()
                    await fn(witness)

                others.append(run)

        add(
            "echo-tcp",
            lambda w: line_witness(
                ports["echo-tcp"], args, w, lambda s: b"witness %d" % s, lambda s: b"witness %d" % s
            ),
        )
        add(
            "strftime-tcp",
            lambda w: line_witness(
                ports["strftime-tcp"],
                args,
                w,
                lambda s: b"%Y",
                lambda s: time.strftime("%Y").encode(),
            ),
        )

        async def echo_udp(witness: Witness) -> None:
            async def exchange(seq: int) -> None:
                line = b"witness %d" % seq

                def check(reply: bytes) -> str:
                    return "" if reply == line else f"echo {reply[:40]!r} for {line!r}"

                await ask_udp(ports["echo-udp"], line, witness, check)

            await every(args, witness, exchange)

        add("echo-udp", echo_udp)
        add(
            "strftime-udp",
            lambda w: every(
                args,
                w,
                lambda s: ask_udp(
                    ports["strftime-udp"],
                    b"%Y",
                    w,
                    lambda r: (
                        "" if r.strip() == time.strftime("%Y").encode() else f"strftime {r[:40]!r}"
                    ),
                ),
            ),
        )

        async def sntp(witness: Witness) -> None:
            async def exchange(seq: int) -> None:
                request, stamp = sntp_request()
                await ask_udp(ports["sntp"], request, witness, sntp_check(stamp))

            await every(args, witness, exchange)

        add("sntp", sntp)
        add("rfc868-tcp", lambda w: rfc868_witness(ports["rfc868-tcp"], args, w))
        add("http", lambda w: http_witness(ports["http"], args, w))  # fmt: skip
        for run in others:
            nursery.start_soon(run)
        if "chat-tcp" in ports:
            await joined.wait()
        print("ready", flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        assert line.strip() == "go", line
        go.set()
    return {"witnesses": {name: w.summary() for name, w in witnesses.items()}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--interval", type=float, default=0.25)
    result = trio.run(main, parser.parse_args())
    print(json.dumps(result), flush=True)
