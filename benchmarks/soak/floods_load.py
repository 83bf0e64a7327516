"""The load processes of the floods soak: the room that must keep its service, and the
attackers. ``python -m benchmarks.soak.floods_load MODE ...``; every mode prints
``ready``, waits for ``go`` on stdin, and prints one JSON object last.

* ``room``: normal members (TCP and WebSocket, ``chat_load``'s members), each saying a
  numbered line ``m NICK SEQ T_NS`` every ``--interval`` s for ``--seconds`` s (or until
  ``stop`` on stdin), then reading ``--drain`` s more; reading
  everything; it reports for each line the second (since ``go``) it was sent, for each
  receiver the numbers it got from each sender, the pasted lines it got (``p NICK SEQ``)
  and the delivery latency per second since ``go``.
* ``paste``: members that each, on ``go``, paste ``--lines`` lines in one write into
  their room, read everything, and stop when their own last line came back.
* ``udp``: ``--sources`` UDP sockets, each bound to its own 127.x.y.z address, each
  sending ``--per-source`` datagrams (``--payload line``: a chat line; ``heartbeat``:
  ``^hb^``) to the chat's UDP port, ``--batch`` sockets at a time (so the descriptors
  stay bounded), each closed ``--pause`` s after its batch was sent; answers are counted
  per source. The sources never validate their addresses: the chat says nothing of
  theirs in a room and answers each with at most its join notice.
* ``slowloris``: ``--connections`` connections to an HTTP port, each trickling a
  request's header bytes (one every ``--every`` s) until the server closes it or
  ``--seconds`` pass.
* ``halfopen``: ``--connections`` TCP connections that connect and never say a byte,
  and ``--vanish`` members that join a room and then stop reading and never close
  (a peer that vanishes without FIN cannot be made on loopback without a firewall), for
  ``--seconds`` s.

Every loop is bounded in count and time; everything is on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import json
import random
import re
import resource
import socket
import sys
import time
from collections import Counter, defaultdict
from functools import partial
from typing import Any

import trio
from websockets.exceptions import ConnectionClosed

from .chat_load import Latency, Member, close_all, roster, run_member

PASTED = re.compile(rb"\bp ([a-z]+\d+) (\d+)\b")


def raise_fd_limit(need: int) -> int:
    """Raise the soft descriptor limit towards ``need`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


async def wait_go() -> None:
    print("ready", flush=True)
    line = await trio.to_thread.run_sync(sys.stdin.readline)
    assert line.strip() == "go", line


# -- the room --------------------------------------------------------------------------


async def room(args: argparse.Namespace) -> dict[str, Any]:
    everyone = roster(args.roster, args.rooms)
    addresses = {"tcp": args.tcp, "ws": args.ws}
    members: list[Member] = []
    pasted: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    sent_at: dict[str, list[int]] = defaultdict(list)  # nick -> second of each seq
    errors: list[str] = []
    latency = Latency(time.monotonic_ns())
    go_ns = 0
    async with trio.open_nursery() as nursery:
        limiter = trio.CapacityLimiter(20)

        async def join(nick: str, room_name: str) -> None:
            kind = nick.rstrip("0123456789").removesuffix("m").rstrip("0123456789")
            host, _, port = addresses[kind].rpartition(":")
            async with limiter:
                member: Member = await nursery.start(
                    partial(run_member, kind, host, int(port), nick, room_name)
                )
                plain_seen = member.seen

                def seen(data: bytes, member: Member = member) -> None:
                    plain_seen(data)
                    for sender, seq in PASTED.findall(data):
                        pasted[member.nick][sender.decode()].append(int(seq))

                member.seen = seen  # type: ignore[method-assign]
                members.append(member)
                await member.enter()

        async with trio.open_nursery() as joining:
            for nick, room_name in everyone.items():
                joining.start_soon(join, nick, room_name)
        await wait_go()
        go_ns = time.monotonic_ns()
        latency = Latency(go_ns)
        for member in members:
            member.latency = latency
        lines = int(args.seconds / args.interval)
        stop = trio.Event()

        async def until_stop() -> None:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            assert line.strip() in ("stop", ""), line
            stop.set()

        nursery.start_soon(until_stop)

        async def speak(member: Member) -> None:
            await trio.sleep(random.random() * args.interval)
            began = trio.current_time()
            for seq in range(lines):
                if stop.is_set():
                    return
                now = time.monotonic_ns()
                try:
                    await member.send(f"m {member.nick} {seq} {now}")
                except (trio.BrokenResourceError, OSError, ConnectionClosed) as exc:
                    errors.append(f"{member.nick}: {exc!r}")
                    return
                sent_at[member.nick].append((now - go_ns) // 1_000_000_000)
                member.said += 1
                # on a schedule, so a slow send does not thin out the load
                await trio.sleep_until(began + (seq + 1) * args.interval)

        async with trio.open_nursery() as speaking:
            for member in members:
                speaking.start_soon(speak, member)
        await trio.sleep(args.drain)
        await close_all(members, errors)
        nursery.cancel_scope.cancel()
    errors += [f"{m.nick}: closed by the server" for m in members if m.closed_by_server]
    return {
        "go_ns": go_ns,
        "rooms": {m.nick: m.room for m in members},
        "sent_at": sent_at,
        "received": {m.nick: dict(m.got) for m in members},
        "pasted": {nick: {s: _summary(q) for s, q in got.items()} for nick, got in pasted.items()},
        "latency": {str(k): dict(v) for k, v in latency.seconds.items()},
        "errors": errors,
    }


def _summary(seqs: list[int]) -> list[int]:
    """[lines, distinct numbers, lines after a later one]"""
    back = sum(1 for a, b in itertools.pairwise(seqs) if b < a)
    return [len(seqs), len(set(seqs)), back]


# -- pasters ---------------------------------------------------------------------------


async def paste(args: argparse.Namespace) -> dict[str, Any]:
    host, _, port = args.tcp.rpartition(":")
    results: dict[str, dict[str, Any]] = {}
    streams: list[tuple[str, trio.SocketStream]] = []
    for i in range(args.pasters):
        nick = f"paster{i}"
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(f"/nick {nick}\n/join #r{i % args.rooms}\n".encode())
        streams.append((nick, stream))
    await wait_go()

    async def send(stream: trio.SocketStream, data: bytes) -> None:
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return  # closed by the server: the reader sees it

    async def one(nick: str, stream: trio.SocketStream) -> None:
        text = "".join(f"p {nick} {seq} {'x' * 20}\n" for seq in range(args.lines))
        began = time.monotonic()
        last = f"p {nick} {args.lines - 1} ".encode()
        result: dict[str, Any] = {"echoed": False}
        results[nick] = result
        with trio.move_on_after(args.seconds):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send, stream, text.encode())
                tail = b""
                while True:
                    try:
                        data = await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        data = b""
                    if not data:
                        result["closed_by_server"] = True
                        break
                    if last in tail[-200:] + data:
                        result["echoed"] = True
                        break
                    tail = data
                nursery.cancel_scope.cancel()
        result["seconds"] = round(time.monotonic() - began, 2)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        for nick, stream in streams:
            nursery.start_soon(one, nick, stream)
    return {"lines": args.lines, "pasters": results}


# -- the UDP flood ---------------------------------------------------------------------


def source(i: int) -> str:
    """The i-th flood address: 127.1.0.1 ... 127.1.0.254, 127.1.1.1 ... (all distinct,
    none ending in 0 or 255, never 127.0.0.1)."""
    return f"127.{1 + i // (254 * 256)}.{i // 254 % 256}.{i % 254 + 1}"


async def udp(args: argparse.Namespace) -> dict[str, Any]:
    host, _, port_text = args.udp.rpartition(":")
    target = (host, int(port_text))
    raise_fd_limit(args.batch + 100)

    def payload(n: int, sock: socket.socket) -> bytes:
        if args.payload == "heartbeat":
            return b"^hb^"
        return f"flood {n} from {sock.getsockname()[0]}".encode()

    await wait_go()
    sent = answered_sources = answers = send_errors = 0
    addresses: set[str] = set()
    began = time.monotonic()
    deadline = began + args.seconds
    for start in range(0, args.sources, args.batch):
        if time.monotonic() > deadline:
            break
        socks = []
        for i in range(start, min(start + args.batch, args.sources)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            address = source(i)
            try:
                sock.bind((address, 0))
            except OSError:
                sock.close()
                send_errors += 1
                continue
            addresses.add(address)
            socks.append(sock)
        for n in range(args.per_source):
            for sock in socks:
                try:
                    sock.sendto(payload(n, sock), target)
                    sent += 1
                except OSError:
                    send_errors += 1
            await trio.sleep(0)
        await trio.sleep(args.pause)
        for sock in socks:
            got = 0
            for _ in range(1000):  # what it was answered, bounded
                try:
                    sock.recv(65536)
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.ECONNREFUSED):
                        send_errors += 1
                    break
                got += 1
            answers += got
            answered_sources += got > 0
            sock.close()
    return {
        "sources": len(addresses),
        "datagrams_sent": sent,
        "sources_answered": answered_sources,
        "answers": answers,
        "send_errors": send_errors,
        "seconds": round(time.monotonic() - began, 2),
    }


# -- slowloris -------------------------------------------------------------------------


async def slowloris(args: argparse.Namespace) -> dict[str, Any]:
    host, _, port = args.http.rpartition(":")
    raise_fd_limit(args.connections + 100)
    await wait_go()
    closed: list[float] = []  # seconds from connect to the server's close
    answered: Counter[str] = Counter()  # the status line the server closed with
    connect_errors: list[str] = []
    still_open = 0
    began = time.monotonic()
    header = f"GET / HTTP/1.1\r\nHost: {host}\r\n".encode() + b"X-Slow: " + b"a" * 10_000

    async def one(limiter: trio.CapacityLimiter) -> None:
        nonlocal still_open
        async with limiter:
            try:
                stream = await trio.open_tcp_stream(host, int(port))
            except OSError as exc:
                connect_errors.append(repr(exc))
                return
        connected = time.monotonic()
        got = b""
        with trio.move_on_after(args.seconds - (connected - began)) as scope:
            async with trio.open_nursery() as nursery:

                async def trickle() -> None:
                    try:
                        for byte in header:  # bounded: the header's length
                            await stream.send_all(bytes([byte]))
                            await trio.sleep(args.every)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return  # the server closed it

                nursery.start_soon(trickle)
                try:
                    while True:
                        data = await stream.receive_some(4096)
                        if not data:
                            break
                        got += data
                except trio.BrokenResourceError:
                    pass
                nursery.cancel_scope.cancel()
        if scope.cancelled_caught:
            still_open += 1
        else:
            closed.append(time.monotonic() - connected)
            answered[got.split(b"\r\n")[0].decode(errors="replace")[:40] or "(nothing)"] += 1
        await stream.aclose()

    with trio.move_on_after(args.seconds + 5):
        async with trio.open_nursery() as nursery:
            limiter = trio.CapacityLimiter(100)  # connects at once
            for _ in range(args.connections):
                nursery.start_soon(one, limiter)
    closed.sort()
    return {
        "connections": args.connections,
        "connect_errors": len(connect_errors),
        "closed_by_server": len(closed),
        "still_open": still_open,
        "closed_after_s_min": round(closed[0], 1) if closed else None,
        "closed_after_s_max": round(closed[-1], 1) if closed else None,
        "answered_with": dict(answered),
        "seconds": round(time.monotonic() - began, 2),
    }


# -- half-open and vanished ------------------------------------------------------------


async def halfopen(args: argparse.Namespace) -> dict[str, Any]:
    host, _, port = args.tcp.rpartition(":")
    raise_fd_limit(args.connections + args.vanish + 100)
    await wait_go()
    began = time.monotonic()
    silent: list[socket.socket] = []
    vanished: list[socket.socket] = []
    connect_errors = 0
    for i in range(args.connections + args.vanish):
        sock = socket.socket()
        if i >= args.connections:  # a small window: the server sees it stall soon
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            sock.connect((host, int(port)))
        except BlockingIOError:
            pass
        except OSError:
            connect_errors += 1
            sock.close()
            continue
        (silent if i < args.connections else vanished).append(sock)
        if i % 100 == 99:
            await trio.sleep(0.01)  # the listen backlog is not endless
    for i, sock in enumerate(vanished):
        with trio.move_on_after(5):
            await trio.lowlevel.wait_writable(sock)
            try:
                sock.send(f"/nick vanish{i}\n/join #r{i % args.rooms}\n".encode())
            except OSError:
                connect_errors += 1
    await trio.sleep(max(0.0, args.seconds - (time.monotonic() - began)))

    def ended(sock: socket.socket) -> bool:
        """Whether the server closed it (read what is there, bounded, looking for EOF)."""
        for _ in range(10_000):
            try:
                if not sock.recv(65536):
                    return True
            except BlockingIOError:
                return False
            except OSError:
                return True
        return False

    silent_closed = sum(ended(s) for s in silent)
    vanished_closed = sum(ended(s) for s in vanished)
    for sock in [*silent, *vanished]:
        sock.close()
    return {
        "connections": len(silent),
        "vanished": len(vanished),
        "connect_errors": connect_errors,
        "silent_closed_by_server": silent_closed,
        "vanished_closed_by_server": vanished_closed,
        "seconds": round(time.monotonic() - began, 2),
    }


MODES = {"room": room, "paste": paste, "udp": udp, "slowloris": slowloris, "halfopen": halfopen}

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--tcp", default="", help="the chat's TCP address, HOST:PORT")
    parser.add_argument("--ws", default="", help="the chat's web address, HOST:PORT")
    parser.add_argument("--udp", default="", help="the chat's UDP address, HOST:PORT")
    parser.add_argument("--http", default="", help="an HTTP address for slowloris")
    parser.add_argument("--roster", default="tcp:1x50,ws:1x10")
    parser.add_argument("--rooms", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--drain", type=float, default=5.0)
    parser.add_argument("--pasters", type=int, default=2)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--per-source", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--payload", choices=["heartbeat", "line"], default="line")
    parser.add_argument("--pause", type=float, default=0.2)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--vanish", type=int, default=20)
    args = parser.parse_args()
    result = trio.run(MODES[args.mode], args)
    print(json.dumps(result), flush=True)
