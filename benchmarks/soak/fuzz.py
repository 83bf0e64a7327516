"""Scenario 4, hostile input: junk on every listener of every server for a bounded time,
while a few ordinary peers ("witnesses") go on using the same servers.

The servers run as users start them (chat with TCP, UDP and the web page, the time
services, the tutorial's HTTP server, echo over TCP and over UDP), all at once. For each
there is one fuzz process (:mod:`benchmarks.soak.fuzz_load`: random bytes and near-valid
input, per listener, from a generator seeded with the run's seed, printed in the
figures; ``SOAK_FUZZ_SEED=N`` replays a run) and one witness process
(:mod:`benchmarks.soak.fuzz_witness`). A row per server says what the junk got (how
connections ended, the error answers), what the witnesses saw, the server's memory and
whether its log has a traceback.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._harness import CLIServer, Load, Row, percentile


@dataclass(frozen=True)
class Shape:
    seconds: float  # of junk
    workers: int  # per listener
    interval: float  # between a witness's exchanges


FULL = Shape(150, 3, 0.25)
QUICK = Shape(20, 2, 0.25)

#: The most resident memory a server may use under the fuzz (MiB): an idle server is
#: 30-50 MiB; junk must never be buffered without bound (a 64 KiB line is refused, a
#: 2**62-byte WebSocket frame is refused by its header, a 16 KiB header block gets 431).
MAX_RSS_MIB = 200
#: What a handler crash leaves in a server's log.
CRASH = re.compile(r"Traceback|handler failed")

#: server name -> (CLI arguments, {listener kind: start-up line label}).
SERVERS: dict[str, tuple[list[str], dict[str, str]]] = {
    "chat": (
        [
            "chat",
            "serve",
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--web",
            "127.0.0.1:0",
            "--irc",
            "127.0.0.1:0",
        ],
        {
            "chat-tcp": "chat (tcp)",
            "chat-udp": "chat (udp)",
            "chat-ws": "chat (web)",
            "chat-irc": "chat (irc)",
        },
    ),
    "time": (
        [
            *("time", "serve", "--rfc868-port", "0", "--daytime-port", "0"),
            *("--sntp-port", "0", "--strftime-port", "0", "--host", "127.0.0.1"),
        ],
        {
            "rfc868-tcp": "rfc868-time (tcp)",
            "rfc868-udp": "rfc868-time (udp)",
            "daytime-tcp": "daytime (tcp)",
            "daytime-udp": "daytime (udp)",
            "sntp": "sntp (udp)",
            "strftime-tcp": "strftime (tcp)",
            "strftime-udp": "strftime (udp)",
        },
    ),
    "http": (["http", "serve", "--port", "0"], {"http": "http (tcp)"}),
    "echo": (["echo", "serve", "--port", "0"], {"echo-tcp": "echo (tcp)"}),
    "echo --udp": (["echo", "serve", "--port", "0", "--udp"], {"echo-udp": "echo (udp)"}),
}


def run(out: Path, quick: bool) -> list[Row]:
    shape = QUICK if quick else FULL
    seed = int(os.environ.get("SOAK_FUZZ_SEED", str(time.time_ns() % 1_000_000)))
    logs = out / "logs"
    began = time.monotonic()
    servers: dict[str, CLIServer] = {}
    loads: list[tuple[str, Load, Load]] = []
    results: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    with ExitStack() as stack:
        for name, (args, _) in SERVERS.items():
            tag = name.replace(" --", "-")
            server = CLIServer([*args, "--status", "127.0.0.1:0"], logs / f"fuzz-{tag}-server.log")
            servers[name] = stack.enter_context(server)
        try:
            for name, (_, labels) in SERVERS.items():
                tag = name.replace(" --", "-")
                ports = json.dumps({k: servers[name].port(v) for k, v in labels.items()})
                fuzz = Load(
                    "fuzz_load",
                    [
                        *("--ports", ports, "--seed", str(seed)),
                        *("--seconds", str(shape.seconds), "--workers", str(shape.workers)),
                    ],
                    logs / f"fuzz-{tag}-load.log",
                )
                witness = Load(
                    "fuzz_witness",
                    [
                        *("--ports", ports, "--seconds", str(shape.seconds)),
                        *("--interval", str(shape.interval)),
                    ],
                    logs / f"fuzz-{tag}-witness.log",
                )
                loads.append((name, fuzz, witness))
            for _, fuzz, witness in loads:
                fuzz.wait_ready(60)
                witness.wait_ready(60)
            for _, fuzz, witness in loads:
                witness.go()
                fuzz.go()
            for name, fuzz, witness in loads:
                budget = shape.seconds + 90
                results[name] = (fuzz.result(budget), witness.result(budget))
        finally:
            for _, fuzz, witness in loads:
                fuzz.kill()
                witness.kill()
        alive = {name: server.alive() for name, server in servers.items()}
        rss = {name: list(server.rss) for name, server in servers.items()}
    took = round(time.monotonic() - began, 1)
    rows = []
    for name, server in servers.items():
        fuzzed, witnessed = results[name]
        log = server.log.read_text(errors="replace")
        row = _row(name, seed, fuzzed, witnessed, log, alive[name], rss[name])
        row.figures["seconds"] = took
        rows.append(row)
    return rows


def _row(
    name: str,
    seed: int,
    fuzzed: dict[str, Any],
    witnessed: dict[str, Any],
    log: str,
    alive: bool,
    rss: list[tuple[float, int]],
) -> Row:
    listeners: dict[str, dict[str, Any]] = fuzzed["listeners"]
    witnesses: dict[str, dict[str, Any]] = witnessed["witnesses"]
    histogram: Counter[float] = Counter()
    for w in witnesses.values():
        for value, n in w["latency"].items():
            histogram[float(value)] += n
    wrong = [f"{n}: {text}" for n, w in witnesses.items() for text in w["wrong"]]
    errors = [f"{n}: {text}" for n, w in witnesses.items() for text in w["errors"]]
    crashes = [line for line in log.splitlines() if CRASH.search(line)]
    max_rss = round(max(kib for _, kib in rss) / 1024, 1) if rss else 0.0
    figures: dict[str, Any] = {
        "seed": seed,
        "junk_sent": sum(t["cases"] for t in listeners.values()),
        "junk": {n: t["cases"] for n, t in listeners.items()},
        "ends": {n: t["ends"] for n, t in listeners.items()},
        "error_answers": {n: t["answers"] for n, t in listeners.items()},
        "findings": {n: t["findings"] for n, t in listeners.items() if t["findings"]},
        "sent": sum(w["sent"] for w in witnesses.values()),
        "delivered": sum(w["right"] for w in witnesses.values()),
        "lost": sum(w["lost"] for w in witnesses.values()),
        "duplicated": sum(w["duplicated"] for w in witnesses.values()),
        "reordered": sum(w["reordered"] for w in witnesses.values()),
        "wrong_answers": len(wrong),
        "p50_ms": percentile(histogram, 0.5),
        "p99_ms": percentile(histogram, 0.99),
        "max_rss_mib": max_rss,
        "client_errors": len(errors),
        "witness": {n: {k: w[k] for k in ("sent", "right", "lost")} for n, w in witnesses.items()},
        "log_crash_lines": crashes[:5],
        "alive": alive,
    }
    if wrong or errors:
        figures["witness_problems"] = (wrong + errors)[:10]
    row = Row("hostile input fuzz", name, figures, rss_series=rss)
    # A log record is a timestamped line and what follows it (a traceback): the last line
    # of the first few that crashed says what it was.
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log)
    failing = [r for r in records if CRASH.search(r)]
    figures["tracebacks"] = [r.strip().splitlines()[-1][:200] for r in failing[:3]]
    row.bounds += [
        ("the server is up at the end", alive),
        (f"no traceback or handler failure in the server's log ({len(crashes)})", not crashes),
        ("witnesses: 0 lost", figures["lost"] == 0),
        ("witnesses: 0 wrong answers", not wrong),
        ("witnesses: 0 duplicated, 0 reordered", not figures["duplicated"] + figures["reordered"]),
        (f"witnesses: no errors ({errors[:2]})", not errors),
        (f"max RSS under {MAX_RSS_MIB} MiB", max_rss < MAX_RSS_MIB),
    ]
    for listener, tally in listeners.items():
        row.bounds.append((f"{listener}: junk was sent", tally["cases"] > 0))
        if listener == "chat-ws":
            missing = tally["answers"].get("no close frame", 0)
            row.bounds.append(
                (
                    f"{listener}: every malformed frame got its close frame and code"
                    f" ({missing} closed without one)",
                    missing == 0,
                )
            )
        row.bounds.append(
            (
                f"{listener}: every junk peer closed, answered or ignored as documented"
                f" ({tally['findings_total']} findings: {tally['findings'][:2]})",
                tally["findings_total"] == 0,
            )
        )
    return row
