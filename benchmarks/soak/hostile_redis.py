"""Scenario "redis": what leases and nicks must survive when the Redis under the cluster
misbehaves. Two servers ("machines" on 127.0.0.2 and 127.0.0.3), each ``chat serve
--workers 2 --redis URL`` with the default lease (6 s), share one ``redis-server``; the
servers and Redis are cluster_procs' (as in scenario 3).

1. **Redis paused past the lease**: members on both servers talk (numbered lines) while
   Redis is stopped (``SIGSTOP``) for :data:`PAUSE` seconds, past the lease and past the
   commands' timeout, then for a while after. A member on each server reads the room.
   Bounds: no ``left`` line for anyone (nobody left), 0 lines lost, 0 duplicated.
2. **A nick race across a Redis restart**, :attr:`Shape.races` times: a user of the first
   server holds a nick; Redis is killed and started again, empty; a user of the second
   server claims that nick as soon as his server answers. Bounds: within
   :data:`ONE_OWNER` seconds of the restart ``/who`` lists the nick once, and a ``/msg``
   to it reaches the user who held it first.

The members are plain TCP clients in this process: a few dozen, on a run of under a
minute (quick).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ._harness import Row
from .cluster_procs import Redis, Supervisor, alive, now_ns

HOSTS = ("127.0.0.2", "127.0.0.3")
#: Seconds Redis is stopped in part 1: past the lease (6 s) and a command's timeout (5 s).
PAUSE = 8.0
#: The directory's lease, the servers' default.
LEASE = 6.0
#: Seconds after Redis restarted by which a raced nick must have one owner.
ONE_OWNER = 5.0
#: Seconds the whole scenario may take before it counts as hung.
GUARD = 240


@dataclass(frozen=True)
class Shape:
    talkers: int  # members saying numbered lines, on each server
    interval: float  # seconds between two lines of a member
    races: int  # nick races across a restart


FULL = Shape(25, 0.5, 5)
QUICK = Shape(5, 0.5, 2)


def run(out: Path, quick: bool) -> list[Row]:
    return trio.run(_run, out, QUICK if quick else FULL)


class Member:
    """A TCP chat member that keeps every line it reads."""

    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.lines: list[str] = []
        self.stream: trio.SocketStream | None = None
        self._changed = trio.Event()

    async def start(self, nursery: trio.Nursery, host: str, port: int) -> None:
        self.stream = await trio.open_tcp_stream(host, port)
        nursery.start_soon(self._read)
        await self.say(f"/nick {self.nick}")
        await self.wait(f"is now known as {self.nick}", 30)

    async def _read(self) -> None:
        assert self.stream is not None
        rest = b""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await self.stream.receive_some(65536):
                *lines, rest = (rest + data).split(b"\n")
                self.lines += [line.rstrip(b"\r").decode(errors="replace") for line in lines]
                self._changed.set()
                self._changed = trio.Event()

    async def say(self, line: str) -> None:
        assert self.stream is not None
        await self.stream.send_all(line.encode() + b"\n")

    async def wait(
        self,
        ends: str | tuple[str, ...],
        limit: float,
        start: int = 0,
        *,
        has: tuple[str, ...] = ("",),
    ) -> str | None:
        """The first line from index ``start`` on that ends with ``ends`` (one of them)
        and contains one of ``has``, waiting up to ``limit`` seconds; None if none came."""
        with trio.move_on_after(limit):
            while True:
                for line in self.lines[start:]:
                    if line.endswith(ends) and any(text in line for text in has):
                        return line
                start = len(self.lines)
                await self._changed.wait()
        return None

    async def who(self) -> list[str] | None:
        """``/who`` in its room, as listed (a nick listed twice is there twice)."""
        start = len(self.lines)
        await self.say("/who")
        line = await self.wait("", 5, start, has=("-!- in #lobby: ", "directory is unreachable"))
        if line is None or not line.startswith("-!- in #lobby: "):
            return None
        return line.split(": ", 1)[1].split(", ")

    async def aclose(self) -> None:
        if self.stream is not None:
            with trio.CancelScope(shield=True):
                await self.stream.aclose()


async def _run(out: Path, shape: Shape) -> list[Row]:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    redis = Redis(logs / "redis-redis.log")
    supervisors: list[Supervisor] = []
    members: list[Member] = []
    # Unwound in reverse, also on errors and hangs: the members, the servers, Redis,
    # the tasks; last, any worker left behind (they run in their own sessions).
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(_kill_workers, supervisors)
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)
        stack.push_async_callback(redis.aclose)
        with trio.fail_after(GUARD):  # a hang is a finding, not a stuck soak
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
                supervisor = Supervisor([*args, "--policy", "block"], logs / f"redis-{name}")
                supervisors.append(supervisor)
                stack.push_async_callback(supervisor.aclose)
                await supervisor.start(nursery)
            stack.push_async_callback(_close, members)
            ports = [s.port("chat (tcp)") for s in supervisors]
            paused = await _pause(nursery, shape, redis, ports, members)
            raced = await _races(nursery, shape, redis, ports, members)
            return [paused, raced]
    raise AssertionError("unreachable")  # (mypy: the block above returns or raises)


def _kill_workers(supervisors: list[Supervisor]) -> None:
    for supervisor in supervisors:
        for pid in supervisor.worker_pids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def _close(members: list[Member]) -> None:
    for member in members:
        await member.aclose()


async def _join(
    nursery: trio.Nursery, members: list[Member], nick: str, server: int, ports: list[int]
) -> Member:
    member = Member(nick)
    members.append(member)
    await member.start(nursery, HOSTS[server], ports[server])
    return member


async def _pause(
    nursery: trio.Nursery, shape: Shape, redis: Redis, ports: list[int], members: list[Member]
) -> Row:
    """Part 1: Redis paused past the lease while members talk."""
    readers = [await _join(nursery, members, f"reader{s}", s, ports) for s in (0, 1)]
    talkers = [
        await _join(nursery, members, f"t{s}x{i}", s, ports)
        for s in (0, 1)
        for i in range(shape.talkers)
    ]
    sent: Counter[str] = Counter()
    talking = True

    async def talk(member: Member) -> None:
        while talking:
            await member.say(f"n{sent[member.nick]}")
            sent[member.nick] += 1
            await trio.sleep(shape.interval)

    began = now_ns()
    async with trio.open_nursery() as chatter:
        for talker in talkers:
            chatter.start_soon(talk, talker)
        await trio.sleep(2)
        redis.pause()
        await trio.sleep(PAUSE)
        redis.resume()
        resumed = now_ns()
        await trio.sleep(LEASE + 3)  # past the grace lease and a few reaping passes
        talking = False
    last = {nick: f"] {nick}: n{count - 1}" for nick, count in sent.items()}
    for reader in readers:  # each reader has every talker's last line, or 20 s passed
        with trio.move_on_after(20):
            for tail in last.values():
                await reader.wait(tail, 20)
    nicks = {member.nick for member in [*readers, *talkers]}
    left = lost = dup = delivered = 0
    for reader in readers:
        got: Counter[tuple[str, str]] = Counter()
        for line in reader.lines:
            if line.startswith("* ") and line.endswith(" left #lobby"):
                left += line.split()[1] in nicks
            elif line.startswith("[#lobby] ") and ": n" in line:
                nick, _, number = line[len("[#lobby] ") :].partition(": n")
                got[nick, number] += 1
        delivered += sum(got.values())
        dup += sum(n - 1 for n in got.values())
        lost += sum(1 for nick, n in sent.items() for i in range(n) if (nick, str(i)) not in got)
    figures: dict[str, Any] = {
        "sent": sum(sent.values()),
        "delivered": delivered,
        "lost": lost,
        "duplicated": dup,
        "pause_s": PAUSE,
        "lease_s": LEASE,
        "left_lines_for_live_users": left,
        "talked_after_resume_s": round((now_ns() - resumed) / 1e9, 1),
        "run_s": round((now_ns() - began) / 1e9, 1),
    }
    bounds = [
        ("0 left lines for users who never left", left == 0),
        ("0 lost", lost == 0),
        ("0 duplicated", dup == 0),
    ]
    return Row("redis", f"paused {PAUSE:g} s, past the {LEASE:g} s lease", figures, bounds)


async def _races(
    nursery: trio.Nursery, shape: Shape, redis: Redis, ports: list[int], members: list[Member]
) -> Row:
    """Part 2: a nick claimed by another server's user right after Redis restarted."""
    two_owners = dm_lost = renamed = taken = 0
    settled: list[float] = []
    doubled: list[str] = []  # the /who answers that listed a raced nick twice
    told: list[float] = []  # seconds from the restart to the renamed member's notice
    for race in range(shape.races):
        holder = await _join(nursery, members, f"held{race}", 0, ports)
        claimer = await _join(nursery, members, f"claim{race}", 1, ports)
        await redis.kill()
        await redis.start(nursery)
        restarted = now_ns()
        wanted = f"held{race}"
        answer = None
        with trio.move_on_after(ONE_OWNER):
            while answer is None:  # as soon as its server answers
                start = len(claimer.lines)
                await claimer.say(f"/nick {wanted}")
                answer = await claimer.wait((f"is now known as {wanted}", "is taken"), 0.1, start)
        with trio.move_on_at(trio.current_time() + ONE_OWNER - (now_ns() - restarted) / 1e9):
            while (await claimer.who() or []).count(wanted) != 1:
                await trio.sleep(0.25)
            settled.append((now_ns() - restarted) / 1e9)
        listed = await claimer.who()  # past the bound, or once settled
        if listed is not None and listed.count(wanted) > 1:
            two_owners += 1
            doubled.append(", ".join(listed))
        if answer is not None and answer.endswith(wanted):  # his claim landed first
            if await claimer.wait("", ONE_OWNER, has=("went back to",)) is not None:
                renamed += 1
                told.append((now_ns() - restarted) / 1e9)
        elif answer is not None:
            taken += 1
        start = len(holder.lines)
        await claimer.say(f"/msg {wanted} to the first {wanted}")
        reached = await holder.wait(f"to the first {wanted}", 5, start)
        dm_lost += reached is None
    figures: dict[str, Any] = {
        "races": shape.races,
        "claims_renamed_back": renamed,
        "claims_refused": taken,
        "nicks_with_two_owners": two_owners,
        "who_with_two_owners": doubled,
        "dm_lost": dm_lost,
        "one_owner_after_s": max(settled, default=None),
        "renamed_told_after_s": max(told, default=None),
    }
    bounds = [
        (f"no nick with two owners {ONE_OWNER:g} s after the restart", two_owners == 0),
        (f"one owner within {ONE_OWNER:g} s, every race", len(settled) == shape.races),
        ("/msg reaches the first owner", dm_lost == 0),
    ]
    return Row("redis", "nick race across a restart", figures, bounds)
