"""``--workers N``: N processes serving the same ports, and their supervisor.

The supervisor is the process the user started. It never forks inside ``trio.run``: it
starts each worker as a fresh interpreter (``python -m triosock._cli._worker``, the
"spawn" way) and hands it the command's settings record, so that every worker runs
exactly the command the user typed, as one process, with ``SO_REUSEPORT`` listeners of
its own: the kernel spreads new TCP connections over the workers and keeps each UDP peer
address on one. Ports given as 0 are chosen once by the supervisor, so every worker gets
the same. What the workers share (the chat's Redis) is checked, or started, before the
first worker starts (the record's ``prepare``): a missing piece is one line and status
1, not workers that die and start again.

A worker that dies is started again after a pause that doubles from 0.5 s up to 10 s
(back to 0.5 s once a worker has run for 30 s), and the log says so. SIGINT, SIGTERM or
SIGHUP stop every worker gracefully (each gets SIGTERM, then its grace period and 5 s
more before it is killed), and the supervisor exits 0; a second one kills them and
exits 130 at once. Workers run in their own process group, so a Ctrl-C reaches only the
supervisor, which says so once and stops them. A worker also stops gracefully when its
stdin, a pipe from the supervisor, ends: when the supervisor dies without stopping it
(even by SIGKILL), no worker outlives it.

What a worker prints goes to the supervisor's output as it is, but for the start-up
lines: the supervisor shows one worker's, once, followed by ``N workers: pid ...``.
Each worker's log lines carry ``[worker I]``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Final

import trio

from ._console import STOP_SIGNALS, CLIError, say, stop_at_second_signal
from ._serve_settings import PortSlot, Served
from ._status_serve import Status, start_status
from ._status_sum import gather
from ._values import Address, parse_hostport
from ._workerenv import WORKER_MODULE, worker_environment

__all__ = ["supervise"]

LOGGER = logging.getLogger("triosock.workers")

#: The first pause before a dead worker is started again, and the longest.
FIRST_BACKOFF: Final = 0.5
MAX_BACKOFF: Final = 10.0
#: A worker that ran this long before it died starts again after FIRST_BACKOFF.
STABLE_AFTER: Final = 30.0
#: Seconds past its grace period a stopping worker has before it is killed.
KILL_AFTER_GRACE: Final = 5.0


def _reserve(slot: PortSlot) -> tuple[int, list[socket.socket]]:
    """A port free for every kind of ``slot`` on its host, held (SO_REUSEPORT, not
    listening) until the workers have bound it too."""
    for _ in range(50):
        held: list[socket.socket] = []
        port = 0
        try:
            for kind in slot.kinds:
                family = socket.AF_INET6 if ":" in slot.host else socket.AF_INET
                sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
                sock = socket.socket(family, sock_type)
                held.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((slot.host or "0.0.0.0", port))
                port = sock.getsockname()[1]
            return port, held
        except OSError:
            for sock in held:
                sock.close()
    raise CLIError(f"no free port on {slot.host} for {' and '.join(slot.kinds)}")


class _Workers:
    """The worker processes of one supervisor: their pids, their status ports, and
    whether they are being stopped."""

    def __init__(self, settings: Served, count: int) -> None:
        self.settings = settings
        self.count = count
        self.pids: dict[int, int] = {}
        self.status: dict[int, Address] = {}
        self.ready = [trio.Event() for _ in range(count)]
        self.stopping = False

    async def run(self, index: int) -> None:
        """Run worker ``index``, starting it again whenever it dies, until stopped."""
        backoff = FIRST_BACKOFF
        grace = self.settings.common.grace
        while True:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", WORKER_MODULE],
                env=worker_environment(index, self.settings),
                stdout=subprocess.PIPE,
                stdin=subprocess.PIPE,  # its end of the line: EOF when we are gone
                start_new_session=True,
            )
            self.pids[index] = process.pid
            born = trio.current_time()
            try:
                await _forward(
                    process,
                    first=index == 1,
                    ready=self.ready[index - 1],
                    on_status=lambda where: self.status.__setitem__(index, where),
                )
                status = await process.wait()
            finally:
                if process.returncode is None:  # cancelled: stop it, at worst kill it
                    with trio.CancelScope(shield=True):
                        await _stop_process(process, grace)
            self.ready[index - 1].set()  # (one that died before listening does not hold us)
            if self.stopping:
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

    def signal_all(self, signum: int) -> None:
        for pid in self.pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    async def kill_after(self, seconds: float) -> None:
        """The workers still running after ``seconds``: killed."""
        await trio.sleep(seconds)
        self.signal_all(signal.SIGKILL)


async def supervise(settings: Served) -> None:
    """Run ``settings.common.workers`` workers of the command ``settings`` asks for,
    until a stop signal; a second one kills them and ends the process at once."""
    common = settings.common
    held: list[socket.socket] = []
    ports: dict[str, object] = {}
    for slot in settings.port_slots():
        if slot.port == 0:
            port, sockets = _reserve(slot)
            ports[slot.field] = slot.value(port)
            held += sockets
    # The status port is the supervisor's; each worker answers on one of its own, on a
    # free loopback port that it tells us in its start-up line.
    worker_common = replace(
        common,
        workers=1,
        status=None if common.status is None else ("127.0.0.1", 0),
        status_given=True,
    )
    workers = _Workers(replace(settings, common=worker_common, **ports), common.workers)
    started = time.time()
    status = Status(common.service, common.status, given=common.status_given, prog=common.prog)
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as guard:
            async with trio.open_nursery() as nursery:
                for index in range(1, workers.count + 1):
                    nursery.start_soon(workers.run, index)
                for event in workers.ready:
                    await event.wait()
                for sock in held:  # every worker has bound its own now
                    sock.close()
                pids = ", ".join(str(workers.pids[i]) for i in sorted(workers.pids))
                say(f"{workers.count} workers: pid {pids}")
                line = await start_status(
                    guard, status, lambda: gather(workers.count, workers.status, started)
                )
                if line is not None:
                    say(line)
                async for signum in signals:
                    name = signal.Signals(signum).name
                    say(f"{name} received, stopping {workers.count} workers")
                    workers.stopping = True
                    workers.signal_all(signal.SIGTERM)
                    guard.start_soon(workers.kill_after, common.grace + KILL_AFTER_GRACE)
                    guard.start_soon(
                        stop_at_second_signal, signals, lambda: workers.signal_all(signal.SIGKILL)
                    )
                    break
                # Each worker task returns once its process has ended (its grace period).
            guard.cancel_scope.cancel()


_STATUS_LINE = re.compile(rb"^status \(http\) listening on (\S+): ")


async def _forward(
    process: trio.Process,
    *,
    first: bool,
    ready: trio.Event,
    on_status: Callable[[Address], object],
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
    with trio.move_on_after(grace + KILL_AFTER_GRACE):
        await process.wait()
        return
    process.kill()
    await process.wait()
