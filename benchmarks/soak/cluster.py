"""Scenario 3, cluster faults: two chat servers ("machines" on 127.0.0.2 and 127.0.0.3)
with two workers each, sharing their rooms through one redis-server, under steady load
from separate processes (members on both servers in every room, saying numbered lines).
In one run, with steady load between the faults:

1. ``kill -9`` of one worker of the first server;
2. Redis stopped (``SIGSTOP``) for 2 s;
3. Redis killed (``kill -9``) and started again on its port 2 s later, empty.

The servers run with ``--resume-window 0``: the first fault's bounds are the leave lines
of the killed worker's users and their nicks freed within the lease. With resumes on
(the default) those users' sessions wait, adopted by a live worker, for their resume:
that is scenario 8's ("reconnect storm") and tests/test_cluster_acceptance.py's.

One row per fault, counted over the lines *sent* in that fault's part of the run (from
1 s before the fault to 1 s before the next), per pair of members of a room as scenario 1
does, and held to what README.md's guarantee table promises; see benchmarks/SOAK.md.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ._harness import Row
from .cluster_figures import Events, rows
from .cluster_procs import LoadProcess, Redis, Supervisor, Witness, alive, now_ns

HOSTS = ("127.0.0.2", "127.0.0.3")
#: Seconds Redis is stopped, and down, in faults 2 and 3.
PAUSE = 2.0
DOWN = 2.0
#: Seconds the whole scenario may take before it counts as hung.
GUARD = 420


@dataclass(frozen=True)
class Shape:
    processes: int  # load processes
    members: int  # members in each
    rooms: int
    interval: float  # seconds between two lines of a member
    steady: float  # seconds of steady load before each fault, and after the last


FULL = Shape(4, 60, 6, 1.0, 12.0)
QUICK = Shape(2, 30, 3, 0.5, 2.5)


def run(out: Path, quick: bool) -> list[Row]:
    return trio.run(_run, out, QUICK if quick else FULL)


async def _run(out: Path, shape: Shape) -> list[Row]:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    redis = Redis(logs / "cluster-redis.log")
    supervisors: list[Supervisor] = []
    loads: list[LoadProcess] = []
    witnesses: list[Witness] = []
    try:
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(GUARD):  # a hang is a finding, not a stuck soak
                    result = await _scenario(
                        nursery, logs, shape, redis, supervisors, loads, witnesses
                    )
            finally:
                with trio.CancelScope(shield=True):
                    for witness in witnesses:
                        await witness.aclose()
                    for load in loads:
                        await load.aclose()
                    for supervisor in supervisors:
                        await supervisor.aclose()
                    await redis.aclose()
                nursery.cancel_scope.cancel()
    finally:
        # However it ended: no worker of ours left (they run in their own sessions).
        for supervisor in supervisors:
            for pid in supervisor.worker_pids:
                if alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
    return result


async def _scenario(
    nursery: trio.Nursery,
    logs: Path,
    shape: Shape,
    redis: Redis,
    supervisors: list[Supervisor],
    loads: list[LoadProcess],
    witnesses: list[Witness],
) -> list[Row]:
    began = now_ns()
    await redis.start(nursery)
    for name, host in zip("ab", HOSTS, strict=True):
        args = [
            "chat",
            "serve",
            "--tcp",
            f"{host}:0",
            "--udp",
            "none",
            "--web",
            "none",
            "--irc",
            "none",
        ]
        args += ["--status", f"{host}:0", "--workers", "2", "--redis", redis.url]
        args += ["--resume-window", "0"]  # sessions end with their worker: see above
        supervisors.append(Supervisor(args, logs / f"cluster-server-{name}"))
    async with trio.open_nursery() as starting:
        for supervisor in supervisors:
            starting.start_soon(supervisor.start, nursery)
    ports = [supervisor.port("chat (tcp)") for supervisor in supervisors]
    servers = ",".join(f"{host}:{port}" for host, port in zip(HOSTS, ports, strict=True))
    for process in range(shape.processes):
        load = LoadProcess(
            [
                "--process",
                str(process),
                "--servers",
                servers,
                "--members",
                str(shape.members),
                "--rooms",
                str(shape.rooms),
                "--interval",
                str(shape.interval),
            ],
            logs / f"cluster-load{process}.log",
        )
        loads.append(load)
        await load.start(nursery)
    placed: dict[str, list[Any]] = {}  # nick -> [guest, server]
    with trio.fail_after(180):
        for load in loads:
            placed.update(await load.ready())
    # The witnesses, one in each room, on the server that is not faulted.
    for room in range(shape.rooms):
        witness = Witness(f"w{room}", f"#r{room}")
        witnesses.append(witness)
        await witness.start(nursery, HOSTS[1], ports[1])
    # Which worker serves whom: the workers' "GUEST joined" log lines.
    worker_of: dict[str, tuple[int, int]] = {}
    with trio.move_on_after(10):
        while len(worker_of) < len(placed):
            for nick, (guest, server) in placed.items():
                worker = supervisors[server].guests_of_worker().get(guest)
                if worker is not None:
                    worker_of[nick] = (server, worker)
            await trio.sleep(0.1)
    rss: list[tuple[int, int]] = []  # (ns, KiB of every worker)

    async def sample_rss() -> None:
        while True:
            rss.append((now_ns(), sum(s.workers_rss_kib() for s in supervisors)))
            await trio.sleep(0.5)

    nursery.start_soon(sample_rss)
    events = Events(began=began, go=now_ns(), unmapped=sorted(set(placed) - set(worker_of)))
    for load in loads:
        await load.say("go")
    await trio.sleep(shape.steady)

    # 1: kill -9 of worker 1 of the first server.
    victim = supervisors[0].pids()[0]
    killed = {nick for nick, place in worker_of.items() if place == (0, 1)}
    events.killed = sorted(killed)
    events.victim_pid = victim
    events.kill = now_ns()
    os.kill(victim, signal.SIGKILL)
    room_of = {nick: f"#r{_number(nick, shape) % shape.rooms}" for nick in placed}
    vanished: list[int | None] = []

    async def vanish(witness: Witness) -> None:
        ghosts = {nick for nick in killed if room_of[nick] == witness.room}
        if ghosts:
            vanished.append(await witness.wait_who(lambda names: not names & ghosts, 20))

    async with trio.open_nursery() as watching:
        for witness in witnesses:
            watching.start_soon(vanish, witness)
    if vanished and None not in vanished:
        events.vanished_s = (max(t for t in vanished if t) - events.kill) / 1e9
    # The supervisor starts the worker again (after 0.5 s).
    with trio.move_on_after(15):
        while not _restarted(supervisors[0], victim):
            await trio.sleep(0.1)
    events.restarted = _restarted(supervisors[0], victim)
    await trio.sleep(shape.steady)

    # 2: Redis stopped for 2 s.
    events.pause = now_ns()
    redis.pause()
    await trio.sleep(PAUSE)
    redis.resume()
    events.resume = now_ns()
    await trio.sleep(shape.steady)

    # 3: Redis killed, and started again on its port 2 s later.
    events.redis_kill = now_ns()
    await redis.kill()
    await trio.sleep(DOWN)
    await redis.start(nursery)
    events.restart = now_ns()
    survivors = {nick for nick in placed if nick not in killed}
    back: list[int | None] = []

    async def whole(witness: Witness) -> None:
        room = {nick for nick in survivors if room_of[nick] == witness.room}
        back.append(await witness.wait_who(lambda names: room <= names, 10))

    async with trio.open_nursery() as watching:
        for witness in witnesses:
            watching.start_soon(whole, witness)
    if back and None not in back:
        events.who_back_s = (max(t for t in back if t) - events.restart) / 1e9
    await trio.sleep(shape.steady)
    events.stop = now_ns()
    for load in loads:
        await load.say("stop")
    with trio.fail_after(120):
        results = [await load.result() for load in loads]
    events.end = now_ns()
    events.witness_closed = [w.closed_at for w in witnesses if w.closed_at]
    events.witness_left = {w.room: w.left for w in witnesses}
    members: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    for result in results:
        members.update(result["members"])
        errors += result["errors"]
    return rows(members, worker_of, events, rss, errors)


def _restarted(supervisor: Supervisor, victim: int) -> bool:
    children = supervisor.children()
    return victim not in children and len(children) == 2


def _number(nick: str, shape: Shape) -> int:
    process, _, index = nick[1:].partition("m")
    return int(process) * shape.members + int(index)
