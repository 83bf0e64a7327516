"""Scenario "kernel": readers that never read are dropped, and the kernel lets go of them.

One ``chat serve`` (the default policy, ``disconnect``, the default ``--max-backlog`` and
goodbye; ``--rate none`` so that the flood is quick). ``sleepers`` members join with a
small receive buffer and never read; ``readers`` members read everything; one talker
says numbered lines of LINE_BYTES bytes until it has seen every sleeper leave (dropped
for not reading), then stops. From then on, the bytes the kernel holds for the server's
port (the sum of ``tx_queue`` over its connections in ``/proc/net/tcp``: Send-Q) are read
every 0.1 s until they are under KERNEL_BOUND_MIB.

A graceful close of a dropped sleeper left its send queue pinned in a FIN-WAIT-1 socket
(53.6 MiB for 20 of them, 60 s later, and after the server exited) until the client
closed; the chat now resets such a member's connection (see the README), so the queue
goes at the end of its goodbye (5 s). The readers must have lost nothing: every line,
once, in order.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from ._harness import CLIServer, Row

#: What the kernel may still hold for the server's port once the sleepers are reset.
KERNEL_BOUND_MIB = 1.0
#: Seconds after the last drop by which it must be under the bound: the goodbye (5 s),
#: then a margin for a loaded machine.
FREE_WITHIN_S = 8.0
#: The sleepers' receive buffer (the kernel doubles it): their window stays small.
SLEEPER_RCVBUF = 4096
LINE_BYTES = 900


@dataclass(frozen=True)
class Shape:
    sleepers: int
    readers: int
    most_lines: int  # the talker gives up after this many (a bound, never reached)


FULL = Shape(100, 5, 200_000)
QUICK = Shape(20, 3, 50_000)


def kernel_queued(port: int) -> int:
    """Bytes the kernel holds in the send queues of the local TCP sockets on ``port``."""
    total = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as table:
                rows = table.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                total += int(fields[4].split(":")[0], 16)
    return total


async def _drive(port: int, shape: Shape) -> dict[str, object]:
    """The scenario's clients (see the module docstring); their figures."""
    sleepers = []
    for _ in range(shape.sleepers):
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLEEPER_RCVBUF)
        await sock.connect(("127.0.0.1", port))
        sleepers.append(sock)
    readers = [await _Client.connect(port) for _ in range(shape.readers)]
    for reader in readers:  # in the room: a session gets the room from its join on
        await reader.joined()
    talker = await _Client.connect(port)
    said = 0
    dropped = 0
    peak = 0
    freed_after: float | None = None
    done = trio.Event()

    async def talk() -> None:
        nonlocal said
        while not done.is_set() and said < shape.most_lines:
            await talker.send(b"%d %s\n" % (said, b"k" * LINE_BYTES))
            said += 1

    async def watch_drops() -> None:
        nonlocal dropped
        while dropped < shape.sleepers:
            dropped += sum(b" left #lobby" in line for line in await talker.lines())
        done.set()

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for reader in readers:
                nursery.start_soon(reader.read_all)
            async with trio.open_nursery() as talking:
                talking.start_soon(talk)
                talking.start_soon(watch_drops)
            last_drop = trio.current_time()
            nursery.start_soon(talker.read_all)  # it is a member too: it reads the rest
            while freed_after is None:
                queued = kernel_queued(port)
                peak = max(peak, queued)
                if queued < KERNEL_BOUND_MIB * 2**20:
                    freed_after = trio.current_time() - last_drop
                elif trio.current_time() - last_drop > 30:
                    break
                await trio.sleep(0.1)
            for reader in readers:  # the talker's last line reaches them, then they stop
                await reader.wait_upto(said - 1)
            nursery.cancel_scope.cancel()
    reset = 0
    for sock in sleepers:
        try:
            while await sock.recv(65536):
                pass
        except ConnectionResetError:
            reset += 1
        sock.close()
    numbers = [reader.numbers for reader in readers]
    for client in [*readers, talker]:
        client.sock.close()
    return {
        "said": said,
        "dropped": dropped,
        "reset_seen": reset,
        "peak_kib": peak // 1024,
        "freed_after_s": None if freed_after is None else round(freed_after, 2),
        "after_kib": kernel_queued(port) // 1024,
        "numbers": numbers,
    }


