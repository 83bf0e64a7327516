"""Logins per second while a room is busy, and the room's latency meanwhile.

Against a ``chat serve`` the runner started (``--rate none``): first K accounts are
registered, each from a loopback address of its own (127.0.2.1, 127.0.2.2, ...:
registrations are paced per address). Then a room probe runs throughout: one user says
``probe SEQ T_NS`` in ``#lobby`` every 10 ms, and another user there takes each line's
latency (its arrival less ``T_NS``, one process's monotonic clock). Two windows:

* **quiet**: the probe alone, for ``--quiet`` seconds;
* **busy**: for ``--busy`` seconds, C clients (each with its own account and its own
  source address, so that no attempt is refused unchecked) loop: connect, ``/login NICK
  PASSWORD``, wait for the answer, ``/quit``, wait for the close.

Run by ``benchmarks/run.py`` (the ``logins`` workload); prints JSON lines: ``ready``
(set-up done, the probe flowing), ``quiet`` and ``busy`` (a window opens), ``busy-end``
(it closes; logins under way finish after it), then ``result``; or ``{"event": "error",
...}``, exiting 1. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import re
import resource
import secrets
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

HOST = "127.0.0.1"
PROBE_SENDER = "127.0.1.1"
PROBE_RECEIVER = "127.0.1.2"
REGISTER_TIMEOUT = 60.0  # one registration, queued behind the others' hashes
LOGIN_TIMEOUT = 30.0  # one login: its hash waits for the server's two hashing threads
QUIT_TIMEOUT = 5.0
SETUP_TIMEOUT = 120.0
PROBE_INTERVAL = 0.010
PROBE_DRAIN = 3.0  # after the busy window, how long the probe's last lines may take
MAX_LOGINS_PER_CLIENT = 100_000

LOGGED_IN = b"-!- you are logged in as "
LOGIN_ANSWERS = (
    LOGGED_IN,
    b"-!- login failed",
    b"-!- your password is right, but",
    b"accounts cannot be reached",
)
REGISTERED = b" is yours: "
REGISTER_ANSWERS = (
    REGISTERED,
    b"-!- not registered",
    b"is registered already",
    b" is registered: /login",
    b"-!- nick ",
    b"-!- a nick",
    b"-!- guest nicks cannot",
    b"accounts cannot be reached",
)
PROBE = re.compile(rb": probe (\d+) (\d+)$")


class Failed(Exception):
    """The set-up or the probe did not work: the run says why and exits 1."""


def source(index: int) -> str:
    """The loopback source address of account ``index`` (one each)."""
    return f"127.0.{2 + index // 250}.{1 + index % 250}"


class Lines:
    """A blocking TCP client from a given loopback source address, read as lines."""

    def __init__(self, port: int, address: str, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.bind((address, 0))
            self.sock.connect((HOST, port))
        except OSError:
            self.sock.close()
            raise
        self.rest = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self, deadline: float) -> bytes | None:
        """The next line, or None at the end of the stream; TimeoutError at ``deadline``."""
        while b"\n" not in self.rest:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                return None
            self.rest += data
        line, self.rest = self.rest.split(b"\n", 1)
        return line

    def answer(self, markers: Sequence[bytes], deadline: float) -> bytes:
        """The first line holding one of ``markers``."""
        while True:
            line = self.line(deadline)
            if line is None:
                raise ConnectionError("closed before an answer")
            if any(marker in line for marker in markers):
                return line

    def until_closed(self, deadline: float) -> None:
        """Read (and drop) everything until the server closes, or ``deadline``."""
        for _ in range(1_000_000):
            if self.line(deadline) is None:
                return

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class Account:
    nick: str
    password: str
    address: str


def register(port: int, account: Account) -> None:
    """Register ``account`` from its own address; Failed with the server's answer if not."""
    deadline = time.monotonic() + REGISTER_TIMEOUT
    user = Lines(port, account.address, REGISTER_TIMEOUT)
    try:
        user.send(b"/nick %s\n/register %s\n" % (account.nick.encode(), account.password.encode()))
        answer = user.answer(REGISTER_ANSWERS, deadline)
        if REGISTERED not in answer:
            raise Failed(f"registering {account.nick}: {answer.decode(errors='replace')}")
        user.send(b"/quit\n")
        user.until_closed(time.monotonic() + QUIT_TIMEOUT)
    finally:
        user.close()


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Probe:
    """One user saying a timestamped line every 10 ms, another one in the room timing
    each line's arrival."""

    def __init__(self, port: int) -> None:
        self.receiver = Lines(port, PROBE_RECEIVER, 10.0)
        self.sender = Lines(port, PROBE_SENDER, 10.0)
        self.stop = threading.Event()
        self.sent: dict[int, int] = {}  # seq -> send time (monotonic ns)
        self.received: dict[int, int] = {}  # seq -> latency ns
        self.error = ""
        self.threads = [
            threading.Thread(target=self._receive, daemon=True),
            threading.Thread(target=self._drop, daemon=True),
            threading.Thread(target=self._send, daemon=True),
        ]

    def start(self, deadline: float) -> None:
        for thread in self.threads:
            thread.start()
        while not self.received:  # its first line has gone round
            if self.error:
                raise Failed(f"probe: {self.error}")
            if time.monotonic() > deadline:
                raise Failed("probe: no line came round in time")
            time.sleep(0.01)

    def _send(self, seconds: float = 3600.0) -> None:
        start = time.monotonic()
        due = start
        try:
            for seq in range(int(seconds / PROBE_INTERVAL)):
                if self.stop.is_set():
                    return
                now_ns = time.monotonic_ns()
                self.sent[seq] = now_ns
                self.sender.send(b"probe %d %d\n" % (seq, now_ns))
                due += PROBE_INTERVAL
                now = time.monotonic()
                if due < now - PROBE_INTERVAL:  # fell behind: no burst to catch up
                    due = now
                self.stop.wait(max(0.0, due - now))
        except OSError as exc:
            self.error = self.error or f"sender: {exc}"

    def _drop(self) -> None:
        """The sender's own copy of the room (it must not pile up in its socket)."""
        self._read(self.sender, None)

    def _receive(self) -> None:
        self._read(self.receiver, self.received)

    def _read(self, user: Lines, into: dict[int, int] | None) -> None:
        try:
            while not self.stop.is_set():
                try:
                    line = user.line(time.monotonic() + 0.2)
                except TimeoutError:
                    continue
                if line is None:
                    if not self.stop.is_set():
                        self.error = self.error or "the server closed a probe connection"
                    return
                if into is None:
                    continue
                now_ns = time.monotonic_ns()
                found = PROBE.search(line)
                if found:
                    into[int(found[1])] = now_ns - int(found[2])
        except OSError as exc:
            if not self.stop.is_set():
                self.error = self.error or f"receiver: {exc}"

    def window(self, start_ns: int, end_ns: int) -> tuple[list[float], int]:
        """Latencies (ms) of the lines sent in the window, and how many never came."""
        seqs = [seq for seq, t in list(self.sent.items()) if start_ns <= t < end_ns]
        latencies = [self.received[s] / 1e6 for s in seqs if s in self.received]
        return latencies, len(seqs) - len(latencies)

    def wait_for(self, end_ns: int, seconds: float) -> None:
        """Until every line sent before ``end_ns`` came round, or ``seconds``."""
        deadline = time.monotonic() + seconds
        wanted = [seq for seq, t in list(self.sent.items()) if t < end_ns]
        while time.monotonic() < deadline and any(s not in self.received for s in wanted):
            time.sleep(0.02)

    def close(self) -> None:
        self.stop.set()
        for user in (self.sender, self.receiver):
            with contextlib.suppress(OSError):
                user.send(b"/quit\n")
        for thread in self.threads:
            thread.join(2.0)
        self.sender.close()
        self.receiver.close()


