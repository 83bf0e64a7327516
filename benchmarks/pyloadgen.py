"""The fallback load client, used only when no C compiler is found.

Same command line and the same JSON lines as ``loadgen.c`` (see there), written with
``selectors`` and non-blocking sockets.  It is several times slower than the C client, so
against the fast servers it is the bottleneck; the runner says so when it uses it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import selectors
import socket
import sys
import time
from typing import Any, cast

NS = 1_000_000_000


class Histogram:
    """Latency samples in log-linear buckets (about 3% relative error), like loadgen.c."""

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0

    @staticmethod
    def _bucket(ns: int) -> int:
        v = ns // 100
        if v < 64:
            return v
        msb = v.bit_length() - 1
        shift = msb - 5
        return 64 + (msb - 6) * 32 + ((v >> shift) - 32)

    @staticmethod
    def _mid_us(b: int) -> float:
        if b < 64:
            return (b + 0.5) / 10
        msb = (b - 64) // 32 + 6
        sub = (b - 64) % 32 + 32
        shift = msb - 5
        return ((sub << shift) + (1 << shift) / 2) / 10

    def add(self, ns: int) -> None:
        b = self._bucket(ns)
        self.buckets[b] = self.buckets.get(b, 0) + 1
        self.count += 1

    def pct(self, p: float) -> float:
        if not self.count:
            return 0.0
        rank = min(int(p * self.count), self.count - 1)
        acc = 0
        for b in sorted(self.buckets):
            acc += self.buckets[b]
            if acc > rank:
                return self._mid_us(b)
        return 0.0


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


class Window:
    """Warm-up, then the measured window; prints the start event."""

    def __init__(self, warmup: float, duration: float) -> None:
        now = time.monotonic_ns()
        self.start = now + int(warmup * NS)
        self.end = self.start + int(duration * NS)
        self.measuring = False
        self.hist = Histogram()
        self.cpu0 = 0.0

    def tick(self, now: int) -> bool:
        """Open the window when due; False once it has closed."""
        if not self.measuring and now >= self.start:
            self.measuring = True
            self.hist = Histogram()
            self.cpu0 = time.process_time()
            emit({"event": "start"})
        return now < self.end

    def timeout(self, now: int) -> float:
        return max(0.0, ((self.end if self.measuring else self.start) - now) / NS)

    def common(self) -> dict[str, Any]:
        secs = (time.monotonic_ns() - self.start) / NS
        return {
            "duration_s": secs,
            "client_cpu_pct": 100 * (time.process_time() - self.cpu0) / secs,
            "p50_us": self.hist.pct(0.5),
            "p99_us": self.hist.pct(0.99),
            "samples": self.hist.count,
        }


def tcp_connect(addr: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(addr, timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def blocking_echo(sock: socket.socket, msg: bytes) -> None:
    sock.sendall(msg)
    got = 0
    while got < len(msg):
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection during setup")
        got += len(data)


def udp_connect(addr: tuple[str, int], msg: bytes) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(addr)
    sock.settimeout(1.0)
    for _ in range(5):
        sock.send(msg)
        try:
            sock.recv(65536)
            return sock
        except TimeoutError:
            continue
    raise ConnectionError("udp setup: no echo from the server")


def run_tcp(args: argparse.Namespace, addr: tuple[str, int]) -> None:
    msg = b"x" * (args.size - 1) + b"\n"
    sel = selectors.DefaultSelector()
    state: dict[socket.socket, list[int]] = {}
    for _ in range(args.conns):
        sock = tcp_connect(addr)
        blocking_echo(sock, msg)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        state[sock] = [0, 0]  # bytes got, t0
    win = Window(args.warmup, args.duration)
    for sock, st in state.items():
        st[1] = time.monotonic_ns()
        sock.send(msg)
    rts = 0
    while True:
        now = time.monotonic_ns()
        was = win.measuring
        if not win.tick(now):
            break
        if win.measuring and not was:
            rts = 0
        for key, _ in sel.select(win.timeout(now)):
            sock = cast(socket.socket, key.fileobj)
            st = state[sock]
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("server closed a connection")
            st[0] += len(data)
            if st[0] >= args.size:
                t = time.monotonic_ns()
                if win.measuring:
                    win.hist.add(t - st[1])
                    rts += 1
                st[0], st[1] = 0, t
                sock.send(msg)
    common = win.common()
    emit(
        {
            "event": "result",
            "mode": "tcp",
            "conns": args.conns,
            "size": args.size,
            "round_trips": rts,
            "rt_per_s": rts / common["duration_s"],
            **common,
        }
    )


def run_stream(args: argparse.Namespace, addr: tuple[str, int]) -> None:
    chunk = b"y" * args.chunk
    sel = selectors.DefaultSelector()
    state: dict[socket.socket, list[int]] = {}
    for _ in range(args.conns):
        sock = tcp_connect(addr)
        blocking_echo(sock, chunk[:64])
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        state[sock] = [0, 0]  # sent, received
    win = Window(args.warmup, args.duration)
    total = 0
    while True:
        now = time.monotonic_ns()
        was = win.measuring
        if not win.tick(now):
            break
        if win.measuring and not was:
            total = 0
        for key, events in sel.select(win.timeout(now)):
            sock = cast(socket.socket, key.fileobj)
            st = state[sock]
            if events & selectors.EVENT_READ:
                try:
                    data = sock.recv(262144)
                except BlockingIOError:
                    data = b"-"
                if not data:
                    raise ConnectionError("server closed a connection")
                if data != b"-":
                    st[1] += len(data)
                    if win.measuring:
                        total += len(data)
            room = args.window - (st[0] - st[1])
            if room > 0:
                off = st[0] % args.chunk
                with contextlib.suppress(BlockingIOError):
                    st[0] += sock.send(chunk[off : off + min(args.chunk - off, room)])
            want = selectors.EVENT_READ | (selectors.EVENT_WRITE if room > 0 else 0)
            if want != key.events:
                sel.modify(sock, want)
    common = win.common()
    emit(
        {
            "event": "result",
            "mode": "stream",
            "conns": args.conns,
            "chunk": args.chunk,
            "bytes": total,
            "mb_per_s": total / common["duration_s"] / 1e6,
            **common,
        }
    )


def run_udp(args: argparse.Namespace, addr: tuple[str, int]) -> None:
    size = max(args.size, 16)
    sel = selectors.DefaultSelector()
    state: dict[socket.socket, list[int]] = {}
    for _ in range(args.conns):
        sock = udp_connect(addr, b"u" * size)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        state[sock] = [0, 0]  # seq, t0
    pad = b"u" * (size - 8)

    def send(sock: socket.socket, st: list[int]) -> None:
        st[0] += 1
        st[1] = time.monotonic_ns()
        with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
            sock.send(st[0].to_bytes(8, "little") + pad)

    win = Window(args.warmup, args.duration)
    for sock, st in state.items():
        send(sock, st)
    rts = lost = 0
    while True:
        now = time.monotonic_ns()
        was = win.measuring
        if not win.tick(now):
            break
        if win.measuring and not was:
            rts = lost = 0
        for sock, st in state.items():
            if now - st[1] > 0.2 * NS:
                lost += win.measuring
                send(sock, st)
        for key, _ in sel.select(min(0.005, win.timeout(now))):
            sock = cast(socket.socket, key.fileobj)
            st = state[sock]
            try:
                data = sock.recv(65536)
            except (BlockingIOError, ConnectionRefusedError):
                continue
            if int.from_bytes(data[:8], "little") != st[0]:
                continue
            if win.measuring:
                win.hist.add(time.monotonic_ns() - st[1])
                rts += 1
            send(sock, st)
    common = win.common()
    emit(
        {
            "event": "result",
            "mode": "udp",
            "conns": args.conns,
            "size": size,
            "round_trips": rts,
            "rt_per_s": rts / common["duration_s"],
            "lost": lost,
            **common,
        }
    )


WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key and its accept value
WS_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
WS_MASK = bytes((0x5B, 0xC2, 0x17, 0xE9))
_NUMBERS = re.compile(rb"(\d+)(?: (\d+))?")


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (FIN set) of at most 65535 payload bytes."""
    n = len(payload)
    head = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else bytes((0x80 | opcode, 0xFE))
    if n >= 126:
        head += n.to_bytes(2, "big")
    return head + WS_MASK + bytes(b ^ WS_MASK[i & 3] for i, b in enumerate(payload))