class _Client:
    """A line client on the chat's TCP port that reads everything it is sent."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self._rest = b""
        self.numbers: list[int] = []  # the talker's lines' numbers, as they came
        self._target: int | None = None
        self._reached = trio.Event()

    @classmethod
    async def connect(cls, port: int) -> _Client:
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", port))
        return cls(sock)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[await self.sock.send(view) :]

    async def lines(self) -> list[bytes]:
        data = await self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        *whole, self._rest = (self._rest + data).split(b"\n")
        return whole

    async def joined(self) -> None:
        """Read until the client's own join line (the first one it is sent)."""
        while not any(line.endswith(b" joined #lobby") for line in await self.lines()):
            pass

    async def read_all(self) -> None:
        while True:
            for line in await self.lines():
                if not line.startswith(b"[#lobby] "):
                    continue
                number = int(line.split(b": ", 1)[1].split(b" ", 1)[0])
                self.numbers.append(number)
                if self._target is not None and number >= self._target:
                    self._reached.set()

    async def wait_upto(self, number: int) -> None:
        """Return once the line numbered ``number`` (or a later one) has come."""
        self._target = number
        if self.numbers and self.numbers[-1] >= number:
            return
        await self._reached.wait()


def run(out: Path, quick: bool) -> list[Row]:
    shape = QUICK if quick else FULL
    args = [
        "chat",
        "serve",
        "--tcp",
        "127.0.0.1:0",
        "--udp",
        "none",
        "--web",
        "none",
        "--irc",
        "none",
    ]
    args += ["--status", "127.0.0.1:0", "--rate", "none"]
    # the drops are counted by their leave lines: a dropped reader leaves at once rather
    # than wait for a resume (its reset, this scenario's point, is the same either way)
    args += ["--resume-window", "0"]
    began = time.monotonic()
    with CLIServer(args, out / "logs" / "kernel-server.log") as server:
        port = server.port("chat (tcp)")
        figures = trio.run(_drive, port, shape)
        alive = server.alive()
        rss = list(server.rss)
    numbers = figures.pop("numbers")
    assert isinstance(numbers, list)
    said = figures["said"]
    assert isinstance(said, int)
    expected = list(range(said))
    lost = sum(len(set(expected) - set(got)) for got in numbers)
    duplicated = sum(len(got) - len(set(got)) for got in numbers)
    reordered = sum(got != sorted(got) for got in numbers)
    row = Row(
        "hostile kernel",
        f"{shape.sleepers} non-readers dropped",
        {
            "sent": said,
            "delivered": sum(len(got) for got in numbers),
            "lost": lost,
            "duplicated": duplicated,
            "reordered": reordered,
            "max_rss_mib": round(max((kib for _, kib in rss), default=0) / 1024, 1),
            **figures,
            "seconds": round(time.monotonic() - began, 1),
        },
        rss_series=rss,
    )
    freed = figures["freed_after_s"]
    row.bounds += [
        ("every non-reader dropped", figures["dropped"] == shape.sleepers),
        (
            f"kernel send queues for the port under {KERNEL_BOUND_MIB:g} MiB within "
            f"{FREE_WITHIN_S:g} s of the last drop",
            isinstance(freed, float) and freed <= FREE_WITHIN_S,
        ),
        ("every dropped non-reader saw a reset", figures["reset_seen"] == shape.sleepers),
        ("the readers lost nothing", lost == 0 and duplicated == 0 and reordered == 0),
        ("the server is up at the end", alive),
    ]
    return [row]
