"""``--workers N``: N processes serving the same ports, and a supervisor.

The supervisor is the process the user started. It never forks inside ``trio.run``: it
starts each worker as a fresh interpreter (``python -m triosock._worker``, the
"spawn" way) and hands it the parsed options, so every worker runs exactly the command
the user typed, with ``SO_REUSEPORT`` listeners of its own: the kernel spreads new TCP
connections over the workers and keeps each UDP peer address on one. Ports given as 0
are chosen once by the supervisor, so every worker gets the same.

A worker that dies is started again after a pause that doubles from 0.5 s up to 10 s
(back to 0.5 s once a worker has run for 30 s), and the log says so. SIGINT, SIGTERM or
SIGHUP stop every worker gracefully (each gets SIGTERM, then its grace period and 5 s
more before it is killed), and the supervisor exits 0. Workers run in their own process
group, so a Ctrl-C reaches only the supervisor, which stops them once. A worker also
stops gracefully when its stdin, a pipe from the supervisor, ends: when the supervisor
dies without stopping it (even by SIGKILL), no worker outlives it.

What a worker prints goes to the supervisor's output as it is, but for the start-up
lines: the supervisor shows one worker's, once, followed by ``N workers: pid ...``.
Each worker's log lines carry ``[worker I]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from .. import __version__
from ._common import CLIError, parse_hostport, say
from ._status import combine, fetch_status, status_starter

__all__ = [
    "PortSlot",
    "add_workers_option",
    "die_with_parent",
    "supervise",
    "worker_index",
    "workers_count",
]

LOGGER = logging.getLogger("triosock.workers")

#: Set in a worker's environment: its number, from 1; and the parsed options it runs.
WORKER_ENV = "TRIOSOCK_WORKER"
OPTIONS_ENV = "TRIOSOCK_WORKER_OPTIONS"
#: The first pause before a dead worker is started again, and the longest.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
#: A worker that ran this long before it died starts again after FIRST_BACKOFF.
STABLE_AFTER = 30.0


def die_with_parent() -> None:
    """In a child between fork and exec: have the kernel send it SIGTERM when the
    thread that started it ends (so start it from the main thread, which lives as long
    as the process: not through trio, which starts processes from worker threads).
    Linux only; elsewhere nothing."""
    if sys.platform != "linux":
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


_PR_SET_PDEATHSIG = 1


def worker_index() -> int | None:
    """This process's worker number, or None when it is not a worker."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value else None


def add_workers_option(parser: argparse.ArgumentParser, **options: object) -> None:
    parser.add_argument(
        "--workers",
        type=workers_count,
        metavar="N",
        help="serve with N processes on the same ports (SO_REUSEPORT), restarted when "
        "they die (default 1: this process)",
        **options,  # type: ignore[arg-type]
    )


def workers_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"must be from 1 to 256: {text}")
    return value


@dataclass(frozen=True)
class PortSlot:
    """One port option of a service: how to read and set it on the parsed options, and
    what it binds (``"tcp"``, ``"udp"`` or ``"both"``), to choose a free port for 0."""

    get: Callable[[argparse.Namespace], tuple[str, int] | None]
    set: Callable[[argparse.Namespace, int], None]
    kinds: tuple[str, ...]


def _reserve(host: str, kinds: tuple[str, ...]) -> tuple[int, list[socket.socket]]:
    """A port free for every kind on ``host``, held (SO_REUSEPORT, not listening) until
    the workers have bound it too."""
    for _ in range(50):
        held: list[socket.socket] = []
        port = 0
        try:
            for kind in kinds:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
                sock = socket.socket(family, sock_type)
                held.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host or "0.0.0.0", port))
                port = sock.getsockname()[1]
            return port, held
        except OSError:
            for sock in held:
                sock.close()
    raise CLIError(f"no free port on {host} for {' and '.join(kinds)}")