def ws_connect(addr: tuple[str, int]) -> tuple[socket.socket, bytes]:
    """A connection after the opening handshake, and the bytes that came behind the 101."""
    sock = tcp_connect(addr)
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: {addr[0]}:{addr[1]}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    buf = b""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        data = sock.recv(65536)
        if not data or len(buf) > 8192:
            raise ConnectionError("wschat: no handshake response from the server")
        buf += data
    head = buf[:end]
    if not head.startswith(b"HTTP/1.1 101"):
        status = head.partition(b"\r\n")[0]
        raise ConnectionError(f"wschat: the handshake got {status!r}, not 101")
    if WS_ACCEPT not in head:
        raise ConnectionError("wschat: a 101 without the right Sec-WebSocket-Accept")
    return sock, buf[end + 4 :]


class WSFrames:
    """The server's frames on one connection: text messages, pings, the close."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.message: bytearray | None = None  # a data message still arriving (fragments)
        self.text = False

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """(opcode, payload) of each complete text message (1), ping (9) and close (8)."""
        self.buf += data
        events: list[tuple[int, bytes]] = []
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            if b1 & 0x80:
                raise ValueError("wschat: the server sent a masked frame")
            if b0 & 0x70:
                raise ValueError("wschat: a frame with RSV bits (no extension was agreed)")
            n, at = b1 & 0x7F, 2
            if n >= 126:
                at = 4 if n == 126 else 10
                if len(self.buf) < at:
                    break
                n = int.from_bytes(self.buf[2:at], "big")
            if len(self.buf) < at + n:
                break
            payload = bytes(self.buf[at : at + n])
            del self.buf[: at + n]
            fin, opcode = b0 & 0x80, b0 & 0x0F
            if opcode >= 8:
                if opcode in (8, 9):
                    events.append((opcode, payload))
                elif opcode != 10:
                    raise ValueError("wschat: a frame with an unknown control opcode")
                continue
            if opcode == 0:
                if self.message is None:
                    raise ValueError("wschat: a continuation frame outside a message")
                self.message += payload
            elif opcode in (1, 2):
                if self.message is not None:
                    raise ValueError("wschat: a new message inside a fragmented one")
                self.message, self.text = bytearray(payload), opcode == 1
            else:
                raise ValueError("wschat: a frame with an unknown data opcode")
            if fin:
                if self.text:
                    events.append((1, bytes(self.message)))
                self.message = None
        return events


def run_chat(args: argparse.Namespace, addr: tuple[str, int], ws: bool = False) -> None:
    """The chat fan-out over TCP lines, or over WebSocket (``wschat``, see loadgen.c)."""
    sel = selectors.DefaultSelector()
    subs: dict[socket.socket, bytearray] = {}
    frames: dict[socket.socket, WSFrames] = {}  # wschat: every connection's frame parser
    early: dict[socket.socket, bytes] = {}  # wschat: bytes that came right behind the 101

    def connect() -> socket.socket:
        if not ws:
            return tcp_connect(addr)
        sock, rest = ws_connect(addr)
        frames[sock], early[sock] = WSFrames(), rest
        return sock

    for i in range(args.conns):
        sock = connect()
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        subs[sock] = bytearray()
        if i % 50 == 49:
            time.sleep(0.002)
    sender = connect()
    sel.register(sender, selectors.EVENT_READ)
    ready: set[socket.socket] = set()  # have seen an announcement
    caught_up: set[socket.socket] = set()  # have seen the final one: nothing older is queued
    closed: set[socket.socket] = set()  # wschat: subscribers the server closed
    final = [-1]
    sent_at: dict[int, list[int]] = {}  # seq -> [t, count]
    counters = {"deliveries": 0, "late": 0, "lost": 0}
    state = {"measuring": False, "end": 0}
    hist = Histogram()

    def after(line: bytes, tag: bytes) -> bytes | None:
        """What follows ``: bm `` (a TCP line) or, over WebSocket, also ``"bm `` (JSON)."""
        at = line.rfind(b": " + tag + b" ")
        if at >= 0:
            return line[at + len(tag) + 3 :]
        at = line.rfind(b'"' + tag + b" ") if ws else -1
        return line[at + len(tag) + 2 :] if at >= 0 else None

    def on_line(sock: socket.socket, line: bytes, now: int) -> None:
        rest = after(line, b"bw")
        if rest is not None:
            ready.add(sock)
            seen = _NUMBERS.match(rest)
            if final[0] >= 0 and seen and int(seen[1]) >= final[0]:
                caught_up.add(sock)
            return
        rest = after(line, b"bm")
        numbers = _NUMBERS.match(rest) if rest is not None else None
        if numbers is None:
            return
        seq, t = int(numbers[1]), int(numbers[2] or b"0")
        slot = sent_at.get(seq)
        counted = state["measuring"] and now < state["end"]
        if slot is not None:
            slot[1] += 1
        elif counted:
            counters["late"] += 1
        if counted:
            counters["deliveries"] += 1
            hist.add(now - t)

    def send_line(text: bytes) -> None:
        sender.sendall(ws_frame(0x1, text) if ws else text + b"\n")

    def on_frames(sock: socket.socket, data: bytes, now: int) -> None:
        for opcode, payload in frames[sock].feed(data):
            if opcode == 9:  # ping: the same payload back in a pong
                with contextlib.suppress(BlockingIOError):
                    sock.send(ws_frame(0xA, payload))
            elif opcode == 8:  # close: answer it, stop this connection
                with contextlib.suppress(OSError):
                    sock.send(ws_frame(0x8, payload[:2]))
                gone(sock, "a close frame")
                return
            elif sock is not sender:
                for line in payload.split(b"\n"):
                    on_line(sock, line, now)

    def gone(sock: socket.socket, why: str) -> None:
        if sock is sender or not ws:
            which = "the sender" if sock is sender else "a chat"
            raise ConnectionError(f"server closed {which} connection ({why})")
        sel.unregister(sock)
        sock.close()
        closed.add(sock)

    def pump(timeout: float) -> None:
        for sock in [s for s in early if early[s]]:
            on_frames(sock, early.pop(sock), time.monotonic_ns())
        for key, _ in sel.select(timeout):
            sock = cast(socket.socket, key.fileobj)
            if sock in closed:
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                gone(sock, "connection reset")
                continue
            if not data:
                gone(sock, "EOF")
                continue
            now = time.monotonic_ns()
            if ws:
                on_frames(sock, data, now)
                continue
            if sock is sender:
                continue
            buf = subs[sock]
            buf += data
            *lines, rest = bytes(buf).split(b"\n")
            subs[sock] = bytearray(rest)
            for line in lines:
                on_line(sock, line, now)

    # announce, backing off, until every subscriber has seen one; then a final announcement,
    # and wait until every subscriber has seen it (see loadgen.c)
    deadline = time.monotonic() + args.setup_timeout
    announce, interval, next_announce = 0, 0.02, 0.0
    while time.monotonic() < deadline and len(caught_up - closed) < len(subs) - len(closed):
        now = time.monotonic()
        if len(closed) == len(subs):
            raise ConnectionError("chat setup: the server closed every subscriber connection")
        if final[0] < 0 and len(ready - closed) == len(subs) - len(closed):
            final[0] = announce
            next_announce = now
        if now >= next_announce and (final[0] < 0 or announce == final[0]):
            send_line(f"bw {announce}".encode())
            announce += 1
            next_announce, interval = now + interval, min(1.0, interval * 2)
        pump(0.02)
    target = len(ready - closed)
    if not target:
        raise ConnectionError("chat setup: no subscriber received a line")
    closed_ready_at_setup = len(ready & closed)
    win = Window(args.warmup, args.duration)
    state["end"] = win.end
    t0 = time.monotonic_ns()
    next_seq = oldest = sent0 = closed0 = 0
    while True:
        now = time.monotonic_ns()
        if not win.tick(now):
            break
        if win.measuring and not state["measuring"]:
            state["measuring"] = True
            hist = Histogram()
            sent0, closed0 = next_seq, len(closed)
        want = target - (len(ready & closed) - closed_ready_at_setup)
        if want <= 0:
            raise ConnectionError("chat: the server closed every subscriber connection")
        while oldest < next_seq:
            t, count = sent_at[oldest]
            if count < want and now - t < 2 * NS:
                break
            if count < want and state["measuring"]:
                counters["lost"] += want - count
            del sent_at[oldest]
            oldest += 1
        while next_seq - oldest < args.inflight and (
            args.rate <= 0 or next_seq < args.rate * (now - t0) / NS + 1
        ):
            t = time.monotonic_ns()
            sent_at[next_seq] = [t, 0]
            send_line(f"bm {next_seq} {t}".encode())
            next_seq += 1
        pump(0.001)
    win.hist = hist
    common = win.common()
    emit(
        {
            "event": "result",
            "mode": "wschat" if ws else "chat",
            "conns": args.conns,
            "ready": target,
            "sent": next_seq - sent0,
            "deliveries": counters["deliveries"],
            "deliveries_per_s": counters["deliveries"] / common["duration_s"],
            "lost": counters["lost"],
            "late": counters["late"],
            "closed": len(closed) - closed0,
            **common,
        }
    )
    if args.linger > 0:
        linger_until_stdin_eof(args.linger)


