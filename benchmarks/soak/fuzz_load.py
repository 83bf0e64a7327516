"""One fuzz process of the fuzz soak: junk on every listener of one server, as attackers.

``python -m benchmarks.soak.fuzz_load --ports JSON --seed N --seconds S --workers W``
prints ``ready``, waits for ``go`` on stdin, then runs W workers per listener for S
seconds, each sending one case after another (:mod:`benchmarks.soak.fuzz_junk`, from a
generator seeded with N and the listener's name and the worker's index, so a run
replays), and prints one JSON object: per listener, how many cases it sent, how the
server ended each connection (closed, reset, answered with an error), and every
finding (a connection the server neither answered nor closed, a wrong answer).

``--ports`` maps listener kinds to ports: ``chat-tcp``, ``chat-udp``, ``chat-ws``,
``http``, ``echo-tcp``, ``echo-udp``, ``rfc868-tcp``, ``rfc868-udp``, ``daytime-tcp``,
``daytime-udp``, ``sntp``, ``strftime-tcp``, ``strftime-udp``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import struct
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from . import fuzz_junk as junk

HOST = "127.0.0.1"
#: Seconds a connection may take, after our last byte (and our EOF), to be closed.
CLOSE_WITHIN = 10.0
#: The most answer bytes kept per connection (an echo of a big case).
KEEP = 1 << 20
#: The statuses serve_http documents for its limits (a reset may eat the answer).
HTTP_LIMITS = {"huge-target": 414, "huge-header": 431, "big-body": 413}
STATUS = re.compile(rb"(?m)^HTTP/1\.[01] (\d{3}) ")
#: Seconds a UDP burst waits for its answers.
UDP_WAIT = 1.0


class Listener:
    """One listener's tally: cases by kind, how they ended, what was wrong."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.ends: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()  # error answers by what they were
        self.findings: list[str] = []
        self.findings_total = 0

    def finding(self, text: str) -> None:
        self.findings_total += 1
        if len(self.findings) < 20:
            self.findings.append(text[:300])

    def summary(self) -> dict[str, Any]:
        return {
            "cases": sum(self.kinds.values()),
            "kinds": dict(self.kinds),
            "ends": dict(self.ends),
            "answers": dict(self.answers),
            "findings": self.findings,
            "findings_total": self.findings_total,
        }


async def tcp_exchange(
    port: int, payload: bytes, rng: random.Random, *, eof: bool = True
) -> tuple[str, bytes]:
    """Send ``payload`` in random pieces (then EOF), read until the server closes.

    Returns how it ended (``closed``, ``reset``, ``hang``, ``refused``) and what came back.
    """
    got = bytearray()
    end = "closed"
    try:
        stream = await trio.open_tcp_stream(HOST, port)
    except OSError as exc:
        return f"refused: {exc!r} ({exc.__cause__!r})", b""
    async with stream:

        async def send() -> None:
            try:
                view = memoryview(payload)
                while view:
                    piece = rng.choice([1, 7, 100, 4096, 65536])
                    await stream.send_all(view[:piece])
                    view = view[piece:]
                if eof:
                    await stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the server closed while we sent: that is a close

        with trio.move_on_after(CLOSE_WITHIN + len(payload) / 1e6) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                while True:
                    try:
                        data = await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        end = "reset"
                        break
                    if not data:
                        break
                    if len(got) < KEEP:
                        got += data
                nursery.cancel_scope.cancel()
        if scope.cancelled_caught:
            end = "hang"
    return end, bytes(got)


# --- TCP listeners -----------------------------------------------------------------------


async def chat_tcp_case(port: int, rng: random.Random, tally: Listener) -> None:
    kind, payload = junk.line_junk(rng)
    tally.kinds[kind] += 1
    end, got = await tcp_exchange(port, payload, rng)
    tally.ends[end] += 1
    if end not in ("closed", "reset"):
        tally.finding(f"{kind}: {end} after {payload[:80]!r}")
        return
    # Telnet negotiation is refused: DO x gets WONT x, WILL x gets DONT x.
    for verb, option in _negotiations(payload) if kind == "telnet" else []:
        answer = bytes([junk.IAC, junk.WONT if verb == junk.DO else junk.DONT, option])
        if answer in got:
            tally.answers["telnet refused"] += 1
        elif end == "closed":
            asked = bytes([junk.IAC, verb, option])
            tally.finding(f"telnet: no {answer!r} for {asked!r} in {payload[:80]!r}")
    if kind == "overlong":
        if b"line refused" in got:
            tally.answers["overlong refused"] += 1
        elif end == "closed":
            tally.finding(f"overlong: no notice in {got[-200:]!r}")


