"""Scenario "pace": a sender is slowed by its own rate limit, never cut off, and refused
input costs the same budget as lines.

One ``chat serve`` with its defaults (50 lines a second, bursts of 100; websockets'
keepalive, a ping every 20 s and 20 s for its pong). The load runs in this process, on
real sockets, all at once:

* paste: a WebSocket user (no pings of its own, as a browser) sends ``paste`` separate
  messages into #lobby as fast as it can; a WebSocket watcher and a TCP reader read
  them. The rate limit holds the paster back for longer than the keepalive's 40 s, so
  its pong waits behind its own messages. Bounds: 0 lost, 0 reordered, the paster
  still connected at the end.
* refusals: a WebSocket user floods 64 KiB messages of ``{}`` lines (each refused) and
  a telnet user floods ``IAC AYT``, both into #flood, while a TCP pair in #quiet says a
  line every 20 ms and measures it. Bounds: each flooder gets at most ``burst + rate *
  t`` answers in the ``t`` seconds judged, and the pair's p99 stays under P99_MS.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from websockets.trio.client import ClientConnection, connect

from ._harness import CLIServer, Row, percentile

RATE, BURST = 50, 100  # the CLI's defaults
#: The quiet pair's p99 round trip while the floods run, at most.
P99_MS = 100.0
AYT = b"\xff\xf6"
FLOOD_MESSAGE = "{}\n" * 21_845  # 65,535 bytes, every line refused


@dataclass(frozen=True)
class Shape:
    paste: int  # separate messages
    flood_s: float  # how long the refusal floods are judged


# quick: 2,300 messages at 50 a second take 44 s, past the keepalive's 40 s
QUICK = Shape(2_300, 10.0)
FULL = Shape(10_000, 60.0)


def run(out: Path, quick: bool) -> list[Row]:
    shape = QUICK if quick else FULL
    args = ["chat", "serve", "--tcp", "127.0.0.1:0", "--web", "127.0.0.1:0", "--irc", "none"]
    args += ["--status", "127.0.0.1:0"]
    with CLIServer(args, out / "logs" / "pace-server.log") as server:
        tcp, web = server.port("chat (tcp)"), server.port("chat (web)")
        figures = trio.run(_load, tcp, web, shape)
        rss = list(server.rss)
    mib = round(max((k for _, k in rss), default=0) / 1024, 1)
    paste, floods = figures["paste"], figures["floods"]
    paste_row = Row(
        "pace",
        f"ws paste, {shape.paste} separate messages",
        {**paste, "max_rss_mib": mib},
        [
            ("0 lost", paste["lost"] == 0),
            ("0 reordered", paste["reordered"] == 0),
            ("paster not disconnected", paste["closed"] is None),
        ],
        rss_series=rss,
    )
    most = BURST + RATE * shape.flood_s + 1
    flood_row = Row(
        "pace",
        f"refusal floods ({shape.flood_s:g} s) beside a quiet pair",
        {**floods, "max_rss_mib": mib},
        [
            (f"ws refusals <= {most:g}", floods["ws_answers"] <= most),
            (f"telnet AYT answers <= {most:g}", floods["ayt_answers"] <= most),
            (f"quiet pair p99 < {P99_MS:g} ms", floods["p99_ms"] < P99_MS),
            ("quiet pair lost nothing", floods["lost"] == 0),
        ],
    )
    return [paste_row, flood_row]


async def _load(tcp: int, web: int, shape: Shape) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_paste, tcp, web, shape, result)
        nursery.start_soon(_floods, tcp, web, shape, result)
    return result


async def _texts(ws: ClientConnection) -> list[str]:
    message = await ws.recv()
    assert isinstance(message, str)
    return [json.loads(line).get("text", "") for line in message.splitlines()]


class _Lines:
    """A TCP chat user, read as lines."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.rest = b""

    @classmethod
    async def open(cls, port: int) -> _Lines:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def lines(self) -> list[bytes]:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("the server closed the connection")
        *lines, self.rest = (self.rest + data).split(b"\n")
        return lines

    async def until(self, wanted: bytes) -> None:
        while not any(wanted in line for line in await self.lines()):
            pass