def linger_until_stdin_eof(seconds: float) -> None:
    """Keep every socket open (nothing more read or sent) until stdin's EOF, at most
    ``seconds`` (chat's ``--linger``, see loadgen.c)."""
    deadline = time.monotonic() + seconds
    sel = selectors.DefaultSelector()
    try:
        sel.register(sys.stdin.fileno(), selectors.EVENT_READ)
    except (PermissionError, ValueError):
        return
    while (left := deadline - time.monotonic()) > 0:
        if sel.select(min(left, 1.0)) and not os.read(sys.stdin.fileno(), 65536):
            return


HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HTTP_HEAD_MAX = 8192


class HTTPResponses:
    """Reads responses off one keep-alive connection (see loadgen.c's http mode)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.body_left = -1  # -1: still reading the head
        self.close_after = False

    def _head(self, head: bytes) -> None:
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(f"http: no HTTP/1.x status line: {status_line!r}")
        if rest[:3] != "200":
            raise ValueError(f"http: status {rest[:3]}, not 200")
        self.close_after = version == "HTTP/1.0"
        length = -1
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon:
                raise ValueError(f"http: a header line without a colon: {line!r}")
            name, value = name.strip().lower(), value.strip()
            tokens = {t.strip().lower() for t in value.split(",")}
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                if "close" in tokens:
                    self.close_after = True
                elif "keep-alive" in tokens:
                    self.close_after = False
            elif name == "transfer-encoding":
                raise ValueError("http: a response with Transfer-Encoding, no Content-Length")
        if length < 0:
            raise ValueError("http: a response without Content-Length")
        self.body_left = length

    def feed(self, data: bytes) -> bool:
        """True when ``data`` completed the response."""
        if not data:
            raise ConnectionError("server closed a connection without Connection: close")
        self.buf += data
        if self.body_left < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) >= HTTP_HEAD_MAX:
                    raise ValueError("http: a response head longer than 8 KiB")
                return False
            self._head(bytes(self.buf[:end]))
            del self.buf[: end + 4]
        take = min(len(self.buf), self.body_left)
        del self.buf[:take]
        self.body_left -= take
        if self.body_left > 0:
            return False
        if self.buf:
            raise ValueError("http: bytes after the end of a response")
        self.body_left = -1
        return True


def run_http(args: argparse.Namespace, addr: tuple[str, int]) -> None:
    sel = selectors.DefaultSelector()
    state: dict[socket.socket, tuple[HTTPResponses, list[int]]] = {}

    def open_one() -> socket.socket:
        sock = tcp_connect(addr)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        return sock

    for _ in range(args.conns):
        sock = tcp_connect(addr)
        sock.sendall(HTTP_REQUEST)  # one request first, blocking (5 s timeout)
        responses = HTTPResponses()
        while not responses.feed(sock.recv(65536)):
            pass
        if responses.close_after:
            sock.close()
            sock = tcp_connect(addr)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        state[sock] = (HTTPResponses(), [0])  # t0
    win = Window(args.warmup, args.duration)
    for sock, (_, t0) in state.items():
        t0[0] = time.monotonic_ns()
        sock.send(HTTP_REQUEST)
    rts = reconnects = 0
    while True:
        now = time.monotonic_ns()
        was = win.measuring
        if not win.tick(now):
            break
        if win.measuring and not was:
            rts = reconnects = 0
        for key, _ in sel.select(win.timeout(now)):
            sock = cast(socket.socket, key.fileobj)
            responses, t0 = state[sock]
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not responses.feed(data):
                continue
            t = time.monotonic_ns()
            if win.measuring:
                win.hist.add(t - t0[0])
                rts += 1
            if responses.close_after:  # the server's request limit per connection
                sel.unregister(sock)
                sock.close()
                del state[sock]
                sock = open_one()
                responses = HTTPResponses()
                state[sock] = (responses, t0)
                reconnects += win.measuring
            t0[0] = time.monotonic_ns()
            sock.send(HTTP_REQUEST)
    common = win.common()
    emit(
        {
            "event": "result",
            "mode": "http",
            "conns": args.conns,
            "round_trips": rts,
            "rt_per_s": rts / common["duration_s"],
            "reconnects": reconnects,
            **common,
        }
    )


def run_idle(args: argparse.Namespace, addr: tuple[str, int], udp: bool) -> None:
    msg = b"i" * 63 + b"\n"
    socks = []
    for _ in range(args.conns):
        if udp:
            socks.append(udp_connect(addr, msg))
        else:
            sock = tcp_connect(addr)
            blocking_echo(sock, msg)
            socks.append(sock)
    emit({"event": "ready", "mode": args.mode, "conns": args.conns})
    sel = selectors.DefaultSelector()
    deadline = time.monotonic() + args.hold
    try:
        sel.register(sys.stdin.fileno(), selectors.EVENT_READ)
    except (PermissionError, ValueError):
        time.sleep(args.hold)
    while (left := deadline - time.monotonic()) > 0:
        if sel.get_map() and sel.select(min(left, 1.0)):
            if not os.read(sys.stdin.fileno(), 65536):
                break
        elif not sel.get_map():
            break
    emit({"event": "done"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    modes = ["tcp", "stream", "udp", "chat", "wschat", "http", "idle-tcp", "idle-udp"]
    parser.add_argument("mode", choices=modes)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=1)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--window", type=int, default=4 * 65536)
    parser.add_argument("--rate", type=float, default=20000.0)
    parser.add_argument("--inflight", type=int, default=4)
    parser.add_argument("--hold", type=float, default=60.0)
    parser.add_argument("--setup-timeout", type=float, default=20.0)
    parser.add_argument("--linger", type=float, default=0.0)
    args = parser.parse_args()
    addr = (args.host, args.port)
    try:
        if args.mode == "tcp":
            run_tcp(args, addr)
        elif args.mode == "stream":
            run_stream(args, addr)
        elif args.mode == "udp":
            run_udp(args, addr)
        elif args.mode in ("chat", "wschat"):
            run_chat(args, addr, ws=args.mode == "wschat")
        elif args.mode == "http":
            run_http(args, addr)
        else:
            run_idle(args, addr, udp=args.mode == "idle-udp")
    except (OSError, ValueError) as exc:
        emit({"event": "error", "error": f"{type(exc).__name__}: {exc}"})
        sys.exit(2)


if __name__ == "__main__":
    main()