async def chat_irc_case(port: int, rng: random.Random, tally: Listener) -> None:
    kind, payload = junk.irc_junk(rng)
    tally.kinds[kind] += 1
    end, got = await tcp_exchange(port, payload, rng)
    tally.ends[end] += 1
    if end not in ("closed", "reset"):
        tally.finding(f"{kind}: {end} after {payload[:80]!r}")
        return
    if b"Traceback" in got:
        tally.finding(f"{kind}: a traceback in the answer to {payload[:80]!r}")
    if kind == "irc-overlong" and end == "closed":
        if b" 417 " in got:
            tally.answers["417 too long"] += 1
        else:
            tally.finding(f"irc-overlong: no 417 in {got[-200:]!r}")
    if b"ERROR :Closing link" in got:
        tally.answers["ERROR close"] += 1


def _negotiations(payload: bytes) -> list[tuple[int, int]]:
    """The ``IAC DO x`` and ``IAC WILL x`` in ``payload`` (verb, option), read as RFC 854
    says: ``IAC IAC`` is a data byte, the byte after WILL/WONT/DO/DONT is an option
    whatever its value (255 too), other commands are two bytes. Reading stops at the
    first subnegotiation (``IAC SB``): where it ends is the reader's rule, not re-derived
    here."""
    found, i = [], 0
    while i < len(payload) - 1:
        if payload[i] != junk.IAC:
            i += 1
            continue
        command = payload[i + 1]
        if command == junk.SB:
            break
        if command in (junk.WILL, junk.WONT, junk.DO, junk.DONT):
            if i + 2 < len(payload) and command in (junk.DO, junk.WILL):
                found.append((command, payload[i + 2]))
            i += 3
        else:
            i += 2
    return found


async def strftime_tcp_case(port: int, rng: random.Random, tally: Listener) -> None:
    kind, payload = junk.line_junk(rng)
    tally.kinds[kind] += 1
    end, got = await tcp_exchange(port, payload, rng)
    tally.ends[end] += 1
    if end not in ("closed", "reset"):
        tally.finding(f"{kind}: {end} after {payload[:80]!r}")
        return
    errors = got.count(b"error: ")
    tally.answers["error lines"] += errors
    if kind == "overlong" and end == "closed" and b"error: line longer than" not in got:
        tally.finding(f"overlong: no error line in {got[-200:]!r}")


async def one_shot_case(port: int, rng: random.Random, tally: Listener, size: int) -> None:
    """RFC 868 / RFC 867 over TCP: the answer on connect whatever is sent, then a close."""
    payload = junk.random_bytes(rng)
    tally.kinds["random"] += 1
    end, got = await tcp_exchange(port, payload, rng)
    tally.ends[end] += 1
    if end not in ("closed", "reset"):
        tally.finding(f"{end} after {payload[:80]!r}")
    elif size == 4 and len(got) == 4:
        seconds = struct.unpack("!I", got)[0] - 2_208_988_800
        if abs(seconds - time.time()) > 5:
            tally.finding(f"rfc868 answer off by {seconds - time.time():.0f} s")
    elif end == "closed" and (size == 4 or not got.endswith(b"\n")):
        tally.finding(f"wrong answer {got[:80]!r}")  # (a reset may eat the answer)


async def echo_tcp_case(port: int, rng: random.Random, tally: Listener) -> None:
    payload = rng.choice([junk.random_bytes(rng, 65536), junk.line_junk(rng)[1]])
    tally.kinds["random"] += 1
    end, got = await tcp_exchange(port, payload, rng)
    tally.ends[end] += 1
    if end != "closed":
        tally.finding(f"{end} after {len(payload)} bytes")
    elif got != payload[:KEEP] and len(payload) <= KEEP:
        tally.finding(f"echo differs: sent {len(payload)} bytes, got {len(got)}")
    else:
        tally.answers["echoed whole"] += 1


