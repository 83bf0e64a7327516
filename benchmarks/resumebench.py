"""How long a resume takes: a TCP user of ``chat serve`` loses its connection, another
user says N lines, and a new connection sends ``/resume TOKEN``; the time from that
line to the end of what it missed (the "end of earlier lines" notice), as a user's own
client sees it over loopback.

Run by ``benchmarks/run.py`` (the ``resume`` workload) against a server it started;
prints one JSON line per round (``{"event": "result", "resume_ms": ..., "lines": ...}``)
or ``{"event": "error", ...}``. Every round is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import time

TOKEN = re.compile(rb"your resume token: ([A-Za-z0-9_-]{32}) ")
ROUND_TIMEOUT = 30.0


class Lines:
    """A blocking TCP client read as lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=ROUND_TIMEOUT)
        self.rest = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, wanted: bytes) -> tuple[bytes, int]:
        """Read lines until one contains ``wanted``: that line, and how many came before."""
        seen = 0
        while True:
            while b"\n" in self.rest:
                line, self.rest = self.rest.split(b"\n", 1)
                if wanted in line:
                    return line, seen
                seen += 1
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed before {wanted!r}")
            self.rest += data

    def close(self) -> None:
        self.sock.close()


def one_round(port: int, missed: int, n: int) -> dict[str, object]:
    lost = Lines(port)
    token_line, _ = lost.until(b"your resume token")
    match = TOKEN.search(token_line)
    if match is None:
        raise RuntimeError("no resume token in the welcome (is --resume-window 0?)")
    token = match[1]
    lost.send(b"/nick resumer%d\n" % n)
    lost.until(b"is now known as resumer%d" % n)
    lost.close()  # no /quit: detached
    talker = Lines(port)
    while True:  # until the server has seen it go
        talker.send(b"/who\n")
        line, _ = talker.until(b"-!- in #lobby")
        if b"resumer%d (away)" % n in line:
            break
        time.sleep(0.01)
    talker.send(b"".join(b"missed line %d of round %d\n" % (i, n) for i in range(missed)))
    talker.until(b"missed line %d of round %d" % (missed - 1, n))
    back = Lines(port)
    started = time.perf_counter()
    back.send(b"/resume " + token + b"\n")
    back.until(b"earlier lines (times UTC")
    _, lines = back.until(b"-!- end of earlier lines")
    took = time.perf_counter() - started
    for user in (back, talker):
        user.send(b"/quit\n")
        user.close()
    return {"event": "result", "resume_ms": took * 1000, "lines": lines}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--missed", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for n in range(args.rounds):
        try:
            row = one_round(args.port, args.missed, n)
        except (OSError, RuntimeError, ConnectionError) as exc:
            row = {"event": "error", "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