@dataclass
class Attempt:
    started: float
    ended: float
    ok: bool
    why: str


def login_loop(
    port: int, account: Account, until: float, attempts: list[Attempt], lock: threading.Lock
) -> None:
    """Connect, ``/login``, the answer, ``/quit``, the close; again until ``until``."""
    nick = account.nick.encode()
    line = b"/login %s %s\n" % (nick, account.password.encode())
    for _ in range(MAX_LOGINS_PER_CLIENT):
        if time.monotonic() >= until:
            return
        started = time.monotonic()
        ok, why = False, ""
        try:
            user = Lines(port, account.address, LOGIN_TIMEOUT)
        except OSError as exc:
            why = f"connect: {type(exc).__name__}: {exc}"
        else:
            try:
                started = time.monotonic()
                user.send(line)
                answer = user.answer(LOGIN_ANSWERS, started + LOGIN_TIMEOUT)
                ok = LOGGED_IN in answer
                why = "" if ok else answer.decode(errors="replace").replace(account.nick, "NICK")
            except (OSError, ConnectionError) as exc:  # TimeoutError is an OSError
                why = f"{type(exc).__name__}: {exc}"
            ended = time.monotonic()
            try:
                user.send(b"/quit\n")
                user.until_closed(time.monotonic() + QUIT_TIMEOUT)
            except OSError:
                pass
            finally:
                user.close()
            with lock:
                attempts.append(Attempt(started, ended, ok, why))
            continue
        with lock:
            attempts.append(Attempt(started, time.monotonic(), ok, why))
        time.sleep(0.05)  # a refused connect: do not spin


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace) -> dict[str, object]:
    tag = secrets.token_hex(3)  # each run registers accounts of its own
    accounts = [
        Account(f"lb{tag}x{i}", f"secret-{tag}-{i}-{secrets.token_hex(4)}", source(i))
        for i in range(args.clients)
    ]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(10, args.clients)) as pool:
        futures = [pool.submit(register, args.port, account) for account in accounts]
        finished, _ = concurrent.futures.wait(futures, timeout=SETUP_TIMEOUT)
        for future in futures:
            if future not in finished:
                raise Failed(f"registrations not done within {SETUP_TIMEOUT:g} s")
            exc = future.exception()
            if isinstance(exc, Failed):
                raise exc
            if exc is not None:
                raise Failed(f"registering: {type(exc).__name__}: {exc}")
    registered_s = time.monotonic() - started
    probe = Probe(args.port)
    try:
        probe.start(time.monotonic() + 10.0)
        time.sleep(args.warmup)
        emit("ready", accounts=len(accounts), register_s=round(registered_s, 3))

        emit("quiet")
        quiet_ns = time.monotonic_ns()
        time.sleep(args.quiet)
        busy_ns = time.monotonic_ns()
        emit("busy")
        cpu_before = _cpu()
        busy_start = time.monotonic()
        until = busy_start + args.busy
        attempts: list[Attempt] = []
        lock = threading.Lock()
        threads = [
            threading.Thread(
                target=login_loop, args=(args.port, account, until, attempts, lock), daemon=True
            )
            for account in accounts
        ]
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, until - time.monotonic()))
        end_ns = time.monotonic_ns()
        client_cpu = _cpu() - cpu_before
        emit("busy-end")
        finish = until + LOGIN_TIMEOUT + QUIT_TIMEOUT + 5
        for thread in threads:
            thread.join(max(0.0, finish - time.monotonic()))
        unfinished = sum(thread.is_alive() for thread in threads)
        probe.wait_for(end_ns, PROBE_DRAIN)
        if probe.error:
            raise Failed(f"probe: {probe.error}")
        quiet, quiet_lost = probe.window(quiet_ns, busy_ns)
        busy, busy_lost = probe.window(busy_ns, end_ns)
    finally:
        probe.close()
    with lock:
        done = list(attempts)
    in_window = [a for a in done if a.ended <= until]
    succeeded = [a for a in done if a.ok]
    failures = collections.Counter(a.why for a in done if not a.ok)
    busy_s = max(1e-9, until - busy_start)
    return {
        "clients": args.clients,
        "quiet_s": round((busy_ns - quiet_ns) / 1e9, 3),
        "busy_s": round(busy_s, 3),
        "logins_per_s": sum(a.ok for a in in_window) / busy_s,
        "logins": len(succeeded),
        "attempts": len(done),
        "failures": sum(failures.values()),
        "failure_reasons": dict(failures.most_common(5)),
        "unfinished_clients": unfinished,
        "login_p50_ms": percentile([(a.ended - a.started) * 1000 for a in succeeded], 0.5),
        "login_p99_ms": percentile([(a.ended - a.started) * 1000 for a in succeeded], 0.99),
        "quiet_p50_ms": percentile(quiet, 0.5),
        "quiet_p99_ms": percentile(quiet, 0.99),
        "quiet_lines": len(quiet),
        "quiet_lost": quiet_lost,
        "busy_p50_ms": percentile(busy, 0.5),
        "busy_p99_ms": percentile(busy, 0.99),
        "busy_max_ms": max(busy, default=None),
        "busy_lines": len(busy),
        "busy_lost": busy_lost,
        "client_cpu_pct": 100 * client_cpu / busy_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, default=50, help="logins at once (50)")
    parser.add_argument("--quiet", type=float, default=3.0, help="quiet window, s (3)")
    parser.add_argument("--busy", type=float, default=5.0, help="window with logins, s (5)")
    parser.add_argument("--warmup", type=float, default=0.5, help="probe warm-up, s (0.5)")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 2000:
        parser.error("--clients must be between 1 and 2000")
    for name in ("quiet", "busy", "warmup"):
        if not 0 <= getattr(args, name) <= 600:
            parser.error(f"--{name} must be between 0 and 600 seconds")
    # 50 mostly idle threads: let the probe's receiver have the GIL soon after its line
    sys.setswitchinterval(0.001)
    try:
        result = run(args)
    except (Failed, OSError) as exc:
        emit(
            "error", error=f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else str(exc)
        )
        return 1
    emit("result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