async def http_case(port: int, rng: random.Random, tally: Listener) -> None:
    kind, payload = junk.http_junk(rng)
    tally.kinds[kind.split(":")[0]] += 1
    end, got = await tcp_exchange(port, payload, rng)
    tally.ends[end] += 1
    statuses = [int(s) for s in STATUS.findall(got)]
    for status in statuses:
        tally.answers[str(status)] += 1
    if end not in ("closed", "reset"):
        tally.finding(f"{kind}: {end} after {payload[:80]!r}")
    if any(status >= 500 and status not in (501, 505) for status in statuses):
        tally.finding(f"{kind}: server error {statuses} for {payload[:80]!r}")
    expected = HTTP_LIMITS.get(kind)
    if expected is not None and (statuses or end == "closed") and statuses[:1] != [expected]:
        tally.finding(f"{kind}: answered {statuses[:1]}, not {expected}")
    if kind.startswith("pipelined:"):
        good = int(kind.split(":")[1])
        if statuses[:good] != [200] * good:
            tally.finding(f"pipelined {good} good requests answered {statuses}")


# --- WebSocket -------------------------------------------------------------------------------


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """The server's (unmasked) frames in ``data``, as far as they are whole."""
    frames = []
    at = 0
    while len(data) - at >= 2:
        opcode, size = data[at] & 0x0F, data[at + 1] & 0x7F
        head = 2
        if size == 126:
            if len(data) - at < 4:
                break
            size, head = struct.unpack_from("!H", data, at + 2)[0], 4
        elif size == 127:
            if len(data) - at < 10:
                break
            size, head = struct.unpack_from("!Q", data, at + 2)[0], 10
        if len(data) - at < head + size:
            break
        frames.append((opcode, data[at + head : at + head + size]))
        at += head + size
    return frames


async def ws_case(port: int, rng: random.Random, tally: Listener) -> None:
    if rng.random() < 0.25:
        kind, payload = junk.bad_handshake(rng)
        tally.kinds[kind] += 1
        # No EOF from us: a client waits for the answer (websockets closes a half-closed
        # handshake without one).
        end, got = await tcp_exchange(port, payload, rng, eof=False)
        tally.ends[end] += 1
        status = [int(s) for s in STATUS.findall(got[:4096])]
        tally.answers[f"http {status[0] if status else None}"] += 1
        if end not in ("closed", "reset"):
            tally.finding(f"{kind}: {end}")
        elif kind in ("hs-random", "hs-http09"):
            pass  # not HTTP/1.1: any error, or a close
        elif not status and end == "closed":
            tally.finding(f"{kind}: closed without an HTTP error")
        elif status and not 400 <= status[0] < 500:
            tally.finding(f"{kind}: answered {status[0]}")
        return
    kind, frames, code = junk.bad_frames(rng)
    tally.kinds[kind] += 1
    # The valid handshake first, its 101 awaited (RFC 6455 4.1: a client sends nothing
    # more before it), then the frames: the server must close with ``code``. Only random
    # bytes get our EOF too (they may claim a frame that never ends).
    end, head, rest = await ws_exchange(port, frames, eof=code is None)
    tally.ends[end] += 1
    if not head.startswith(b"HTTP/1.1 101"):
        tally.finding(f"{kind}: handshake answered {head[:60]!r} ({end})")
        return
    closes = [payload for opcode, payload in _frames(rest) if opcode == 8]
    got_code = struct.unpack("!H", closes[0][:2])[0] if closes and len(closes[0]) >= 2 else None
    tally.answers[f"close {got_code}"] += 1
    if end not in ("closed", "reset"):
        tally.finding(f"{kind}: {end}, close frames {closes[:1]!r}")
    elif not closes and code is not None:
        # Closed, but without the close frame websockets documents: counted apart (a
        # bound of its own), with the first few cases to replay.
        tally.answers["no close frame"] += 1
        if tally.answers["no close frame"] <= 5:
            tally.answers[f"no close frame: {kind} {frames[:24].hex()}"] += 1
    elif code is not None and got_code != code:
        tally.finding(f"{kind}: closed with {got_code}, not {code}")
    elif code is None and got_code not in (None, 1000, 1002, 1007, 1009):
        tally.finding(f"{kind}: closed with {got_code}")