async def _paste(tcp: int, web: int, shape: Shape, result: dict[str, dict[str, Any]]) -> None:
    url = f"ws://127.0.0.1:{web}/ws"
    expected = [f"paste {i:06d}" for i in range(shape.paste)]
    reader = await _Lines.open(tcp)
    await reader.until(b"joined #lobby")
    got: dict[str, list[str]] = {"watcher": [], "paster": [], "reader": []}
    closed: str | None = None
    deadline = shape.paste / RATE * 1.5 + 30
    async with (
        connect(url, ping_interval=None) as watcher,
        connect(url, ping_interval=None) as paster,
    ):
        while '"type":"joined"' not in str(await watcher.recv()):
            pass  # in the room: a session gets the room's lines from its join on

        async def ws_reader(name: str, ws: ClientConnection) -> None:
            while len(got[name]) < shape.paste:
                got[name] += [t for t in await _texts(ws) if t.startswith("paste ")]

        async def tcp_reader() -> None:
            while len(got["reader"]) < shape.paste:
                for line in await reader.lines():
                    _, said, text = line.partition(b": paste ")
                    if said:
                        got["reader"].append("paste " + text.decode())

        start = time.monotonic()
        with trio.move_on_after(deadline):
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(ws_reader, "watcher", watcher)
                    nursery.start_soon(ws_reader, "paster", paster)
                    nursery.start_soon(tcp_reader)
                    for line in expected:
                        await paster.send(line)
            except* Exception as group:  # the paster's close, above all
                closed = repr(group.exceptions[0])
        took = time.monotonic() - start
        if paster.close_code is not None:
            closed = f"{paster.close_code} {paster.close_reason}"
    await reader.stream.aclose()
    lost = sum(shape.paste - len(set(lines) & set(expected)) for lines in got.values())
    reordered = sum(lines != sorted(lines) for lines in got.values())
    result["paste"] = {
        "sent": shape.paste,
        "delivered": sum(len(lines) for lines in got.values()),
        "lost": lost,
        "reordered": reordered,
        "duplicated": sum(len(lines) - len(set(lines)) for lines in got.values()),
        "closed": closed,
        "took_s": round(took, 1),
    }


async def _floods(tcp: int, web: int, shape: Shape, result: dict[str, dict[str, Any]]) -> None:
    talker, listener = await _Lines.open(tcp), await _Lines.open(tcp)
    for user in (talker, listener):
        await user.stream.send_all(b"/join #quiet\n")
        await user.until(b"joined #quiet")
    await talker.until(b"joined #quiet")
    telnet = await _Lines.open(tcp)
    await telnet.until(b"welcome")
    await telnet.stream.send_all(b"/join #flood\n")
    latencies: dict[float, int] = {}
    counts = {"ws": 0, "ayt": 0, "sent": 0, "received": 0}
    pair_done = trio.Event()  # the pair stops talking: what it said still arrives
    async with connect(f"ws://127.0.0.1:{web}/ws", ping_interval=None) as flooder:
        await flooder.send("/join #flood")

        async def count_ws() -> None:
            while True:
                counts["ws"] += sum(t.startswith("refused") for t in await _texts(flooder))

        async def count_ayt() -> None:
            while True:
                counts["ayt"] += sum(b"yes, the server is here" in x for x in await telnet.lines())

        async def pair() -> None:
            sent: dict[bytes, float] = {}

            async def listen() -> None:
                while True:
                    for line in await listener.lines():
                        key = line.rpartition(b" ")[2]
                        if key in sent:
                            ms = round((time.monotonic() - sent.pop(key)) * 1000, 1)
                            latencies[ms] = latencies.get(ms, 0) + 1
                            counts["received"] += 1

            async with trio.open_nursery() as inner:
                inner.start_soon(listen)
                for i in range(10**9):
                    if pair_done.is_set():
                        await trio.sleep_forever()  # listening on
                    key = b"q%d" % i
                    sent[key] = time.monotonic()
                    counts["sent"] += 1
                    await talker.stream.send_all(b"quiet " + key + b"\n")
                    await trio.sleep(0.02)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(count_ws)
            nursery.start_soon(count_ayt)
            nursery.start_soon(pair)
            await trio.sleep(0.5)  # the pair alone a moment, and the joins done
            counts.update(ws=0, ayt=0)
            for _ in range(3):
                await flooder.send(FLOOD_MESSAGE)
            await telnet.stream.send_all(AYT * 30_000)
            await trio.sleep(shape.flood_s)
            ws_answers, ayt_answers = counts["ws"], counts["ayt"]
            pair_done.set()
            await trio.sleep(0.5)  # the pair's last lines arrive
            nursery.cancel_scope.cancel()
    for user in (talker, listener, telnet):
        await user.stream.aclose()
    result["floods"] = {
        "ws_answers": ws_answers,
        "ayt_answers": ayt_answers,
        "sent": counts["sent"],
        "delivered": counts["received"],
        "lost": counts["sent"] - counts["received"],
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
    }
