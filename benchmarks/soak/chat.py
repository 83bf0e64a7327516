"""Scenario 1, chat under mixed load: members over TCP, UDP and WebSocket in rooms, each
saying numbered lines, with others joining, leaving, renaming and sending direct
messages all the while; run once with the lossless policy (``--policy block``) and once
with the default one (``disconnect``) and some members that stop reading.

Loss is counted per pair of members of a room: what the sender sent (and the server
took: a sender that was itself disconnected counts only what it sent before), against
the distinct numbers the receiver got. A direct message counts the same way.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._harness import CLIServer, Load, Row, percentile, server_figures, server_status


@dataclass(frozen=True)
class Shape:
    roster: str  # kind:PROCESSESxMEMBERS,...
    rooms: int
    messages: int
    interval: float
    churn: int  # per load process
    stop_reading: int  # members of the first TCP process, in the default-policy run
    default_messages: int
    pad: int  # bytes added to each line in the default-policy run, to fill the stopped


FULL = Shape("tcp:2x250,udp:1x200,ws:2x150", 10, 100, 1.5, 10, 5, 40, 200)
QUICK = Shape("tcp:1x60,udp:1x20,ws:1x20", 5, 20, 0.5, 3, 3, 30, 1000)

#: The default-policy run's stall timeout: a member whose socket takes nothing this long
#: while output waits is disconnected (the CLI's default is 30 s; 5 s keeps the run short).
STALL = 5


def run(out: Path, quick: bool) -> list[Row]:
    shape = QUICK if quick else FULL
    return [
        _run(out, shape, "lossless (--policy block)", ["--policy", "block"], shape.messages, 0),
        _run(
            out,
            shape,
            "default policy, members that stop reading",
            ["--stall-timeout", str(STALL)],
            shape.default_messages,
            shape.stop_reading,
        ),
    ]


def _run(
    out: Path, shape: Shape, variant: str, options: list[str], messages: int, stoppers: int
) -> Row:
    tag = "lossless" if stoppers == 0 else "default"
    args = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--irc", "none"]
    args += ["--web", "127.0.0.1:0", "--status", "127.0.0.1:0", *options]
    loads: list[Load] = []
    began = time.monotonic()
    with CLIServer(args, out / "logs" / f"chat-{tag}-server.log") as server:
        addresses = {
            "tcp": server.port("chat (tcp)"),
            "udp": server.port("chat (udp)"),
            "ws": server.port("chat (web)"),
        }
        idle_rss = server.rss_now()
        try:
            for part in shape.roster.split(","):
                kind, _, size = part.partition(":")
                for process in range(int(size.split("x")[0])):
                    stop = ""
                    if kind == "tcp" and process == 0 and stoppers:
                        stop = ",".join(str(i) for i in range(stoppers))
                    loads.append(
                        Load(
                            "chat_load",
                            [
                                "--kind",
                                kind,
                                "--address",
                                f"127.0.0.1:{addresses[kind]}",
                                "--process",
                                str(process),
                                "--roster",
                                shape.roster,
                                "--rooms",
                                str(shape.rooms),
                                "--messages",
                                str(messages),
                                "--interval",
                                str(shape.interval),
                                "--churn",
                                str(shape.churn if kind != "udp" else 0),
                                "--stop-reading",
                                stop,
                                "--drain",
                                str(STALL + 5 if stoppers else 5),
                                "--pad",
                                str(shape.pad if stoppers else 0),
                            ],
                            out / "logs" / f"chat-{tag}-{kind}{process}.log",
                        )
                    )
            for load in loads:
                load.wait_ready(180)
            for load in loads:
                load.go()
            budget = messages * shape.interval + 120
            results = [load.result(budget) for load in loads]
            status = server_status(f"http://127.0.0.1:{server.port('status')}/status")
        finally:
            for load in loads:
                load.kill()
        alive = server.alive()
        after_rss = server.rss_now() if alive else 0
        rss = list(server.rss)
    row = _figures(results, shape, variant)
    # What the server saw (its status page at the end): the datagrams the kernel dropped
    # before the server read them are missing from udp_datagrams_in.
    row.figures["server"] = server_figures({}, status) if "chat" in status else status
    row.figures.update(
        idle_rss_mib=round(idle_rss / 1024, 1),
        max_rss_mib=round(max(kib for _, kib in rss) / 1024, 1) if rss else 0,
        after_rss_mib=round(after_rss / 1024, 1),
        seconds=round(time.monotonic() - began, 1),
    )
    row.rss_series = rss
    row.bounds.append(("the server is up at the end", alive))
    return row


def _kind(nick: str) -> str:
    """A roster member's transport: ``tcp0m17`` -> ``tcp``."""
    return nick.rstrip("0123456789").rstrip("m").rstrip("0123456789")