async def supervise(args: argparse.Namespace, slots: Sequence[PortSlot], grace: float) -> None:
    """Run ``args.workers`` workers of the command in ``args`` until a signal."""
    held: list[socket.socket] = []
    for slot in slots:
        where = slot.get(args)
        if where is not None and where[1] == 0:
            port, sockets = _reserve(where[0], slot.kinds)
            slot.set(args, port)
            held += sockets
    count = args.workers
    args.workers = 1
    # The status port is the supervisor's; each worker answers on one of its own, on a
    # free loopback port that it tells us in its start-up line.
    status_where = getattr(args, "status", None)
    worker_status: dict[int, tuple[str, int]] = {}
    if status_where is not None:
        args.status = ("127.0.0.1", 0)
    options = base64.b64encode(pickle.dumps(args)).decode("ascii")
    args.status = status_where
    pids: dict[int, int] = {}
    started = time.time()
    ready = [trio.Event() for _ in range(count)]
    stopping = False

    async def run_worker(index: int) -> None:
        backoff = FIRST_BACKOFF
        while True:
            env = dict(os.environ, **{WORKER_ENV: str(index), OPTIONS_ENV: options})
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "triosock._worker"],
                env=env,
                stdout=subprocess.PIPE,
                stdin=subprocess.PIPE,  # its end of the line: EOF when we are gone
                start_new_session=True,
            )
            pids[index] = process.pid
            born = trio.current_time()
            try:
                await _forward(
                    process,
                    first=index == 1,
                    ready=ready[index - 1],
                    on_status=lambda where: worker_status.__setitem__(index, where),
                )
                status = await process.wait()
            finally:
                if process.returncode is None:  # cancelled: stop it, at worst kill it
                    with trio.CancelScope(shield=True):
                        await _stop_process(process, grace)
            ready[index - 1].set()  # (one that died before listening does not hold us)
            if stopping:
                return
            ran = trio.current_time() - born
            if ran >= STABLE_AFTER:
                backoff = FIRST_BACKOFF
            LOGGER.warning(
                "worker %d (pid %d) ended with status %s after %.1f s; starting it again in %.1f s",
                index,
                process.pid,
                status,
                ran,
                backoff,
            )
            await trio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as guard:
            async with trio.open_nursery() as nursery:
                for index in range(1, count + 1):
                    nursery.start_soon(run_worker, index)
                for event in ready:
                    await event.wait()
                for sock in held:  # every worker has bound its own now
                    sock.close()
                say(f"{count} workers: pid {', '.join(str(pids[i]) for i in sorted(pids))}")
                start = status_starter(args, lambda: _gather(count, worker_status, started))
                if start is not None:
                    say(await start(guard))
                async for signum in signals:
                    say(f"{signal.Signals(signum).name} received, stopping {count} workers")
                    stopping = True
                    for pid in pids.values():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGTERM)
                    guard.start_soon(_kill_after, list(pids.values()), grace + 5)
                    break
                # Each worker task returns once its process has ended (its grace period).
            guard.cancel_scope.cancel()


async def _kill_after(pids: list[int], seconds: float) -> None:
    """The workers still running after ``seconds``: killed."""
    await trio.sleep(seconds)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def _gather(
    count: int, where: dict[int, tuple[str, int]], started: float
) -> dict[str, object]:
    """Every worker's figures, asked at once, and their sum."""
    answers: dict[int, dict[str, object]] = {}

    async def ask(index: int) -> None:
        address = where.get(index)
        if address is None:
            answers[index] = {"worker": index, "error": "starting"}
            await trio.lowlevel.checkpoint()
            return
        try:
            answers[index] = await fetch_status(address, wait=2.0)
        except (CLIError, OSError, trio.BrokenResourceError) as exc:
            answers[index] = {"worker": index, "error": str(exc) or type(exc).__name__}

    async with trio.open_nursery() as nursery:
        for index in range(1, count + 1):
            nursery.start_soon(ask, index)
    workers = [answers[i] for i in range(1, count + 1)]
    total = combine(workers)
    return {
        "service": total["service"],
        "version": __version__,
        "pid": os.getpid(),
        "worker": None,
        "started": round(started, 3),
        "uptime": round(time.time() - started, 3),
        "workers": workers,
        "total": total,
    }


_STATUS_LINE = re.compile(rb"^status \(http\) listening on (\S+): ")


async def _forward(
    process: trio.Process,
    *,
    first: bool,
    ready: trio.Event,
    on_status: Callable[[tuple[str, int]], object],
) -> None:
    """Copy the worker's output to ours, but for the start-up lines of all workers after
    the first (the same ports, said once) and their status lines (``on_status`` gets
    the address); set ``ready`` at its first listening line."""
    assert process.stdout is not None
    pending = b""
    async with process.stdout:
        while chunk := await process.stdout.receive_some():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                status = _STATUS_LINE.match(line)
                if status is not None:
                    with contextlib.suppress(argparse.ArgumentTypeError, UnicodeDecodeError):
                        on_status(parse_hostport(status.group(1).decode()))
                    continue
                startup = b"listening on" in line or line.startswith(b"join with")
                if b"listening on" in line:
                    ready.set()
                if first or not startup:
                    say(line.decode("utf-8", "replace"))


async def _stop_process(process: trio.Process, grace: float) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    with trio.move_on_after(grace + 5):
        await process.wait()
        return
    process.kill()
    await process.wait()