async def ws_exchange(port: int, frames: bytes, *, eof: bool) -> tuple[str, bytes, bytes]:
    """Handshake, wait for the answer's head, send ``frames``, read until closed.

    Returns how it ended, the answer's head and what came after it."""
    try:
        stream = await trio.open_tcp_stream(HOST, port)
    except OSError as exc:
        return f"refused: {exc!r} ({exc.__cause__!r})", b"", b""
    got = head = rest = b""
    async with stream:
        with trio.move_on_after(CLOSE_WITHIN):
            try:
                await stream.send_all(junk.handshake())
                while b"\r\n\r\n" not in got:
                    data = await stream.receive_some(65536)
                    if not data:
                        return "closed", got, b""
                    got += data
                head, _, rest = got.partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 101"):
                    return "closed", head, rest
                # In one write: the server reads it whole, so its close is not a reset
                # (which would throw its close frame away) for bytes it left unread.
                await stream.send_all(frames)
                if eof:
                    await stream.send_eof()
                while True:
                    data = await stream.receive_some(65536)
                    if not data:
                        return "closed", head, rest
                    if len(rest) < KEEP:
                        rest += data
            except trio.BrokenResourceError:
                return "reset", head or got, rest
    return "hang", head or got, rest


# --- UDP -------------------------------------------------------------------------------------

Check = Callable[[bytes, bytes], str]  # request, reply -> what is wrong ("" if nothing)


def _echo_check(request: bytes, reply: bytes) -> str:
    return "" if reply == request else "echo differs"


def _rfc868_check(request: bytes, reply: bytes) -> str:
    if len(reply) != 4:
        return f"rfc868 reply of {len(reply)} bytes"
    off = struct.unpack("!I", reply)[0] - 2_208_988_800 - time.time()
    return f"rfc868 off by {off:.0f} s" if abs(off) > 5 else ""


def _daytime_check(request: bytes, reply: bytes) -> str:
    return "" if reply.endswith(b"\n") and len(reply) < 100 else f"daytime {reply[:60]!r}"


def _strftime_check(request: bytes, reply: bytes) -> str:
    if len(reply) > max(64, 4 * len(request)):
        return f"strftime amplified {len(request)} -> {len(reply)} bytes"
    return ""


async def udp_burst(
    port: int,
    rng: random.Random,
    tally: Listener,
    *,
    answers: str,
    check: Check | None = None,
) -> None:
    """A new peer (a fresh socket) sends a few datagrams, paced, and counts replies.

    ``answers``: ``one`` (every datagram gets one), ``maybe`` (the chat's dialect: an
    address it has not validated gets at most 3x the bytes it sent, QUIC's rule).
    """
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
        await sock.connect((HOST, port))
        sent: list[bytes] = []
        replies: list[bytes] = []

        async def receive() -> None:
            while True:
                try:
                    replies.append(await sock.recv(65536))
                except OSError as exc:  # ECONNREFUSED: the listener is gone
                    tally.finding(f"recv: {exc!r}")
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            for _ in range(rng.randint(1, 8)):
                data = junk.datagram(rng)
                try:
                    await sock.send(data)
                except OSError as exc:
                    tally.finding(f"send: {exc!r}")
                    break
                sent.append(data)
                tally.kinds["datagram"] += 1
                await trio.sleep(0.005)
            await trio.sleep(UDP_WAIT)
            nursery.cancel_scope.cancel()
    tally.answers["replies"] += len(replies)
    if answers == "maybe" and sum(map(len, replies)) > 3 * sum(map(len, sent)):
        tally.finding(f"{sum(map(len, replies))} bytes back for {sum(map(len, sent))}")
    if answers == "one":
        tally.answers["unanswered"] += max(0, len(sent) - len(replies))
        if len(replies) > len(sent):
            tally.finding(f"{len(replies)} replies to {len(sent)} datagrams")
    if check is not None:
        if check is _echo_check:  # datagrams may be reordered: match as a multiset
            left = Counter(hashlib.sha1(d).digest() for d in sent)
            for reply in replies:
                digest = hashlib.sha1(reply).digest()
                if left[digest] <= 0:
                    tally.finding(f"echo of {len(reply)} bytes that was not sent")
                left[digest] -= 1
        else:
            for request, reply in zip(sent, replies, strict=False):
                wrong = check(request, reply)
                if wrong:
                    tally.finding(wrong)