def _figures(results: list[dict[str, Any]], shape: Shape, variant: str) -> Row:
    sent_by: dict[str, int] = {}
    rooms: dict[str, str] = {}
    stopped: set[str] = set()
    closed: set[str] = set()
    errors: list[str] = []
    histogram: Counter[float] = Counter()
    per_second: dict[int, Counter[float]] = {}
    for result in results:
        sent_by.update(result["sent_by"])
        stopped |= set(result["stopped_reading"])
        closed |= set(result["closed_by_server"])
        errors += result["errors"]
        for second, buckets in result["latency"].items():
            counts = per_second.setdefault(int(second), Counter())
            for value, n in buckets.items():
                counts[float(value)] += n
                histogram[float(value)] += n
    for nick in sent_by:
        index = int(nick.split("m")[-1])
        rooms[nick] = f"#r{index % shape.rooms}"
    # A stopped member's own lines may have been cut off with it: not expected of it.
    senders = {nick: n for nick, n in sent_by.items() if nick not in stopped}
    expected = delivered = lost = duplicated = reordered = 0
    lost_at_stopped = 0
    lost_by_kind: Counter[str] = Counter()  # by the receiver's transport
    lost_by_sender_kind: Counter[str] = Counter()
    # sender -> the fewest of its lines a reading receiver missed: lost to the whole room
    # (never read by the server, or never fanned out), not on the way to one receiver
    least_missing: dict[str, int] = {}
    for result in results:
        for receiver, got in result["received"].items():
            for sender, count in senders.items():
                if sender == receiver or rooms[sender] != rooms[receiver]:
                    continue
                lines, distinct, back = got.get(sender, [0, 0, 0])
                missing = max(0, count - distinct)
                if receiver in stopped:
                    lost_at_stopped += missing
                    continue
                expected += count
                delivered += lines
                lost += missing
                lost_by_kind[_kind(receiver)] += missing
                lost_by_sender_kind[_kind(sender)] += missing
                least_missing[sender] = min(least_missing.get(sender, missing), missing)
                duplicated += lines - distinct
                reordered += back
    dm_sent = dm_lost = 0
    received_dms: dict[str, dict[str, list[int]]] = {}
    for result in results:
        received_dms.update(result["dms_received"])
    for result in results:
        for churner, targets in result["dms_sent"].items():
            for target, seqs in targets.items():
                if target in stopped:
                    continue
                dm_sent += len(seqs)
                dm_lost += len(set(seqs) - set(received_dms.get(target, {}).get(churner, [])))
    unexpected_closes = sorted(closed - stopped)
    row = Row(
        "chat mixed load",
        variant,
        {
            "members": len(sent_by),
            "sent": sum(sent_by.values()),
            "expected": expected,
            "delivered": delivered,
            "lost": lost,
            "duplicated": duplicated,
            "reordered": reordered,
            "dm_sent": dm_sent,
            "dm_lost": dm_lost,
            "stopped_reading": len(stopped),
            "disconnected": len(closed),
            "lost_at_stopped": lost_at_stopped,
            "lost_by_receiver": dict(lost_by_kind),
            "lost_by_sender": dict(lost_by_sender_kind),
            "lines_lost_to_whole_room": {
                kind: sum(n for sender, n in least_missing.items() if _kind(sender) == kind)
                for kind in sorted({_kind(sender) for sender in least_missing})
            },
            "p50_ms": percentile(histogram, 0.5),
            "p99_ms": percentile(histogram, 0.99),
            "client_errors": len(errors),
        },
    )
    row.latency_series = [
        (float(second), percentile(counts, 0.99)) for second, counts in sorted(per_second.items())
    ]
    row.bounds += [
        ("0 lost at members that read", lost == 0),
        ("0 duplicated", duplicated == 0),
        ("0 reordered per sender", reordered == 0),
        ("0 direct messages lost", dm_lost == 0),
        ("no client errors", not errors),
        (f"only members that stopped reading disconnected ({unexpected_closes[:3]})",
         not unexpected_closes),
    ]  # fmt: skip
    # A member that stops reading is disconnected once the kernel's buffers for it (up to
    # 4 MiB on Linux's loopback) and its backlog are full and it takes nothing for the
    # stall timeout: a figure, as a short run may not fill them.
    row.figures["stopped_disconnected"] = len(stopped & closed)
    # How long the load processes waited after their last line for the lines in flight.
    row.figures["drained_s"] = max((r.get("drained_s", 0.0) for r in results), default=0.0)
    return row