async def sntp_round(port: int, rng: random.Random, tally: Listener) -> None:
    """Every length 0..100 once, random fields: replies only to what is a request."""
    packets = rng.sample(junk.sntp_packets(rng), 101)
    requests: dict[bytes, bytes] = {}
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
        await sock.connect((HOST, port))
        replies: list[bytes] = []

        async def receive() -> None:
            while True:
                replies.append(await sock.recv(65536))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            for packet in packets:
                if junk.sntp_is_request(packet):
                    requests[packet[40:48]] = packet
                await sock.send(packet)
                tally.kinds["packet"] += 1
                await trio.sleep(0.002)
            await trio.sleep(UDP_WAIT)
            nursery.cancel_scope.cancel()
    tally.answers["replies"] += len(replies)
    answered = set()
    for reply in replies:
        request = requests.get(reply[24:32])
        if len(reply) != 48 or request is None:
            tally.finding(f"SNTP reply to no request: {reply[:16].hex()}")
            continue
        answered.add(reply[24:32])
        if reply[0] & 7 != 4 or reply[0] >> 3 & 7 != request[0] >> 3 & 7:
            tally.finding(f"SNTP reply mode/version {reply[0]:#x} to {request[0]:#x}")
    tally.answers["requests"] += len(requests)
    tally.answers["requests unanswered"] += len(requests) - len(answered)


# --- The run ---------------------------------------------------------------------------------

Case_ = Callable[[int, random.Random, Listener], Awaitable[None]]


def cases() -> dict[str, Case_]:
    def udp(answers: str, check: Check | None = None) -> Case_:
        async def case(port: int, rng: random.Random, tally: Listener) -> None:
            await udp_burst(port, rng, tally, answers=answers, check=check)

        return case

    async def rfc868_tcp(port: int, rng: random.Random, tally: Listener) -> None:
        await one_shot_case(port, rng, tally, 4)

    async def daytime_tcp(port: int, rng: random.Random, tally: Listener) -> None:
        await one_shot_case(port, rng, tally, 0)

    return {
        "chat-tcp": chat_tcp_case,
        "chat-irc": chat_irc_case,
        "chat-udp": udp("maybe"),
        "chat-ws": ws_case,
        "http": http_case,
        "echo-tcp": echo_tcp_case,
        "echo-udp": udp("one", _echo_check),
        "rfc868-tcp": rfc868_tcp,
        "rfc868-udp": udp("one", _rfc868_check),
        "daytime-tcp": daytime_tcp,
        "daytime-udp": udp("one", _daytime_check),
        "sntp": sntp_round,
        "strftime-tcp": strftime_tcp_case,
        "strftime-udp": udp("one", _strftime_check),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    ports: dict[str, int] = json.loads(args.ports)
    table = cases()
    tallies: dict[str, Listener] = defaultdict(Listener)
    print("ready", flush=True)
    line = await trio.to_thread.run_sync(sys.stdin.readline)
    assert line.strip() == "go", line
    deadline = trio.current_time() + args.seconds

    async def worker(name: str, index: int) -> None:
        rng = random.Random(f"{args.seed}:{name}:{index}")
        tally = tallies[name]
        while trio.current_time() < deadline:
            try:
                await table[name](ports[name], rng, tally)
            except OSError as exc:
                tally.finding(f"client error: {exc!r}")
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        for name in ports:
            for index in range(args.workers):
                nursery.start_soon(worker, name, index)
    return {"seed": args.seed, "listeners": {n: t.summary() for n, t in tallies.items()}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    result = trio.run(main, parser.parse_args())
    print(json.dumps(result), flush=True)
