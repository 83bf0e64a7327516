"""Benchmark runner: ``python -m benchmarks.run [--quick] [--only W] [--repeat N] [--out DIR]``.

Each server runs in its own process (pinned to one core), the load client in another (pinned
to the other core); see benchmarks/README.md for what each workload measures.  Prints progress
lines and a table of medians with ratios against raw trio, and writes results.json,
results.md and results.png into the results folder.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import _ircd, _stacks
from benchmarks._procs import (
    ClientError,
    LoadClient,
    Pinning,
    Processes,
    RedisServer,
    Server,
    Unavailable,
    _Client,
    server_env,
    tcp_connections,
)
from benchmarks._report import WORKLOADS, Cell, Results
from benchmarks._stacks import Stack

ROOT = Path(__file__).resolve().parent.parent
ALL_WORKLOADS = (
    "echo",
    "lines",
    "stream",
    "udp",
    "chat",
    "wsfanout",
    "irc",
    "cluster",
    "resume",
    "logins",
    "hub",
    "memory",
    "http",
)
RESUME_MISSED = 1000
CHAT_SETUP_TIMEOUT = 90.0
# the cluster's load client keeps its connections open after its result (until the runner
# has read Redis's counters and the workers' connections), at most this long
CLUSTER_LINGER = 10.0
QUIET_TIMEOUT = 30.0


@dataclass(frozen=True)
class Settings:
    repeat: int
    duration: float
    warmup: float
    echo_conns: tuple[int, ...]
    line_conns: tuple[int, ...]
    stream_conns: tuple[int, ...]
    udp_peers: tuple[int, ...]
    chat_subscribers: tuple[int, ...]
    chat_rate: float
    chat_inflight: int
    wsfanout_subscribers: tuple[int, ...]
    irc_subscribers: tuple[int, ...]
    cluster_subscribers: tuple[int, ...]
    hub_subscribers: tuple[int, ...]
    hub_deliveries: int
    memory_conns: int
    http_conns: tuple[int, ...]
    resume_rounds: int = 5
    # logins at once (each its own account and source address), and the probe's windows
    # without and with them (benchmarks/loginbench.py)
    login_clients: int = 50
    login_quiet: float = 3.0
    login_busy: float = 5.0


QUICK = Settings(
    repeat=1,
    duration=0.4,
    warmup=0.15,
    echo_conns=(1, 100),
    line_conns=(10,),
    stream_conns=(1,),
    udp_peers=(10,),
    chat_subscribers=(100,),
    chat_rate=20000,
    chat_inflight=4,
    wsfanout_subscribers=(100,),
    irc_subscribers=(100,),
    cluster_subscribers=(100,),
    hub_subscribers=(10, 10000),
    hub_deliveries=100_000,
    memory_conns=1000,
    http_conns=(10,),
    resume_rounds=2,
    login_clients=10,
    login_quiet=1.0,
    login_busy=2.0,
)
FULL = Settings(
    repeat=3,
    duration=2.0,
    warmup=0.5,
    echo_conns=(1, 10, 100),
    line_conns=(1, 10, 100),
    stream_conns=(1,),
    udp_peers=(1, 10),
    chat_subscribers=(10, 100, 1000),
    chat_rate=20000,
    chat_inflight=4,
    wsfanout_subscribers=(100, 1000),
    irc_subscribers=(100, 1000),
    cluster_subscribers=(100, 1000),
    hub_subscribers=(1, 10, 100, 1000, 10000),
    hub_deliveries=1_000_000,
    memory_conns=1000,
    http_conns=(1, 10, 100),
)


class ClusterWindow:
    """What one measured window cost each serving process, and Redis: its commands (from
    ``INFO commandstats``, less the runner's own ``INFO``) and its CPU time (``INFO cpu``)."""

    def __init__(self, server: Server, redis: RedisServer | None) -> None:
        self.server, self.redis = server, redis
        self.started = 0.0
        self.seconds = 0.0
        self.workers: list[float] = []  # CPU seconds of each serving process
        self.connections: list[int] = []  # connections each holds when the window closes
        self.calls: dict[str, int] = {}  # command -> calls
        self.redis_cpu = 0.0

    def _redis(self) -> tuple[dict[str, int], float]:
        assert self.redis is not None
        try:
            return self.redis.stats()
        except OSError as exc:
            dead = not self.redis.alive()
            raise ClientError(f"redis: {self.redis.why_dead() if dead else exc}") from exc

    def open(self) -> None:
        self.started = time.monotonic()
        self.workers = self.server.cpu_each()
        if self.redis is not None:
            self.calls, self.redis_cpu = self._redis()

    def close(self) -> None:
        self.seconds = time.monotonic() - self.started
        now = self.server.cpu_each()
        self.workers = [end - start for start, end in zip(self.workers, now, strict=True)]
        if self.redis is not None:
            calls, cpu = self._redis()
            before = self.calls
            self.calls = {k: n - before.get(k, 0) for k, n in calls.items() if n > before.get(k, 0)}
            self.calls["info"] = self.calls.get("info", 0) - 2  # the two INFO of open()
            if self.calls["info"] <= 0:
                del self.calls["info"]
            self.redis_cpu = cpu - self.redis_cpu
        if len(self.server.workers) > 1:
            self.connections = tcp_connections(self.server.workers, self.server.port)


@dataclass(frozen=True)
class Baseline:
    """An older commit checked out in a temporary worktree (``--baseline-rev``)."""

    rev: str  # as given
    commit: str  # its full hash
    short: str  # its short hash, in the stack's name
    tree: Path
    imports: str  # the triosock/__init__.py that `python -m` imports in ``tree``


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def imported_triosock(cwd: Path) -> str:
    """The ``triosock/__init__.py`` a server started in ``cwd`` imports: the same
    interpreter and environment as :class:`Server`, and, as with ``python -m``, the
    current directory first on ``sys.path``."""
    done = subprocess.run(
        [sys.executable, "-c", "import triosock; print(triosock.__file__)"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=server_env(),
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"import triosock in {cwd}: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


@contextlib.contextmanager
def baseline_worktree(rev: str, log: Callable[[str], None]) -> Iterator[Baseline]:
    """``rev`` checked out (detached) in a temporary ``git worktree`` of the project,
    removed again on the way out, whatever happens meanwhile. SystemExit when ``rev`` is
    no commit, or when a server started there would not import that checkout's package."""
    try:
        commit = _git("rev-parse", "--verify", "--end-of-options", f"{rev}^{{commit}}")
        short = _git("rev-parse", "--short", commit)
    except RuntimeError as exc:
        raise SystemExit(f"--baseline-rev {rev}: {exc}") from exc
    holder = Path(tempfile.mkdtemp(prefix="triosock-baseline-"))
    tree = holder / "tree"
    added = False
    try:
        try:
            _git("worktree", "add", "--detach", str(tree), commit)
            added = True
            imports = imported_triosock(tree)
        except RuntimeError as exc:
            raise SystemExit(f"--baseline-rev {rev}: {exc}") from exc
        if not Path(imports).resolve().is_relative_to(tree.resolve()):
            raise SystemExit(
                f"--baseline-rev {rev}: a server started in {tree} imports triosock from "
                f"{imports}, not from the worktree"
            )
        log(f"baseline: {short} ({rev}) checked out in {tree}; its servers import {imports}")
        yield Baseline(rev, commit, short, tree, imports)
    finally:
        if added:
            try:
                _git("worktree", "remove", "--force", str(tree))
                log(f"baseline: worktree {tree} removed")
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                log(f"baseline: {exc}; remove it with `git worktree remove --force {tree}`")
        shutil.rmtree(holder, ignore_errors=True)


def chat_stacks(baseline: Baseline | None) -> list[Stack]:
    """The chat fan-out's stacks; with a baseline, its ``triosock chat serve @REV`` row
    (the ``triosock`` row's command, run in the worktree) right after ``triosock``."""
    stacks = list(_stacks.CHAT)
    if baseline is not None:
        at = [stack.name for stack in stacks].index(_stacks.CHAT_WITH_HISTORY) + 1
        stacks.insert(at, _stacks.chat_at(baseline.short, str(baseline.tree)))
    return stacks


class Runner:
    def __init__(
        self,
        settings: Settings,
        out_dir: Path,
        only: set[str],
        stack_filter: list[str],
        client_choice: str,
        pin: bool,
    ) -> None:
        self.settings, self.out_dir, self.only = settings, out_dir, only
        self.stack_filter = [s.lower() for s in stack_filter]
        self.t0 = time.monotonic()
        self.procs = Processes()
        self.pinning = Pinning.choose(pin)
        self.client = LoadClient.build(self.procs, self.pinning, out_dir / "build", client_choice)
        self.results = Results()
        self.unavailable: dict[tuple[str, ...], str] = {}
        #: with --baseline-rev: the older commit the chat fan-out is also measured at
        self.baseline: Baseline | None = None
        #: per directory a server runs in: why its `chat serve` has no --irc ("" if it has)
        self.irc_missing: dict[Path, str] = {}

    # ------------------------------------------------------------ helpers

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {message}", flush=True)

    def stacks(self, stacks: list[Stack]) -> list[Stack]:
        if not self.stack_filter:
            return stacks
        return [s for s in stacks if any(f in s.name.lower() for f in self.stack_filter)]

    def server_argv(self, stack: Stack, workload: str) -> tuple[str, ...]:
        """The command that starts ``stack``'s server for ``workload``."""
        argv = tuple(stack.command())
        if "chat" in argv and "serve" in argv and "--data" not in argv:
            # side by side, each chat server keeps its history in a file of its own (one
            # server a file), in this run's folder
            argv += ("--data", str(self.out_dir / "state" / f"{workload}-{stack.slug}"))
        # a `chat serve` with an IRC listener opens it by default, on 127.0.0.1:6667: side
        # by side, only one server could, so the rows that do not speak IRC say none (when
        # their triosock has the option: a --baseline-rev may not)
        cwd = Path(stack.cwd) if stack.cwd else ROOT
        chat = "chat" in argv and "serve" in argv
        if chat and "--irc" not in argv and not self.triosock_irc_missing(cwd):
            argv += ("--irc", "none")
        return argv

    def triosock_irc_missing(self, cwd: Path) -> str:
        """Why `python -m triosock chat serve` run in ``cwd`` has no ``--irc`` ("" when it
        has), asked once per directory."""
        if cwd not in self.irc_missing:
            self.irc_missing[cwd] = triosock_irc_missing(cwd)
        return self.irc_missing[cwd]

    @contextlib.contextmanager
    def serve(self, stack: Stack, workload: str, cells: list[Cell]) -> Iterator[Server | None]:
        """The stack's server, or None (and the cells marked) when it cannot start."""
        argv = self.server_argv(stack, workload)
        if argv in self.unavailable:
            for cell in cells:
                cell.errors.append(self.unavailable[argv])
            yield None
            return
        log = self.out_dir / "logs" / f"{workload}-{stack.slug}.log"
        server: Server
        if stack.ircd:  # its configuration goes into this run's folder, never the project
            server = _ircd.IrcdServer(
                self.procs,
                _ircd.IRCDS[stack.ircd],
                conf_dir=self.out_dir / "ircd" / stack.slug,
                log=log,
                cwd=ROOT,
                pinning=self.pinning,
            )
        else:
            server = Server(
                self.procs,
                argv,
                port_pattern=stack.port_pattern,
                log=log,
                cwd=Path(stack.cwd) if stack.cwd else ROOT,
                pinning=self.pinning,
                pids_pattern=stack.pids_pattern,
            )
        try:
            server.start()
        except Unavailable as exc:
            server.stop()
            reason = f"unavailable: {exc}"
            if exc.lasting:  # do not try again in later repetitions and workloads
                self.unavailable[argv] = reason
            self.log(f"{workload:<10} {stack.name:<22} {reason}")
            for cell in cells:
                cell.errors.append(reason)
            yield None
            return
        try:
            yield server
        finally:
            server.stop()

    def fail(self, cell: Cell, reason: str, rep: int) -> None:
        cell.errors.append(f"error: {reason}")
        self.log(f"{cell.workload:<10} {cell.config:<12} {cell.stack:<22} rep {rep}: {reason}")

    def progress(self, cell: Cell, rep: int, metrics: dict[str, float]) -> None:
        spec = WORKLOADS[cell.workload]
        shown = "  ".join(
            f"{c.title} {c.fmt.format(metrics[c.key])}" for c in spec.columns if c.key in metrics
        )
        self.log(
            f"{cell.workload:<10} {cell.config:<12} {cell.stack:<22} "
            f"rep {rep}/{self.settings.repeat}  {shown}"
        )

    def measure(
        self,
        server: Server,
        mode: str,
        options: dict[str, float | int],
        timeout: float,
        window: ClusterWindow | None = None,
    ) -> tuple[dict[str, Any], float]:
        """One load-client run; returns its result and the server CPU seconds in its window.

        ``window``, if given, is opened and closed with the load client's window, and the
        server CPU is its: read when the result arrives, not after the client has gone
        (the cluster's load client lingers, and the CPU of its leaving is not the window's).
        """
        cpu_start = [0.0]

        def on_start() -> None:
            cpu_start[0] = server.cpu()
            if window is not None:
                window.open()

        s = self.settings
        options = {"duration": s.duration, "warmup": s.warmup, **options}
        try:
            result = self.client.run(
                mode,
                server.port,
                options,
                on_start=on_start,
                timeout=timeout + s.warmup + s.duration,
                on_result=None if window is None else window.close,
            )
            cpu = server.cpu() - cpu_start[0] if window is None else sum(window.workers)
        except OSError as exc:  # /proc/PID is gone: the server died
            raise ClientError(server.why_dead() if not server.alive() else str(exc)) from exc
        if not server.alive():
            raise ClientError(server.why_dead())
        return result, cpu

    def quiet(self, servers: list[Server]) -> None:
        """Wait (bounded) until no server burns CPU: the one measured next shares its core.

        A server measured just before may still be closing a thousand connections (a
        chat server announces every leave), and every server of the workload is up.
        """
        deadline = time.monotonic() + QUIET_TIMEOUT
        while time.monotonic() < deadline:
            alive = [server for server in servers if server.alive()]
            try:
                before = sum(server.cpu() for server in alive)
                time.sleep(0.1)
                if sum(server.cpu() for server in alive) - before < 0.005:
                    return
            except OSError:  # a server died meanwhile; the next measurement says so
                return
        self.log(f"servers still busy after {QUIET_TIMEOUT:g} s; measuring anyway")

    def side_by_side(
        self,
        rep: int,
        log_name: str,
        stacks: list[Stack],
        plan: list[tuple[str, str, int, Any]],
        measure: Callable[[Server, Any], dict[str, float]],
        also_quiet: Sequence[Server] = (),
    ) -> None:
        """Measure every configuration of ``plan`` on every stack, stacks interleaved.

        All the workload's servers run at once (idle but for the one measured), and each
        configuration is measured on one stack after the other, in an order rotated by
        repetition: a stack's windows sit between its rivals' windows, so a drift of the
        machine's speed (the VM's swings several times the gap between stacks) falls on
        all of them alike. ``plan`` holds (workload, config, order, argument) tuples;
        ``measure`` gets a server and the argument and returns the metrics.
        ``also_quiet`` are further processes waited for (the cluster's redis-servers).
        """
        chosen = self.stacks(stacks)
        if not chosen:
            return
        cells = {
            stack.name: [
                self.results.cell(workload, config, order, stack.name, stack.role)
                for workload, config, order, _ in plan
            ]
            for stack in chosen
        }
        shift = (rep - 1) % len(chosen)
        rotated = chosen[shift:] + chosen[:shift]
        with contextlib.ExitStack() as running:
            servers: dict[str, Server | None] = {
                stack.name: running.enter_context(self.serve(stack, log_name, cells[stack.name]))
                for stack in rotated
            }
            up = [server for server in servers.values() if server is not None]
            up += also_quiet
            for index, (*_, argument) in enumerate(plan):
                for stack in rotated:
                    server = servers[stack.name]
                    if server is None:
                        continue
                    cell = cells[stack.name][index]
                    if not server.alive():
                        self.fail(cell, server.why_dead(), rep)
                        continue
                    self.quiet(up)
                    try:
                        metrics = measure(server, argument)
                    except ClientError as exc:
                        self.fail(cell, str(exc), rep)
                        server.settle()  # a dying server has exited when this returns
                        continue
                    cell.reps.append(metrics)
                    self.progress(cell, rep, metrics)

    # ------------------------------------------------------------ workloads 1, 1b and 2

    def round_trips(self, server: Server, conns: int) -> dict[str, float]:
        """The 64-byte ping-pong (each message ends in a newline) on ``conns`` connections."""
        result, cpu = self.measure(server, "tcp", {"conns": conns}, 30)
        return {
            "rt_per_s": result["rt_per_s"],
            "cpu_us_per_rt": cpu * 1e6 / max(1.0, result["round_trips"]),
            **_shared_metrics(result, cpu),
        }

    def tcp_echo(self, rep: int) -> None:
        s = self.settings
        plan: list[tuple[str, str, int, Any]] = []
        if "echo" in self.only:
            plan += [("echo", f"{n} conns", n, ("echo", n)) for n in s.echo_conns]
        if "stream" in self.only:
            plan += [("stream", f"{n} conns", n, ("stream", n)) for n in s.stream_conns]

        def measure(server: Server, argument: tuple[str, int]) -> dict[str, float]:
            workload, conns = argument
            if workload == "echo":
                return self.round_trips(server, conns)
            result, cpu = self.measure(server, "stream", {"conns": conns}, 30)
            return {
                "mb_per_s": result["mb_per_s"],
                "server_cpu_pct": 100 * cpu / result["duration_s"],
                "client_cpu_pct": result["client_cpu_pct"],
            }

        self.side_by_side(rep, "tcp-echo", _stacks.TCP_ECHO, plan, measure)

    def line_service(self, rep: int) -> None:
        """The echo's ping-pong against line services: each stack's own way to serve lines."""
        plan = [("lines", f"{n} conns", n, n) for n in self.settings.line_conns]
        self.side_by_side(rep, "lines", _stacks.LINES, plan, self.round_trips)

    # ------------------------------------------------------------ workload 3

    def udp_echo(self, rep: int) -> None:
        plan = [("udp", f"{n} peers", n, n) for n in self.settings.udp_peers]

        def measure(server: Server, peers: int) -> dict[str, float]:
            result, cpu = self.measure(server, "udp", {"conns": peers}, 30)
            return {
                "rt_per_s": result["rt_per_s"],
                "cpu_us_per_rt": cpu * 1e6 / max(1.0, result["round_trips"]),
                "lost": result["lost"],
                **_shared_metrics(result, cpu),
            }

        self.side_by_side(rep, "udp-echo", _stacks.UDP_ECHO, plan, measure)

    # ------------------------------------------------------------ workload 4

    def chat(self, rep: int) -> None:
        plan = [("chat", f"{n} subs", n, n) for n in self.settings.chat_subscribers]
        stacks = chat_stacks(self.baseline)
        self.side_by_side(rep, "chat", stacks, plan, self.fan_out("chat"))

    def wsfanout(self, rep: int) -> None:
        """The chat's fan-out over WebSocket: the same room, lines as text messages."""
        plan = [("wsfanout", f"{n} subs", n, n) for n in self.settings.wsfanout_subscribers]
        self.side_by_side(rep, "wsfanout", _stacks.WS_CHAT, plan, self.fan_out("wschat"))

    def irc(self, rep: int) -> None:
        """The chat's fan-out over IRC: ngircd, InspIRCd and triosock's IRC listener, each
        row skipped (and saying why) when its daemon or triosock's ``--irc`` is missing."""
        plan = [("irc", f"{n} subs", n, n) for n in self.settings.irc_subscribers]
        runnable: list[Stack] = []
        for stack in self.stacks(_stacks.IRC):
            reason = self.irc_skip(stack)
            if reason and rep == 1:
                self.log(f"{'irc':<10} {stack.name:<22} skipped: {reason}")
            for workload, config, order, _ in plan:  # the table keeps the stacks' order
                cell = self.results.cell(workload, config, order, stack.name, stack.role)
                if reason:
                    cell.errors.append(f"skipped: {reason}")
            if not reason:
                runnable.append(stack)
        self.side_by_side(rep, "irc", runnable, plan, self.fan_out("irc"))

    def irc_skip(self, stack: Stack) -> str:
        """Why an IRC stack cannot run here ("" when it can)."""
        if self.client.kind.startswith("python"):
            return "the Python load client (pyloadgen.py) has no irc mode: it needs cc"
        if stack.ircd:
            if _ircd.binary(stack.ircd) is None:
                package = _ircd.IRCDS[stack.ircd].package
                return f"{stack.ircd} is not installed (Debian: apt-get install {package})"
            return ""
        return self.triosock_irc_missing(Path(stack.cwd) if stack.cwd else ROOT)

    def fan_out(self, mode: str) -> Callable[[Server, int], dict[str, float]]:
        """One sender, ``subs`` subscribers: the load client's ``chat``, ``wschat`` or
        ``irc`` mode."""

        def measure(server: Server, subs: int) -> dict[str, float]:
            return self.fan_out_once(mode, server, subs)

        return measure

    def fan_out_once(
        self, mode: str, server: Server, subs: int, window: ClusterWindow | None = None
    ) -> dict[str, float]:
        s = self.settings
        options = {
            "conns": subs,
            "rate": s.chat_rate,
            "inflight": s.chat_inflight,
            # a server announcing every join has subs**2 / 2 notices to send first
            "setup-timeout": CHAT_SETUP_TIMEOUT,
        }
        if window is not None:  # its closing look needs everyone still connected
            options["linger"] = CLUSTER_LINGER
        result, cpu = self.measure(server, mode, options, CHAT_SETUP_TIMEOUT + 30, window)
        if result["ready"] < subs:
            self.log(f"  only {result['ready']} of {subs} subscribers got lines")
        closed = result.get("closed", 0)
        if closed:
            self.log(f"  the server closed {closed} subscriber connections while measured")
        return {
            "deliveries_per_s": result["deliveries_per_s"],
            "cpu_us_per_delivery": cpu * 1e6 / max(1.0, result["deliveries"]),
            "lost": result["lost"],
            "sent": result["sent"],
            "ready_subscribers": result["ready"],
            "closed": closed,
            **_shared_metrics(result, cpu),
        }

    # ------------------------------------------------------------ workload 4c

    def cluster(self, rep: int) -> None:
        """The TCP chat's fan-out with its rooms in Redis: one process, and two workers.

        Each Redis stack gets a redis-server of its own (started here, every repetition,
        on a free loopback port, pinned to the server's core), so that its command counts
        are its own; the in-process hub is the ratio base.
        """
        plan = [("cluster", f"{n} subs", n, n) for n in self.settings.cluster_subscribers]
        chosen = {stack.name for stack in self.stacks(_stacks.cluster("", ""))}
        if not chosen:
            return
        need = chosen - {_stacks.CLUSTER_IN_PROCESS}
        binary = shutil.which("redis-server")
        skip = ""
        if need and binary is None:
            skip = "redis-server is not installed (Debian: apt-get install redis-server)"
        elif need and importlib.util.find_spec("coredis") is None:
            skip = "coredis is not installed (pip install 'triosock[redis]')"
        if skip:
            self.cluster_skip(plan, chosen, f"skipped: {skip}", rep)
            return
        with contextlib.ExitStack() as running:
            redis: dict[str, RedisServer] = {}
            for name, tag in (
                (_stacks.CLUSTER_REDIS, "1-process"),
                (_stacks.CLUSTER_WORKERS, "2-workers"),
            ):
                if name not in need:
                    continue
                assert binary is not None
                log = self.out_dir / "logs" / f"cluster-redis-{tag}.log"
                server = RedisServer(self.procs, binary, log=log, cwd=ROOT, pinning=self.pinning)
                running.callback(server.stop)
                try:
                    server.start()
                except Unavailable as exc:
                    self.cluster_skip(plan, {name}, f"unavailable: redis-server: {exc}", rep)
                    continue
                redis[name] = server
            url = {name: server.url() for name, server in redis.items()}
            stacks = [
                stack
                for stack in _stacks.cluster(
                    url.get(_stacks.CLUSTER_REDIS, ""), url.get(_stacks.CLUSTER_WORKERS, "")
                )
                if stack.name in chosen and (stack.name in redis or stack.name not in need)
            ]
            # the stack's command begins the server's (which has its --data added): the
            # longest that does names the stack (the in-process one begins the others)
            commands = sorted(
                ((stack.command(), redis.get(stack.name)) for stack in stacks),
                key=lambda item: -len(item[0]),
            )

            def redis_of(argv: list[str]) -> RedisServer | None:
                for command, server in commands:
                    if argv[: len(command)] == command:
                        return server
                return None

            def measure(server: Server, subs: int) -> dict[str, float]:
                window = ClusterWindow(server, redis_of(server.argv))
                metrics = self.fan_out_once("chat", server, subs, window)
                return {**metrics, **self.cluster_metrics(window, metrics["sent"])}

            self.side_by_side(
                rep, "cluster", stacks, plan, measure, also_quiet=list(redis.values())
            )

    def cluster_metrics(self, window: ClusterWindow, sent: float) -> dict[str, float]:
        """Redis's commands and CPU per chat line, and each worker's share; logged too."""
        metrics: dict[str, float] = {}
        lines = max(1.0, sent)
        if window.redis is not None:
            total = sum(window.calls.values())
            metrics["redis_cmds_per_line"] = total / lines
            metrics["redis_publish_per_line"] = window.calls.get("publish", 0) / lines
            metrics["redis_cpu_us_per_line"] = window.redis_cpu * 1e6 / lines
            metrics["redis_calls"] = float(total)
            busiest = sorted(window.calls.items(), key=lambda item: -item[1])
            shown = ", ".join(f"{name} {n}" for name, n in busiest[:6]) or "nothing"
            self.log(f"  redis, {sent:,.0f} lines sent: {total:,} commands ({shown})")
        if len(window.workers) > 1:
            seconds = max(window.seconds, 1e-9)
            shares = [100 * cpu / seconds for cpu in window.workers]
            for index, (share, conns) in enumerate(zip(shares, window.connections, strict=True), 1):
                metrics[f"worker{index}_cpu_pct"] = share
                metrics[f"worker{index}_connections"] = float(conns)
            each = zip(window.server.workers, shares, window.connections, strict=True)
            self.log(
                "  workers: "
                + ", ".join(f"pid {pid} CPU {pct:.0f}%, {n} connections" for pid, pct, n in each)
            )
        return metrics

    def cluster_skip(
        self, plan: list[tuple[str, str, int, Any]], names: set[str], reason: str, rep: int
    ) -> None:
        """The cluster stacks ``names`` cannot run here: their cells say why, the log once."""
        if rep == 1:
            every = names == {stack.name for stack in self.stacks(_stacks.cluster("", ""))}
            self.log(f"{'cluster':<10} {'' if every else ', '.join(sorted(names)) + ': '}{reason}")
        for stack in _stacks.cluster("", ""):
            if stack.name in names:
                for workload, config, order, _ in plan:
                    cell = self.results.cell(workload, config, order, stack.name, stack.role)
                    cell.errors.append(reason)

    # ------------------------------------------------------------ workload 5

    def hub(self, rep: int) -> None:
        s = self.settings
        counts = ",".join(str(n) for n in s.hub_subscribers)
        for stack in self.stacks(_stacks.HUB):
            cells = {
                n: self.results.cell("hub", f"{n} subs", n, stack.name, stack.role)
                for n in s.hub_subscribers
            }
            argv = [sys.executable, "-m", "benchmarks.hubbench", "--stack", stack.argv[0]]
            argv += ["--subscribers", counts, "--deliveries", str(s.hub_deliveries)]
            proc = self.procs.start(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
            )
            self.pinning.pin(proc.pid, "server")
            try:
                out, err = proc.communicate(timeout=60 + 30 * len(cells))
            except subprocess.TimeoutExpired:
                out, err = "", "timed out"
            finally:
                self.procs.stop(proc)
            seen: set[int] = set()
            for line in out.splitlines():
                if not line.startswith("{"):
                    continue
                row = json.loads(line)
                if row["event"] == "unavailable":
                    reason = f"unavailable: {row['reason']}"
                    self.log(f"{'hub':<10} {stack.name:<22} {reason}")
                    for cell in cells.values():
                        cell.errors.append(reason)
                    seen.update(cells)
                    continue
                cell = cells[row["subscribers"]]
                seen.add(row["subscribers"])
                if row["event"] == "error":
                    self.fail(cell, row["error"], rep)
                    continue
                metrics = {
                    "deliveries_per_s": row["deliveries_per_s"],
                    "publish_ns_per_delivery": row["publish_ns_per_delivery"],
                }
                cell.reps.append(metrics)
                self.progress(cell, rep, metrics)
            for n, cell in cells.items():
                if n not in seen:
                    tail = " | ".join(err.strip().splitlines()[-2:]) or f"exit {proc.returncode}"
                    self.fail(cell, f"hubbench: {tail}", rep)

    # ------------------------------------------------------------ workload 4d

    def resume(self, rep: int) -> None:
        """A session that missed 1,000 lines resumes: ``benchmarks/resumebench.py``'s
        rounds against ``chat serve``, each from ``/resume`` to the end of the catch-up."""
        config = f"{RESUME_MISSED} missed"
        for stack in self.stacks(_stacks.RESUME):
            cell = self.results.cell("resume", config, RESUME_MISSED, stack.name, stack.role)
            with self.serve(stack, "resume", [cell]) as server:
                if server is None:
                    continue
                argv = [sys.executable, "-m", "benchmarks.resumebench", "--port"]
                argv += [str(server.port), "--missed", str(RESUME_MISSED)]
                argv += ["--rounds", str(self.settings.resume_rounds)]
                proc = self.procs.start(
                    argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
                )
                self.pinning.pin(proc.pid, "client")
                try:
                    out, err = proc.communicate(timeout=30 + 30 * self.settings.resume_rounds)
                except subprocess.TimeoutExpired:
                    out, err = "", "timed out"
                finally:
                    self.procs.stop(proc)
                rows = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
                for row in rows:
                    if row["event"] == "error":
                        self.fail(cell, row["error"], rep)
                        continue
                    metrics = {"resume_ms": row["resume_ms"], "lines": float(row["lines"])}
                    cell.reps.append(metrics)
                    self.progress(cell, rep, metrics)
                if not rows:
                    self.fail(cell, " | ".join(err.strip().splitlines()[-2:]) or "no output", rep)

    # ------------------------------------------------------------ workload 4e

    def logins(self, rep: int) -> None:
        """Logins per second while a room is busy, and the room's latency without and with
        them: ``benchmarks/loginbench.py`` against ``chat serve``, the server's CPU read at
        the edges of its windows."""
        s = self.settings
        n = s.login_clients
        for stack in self.stacks(_stacks.LOGINS):
            cell = self.results.cell("logins", f"{n} at once", n, stack.name, stack.role)
            with self.serve(stack, "logins", [cell]) as server:
                if server is None:
                    continue
                argv = [sys.executable, str(Path(__file__).with_name("loginbench.py"))]
                argv += ["--port", str(server.port), "--clients", str(n)]
                argv += ["--quiet", str(s.login_quiet), "--busy", str(s.login_busy)]
                argv += ["--warmup", str(s.warmup)]
                try:
                    metrics = self.login_windows(server, argv)
                except ClientError as exc:
                    self.fail(cell, str(exc), rep)
                    server.settle()
                    continue
                cell.reps.append(metrics)
                self.progress(cell, rep, metrics)

    def login_windows(self, server: Server, argv: list[str]) -> dict[str, float]:
        """One loginbench run: its events, the server's CPU in each window, the metrics."""
        s = self.settings
        client = _Client(self.procs, argv, self.pinning)
        marks: dict[str, tuple[float, float]] = {}  # event -> (time, server CPU seconds)
        try:
            # the set-up registers every account: one scrypt hash each, two at a time
            waits = {"ready": 180.0, "quiet": 10.0, "busy": s.login_quiet + 10}
            waits |= {"busy-end": s.login_busy + 10, "result": 90.0}
            result: dict[str, Any] = {}
            for name, wait in waits.items():
                result = client.event(time.monotonic() + wait)
                if result.get("event") != name:
                    raise ClientError(f"loginbench: {name} expected, got {result}")
                marks[name] = (time.monotonic(), server.cpu())
        except OSError as exc:  # /proc/PID is gone: the server died
            raise ClientError(server.why_dead() if not server.alive() else str(exc)) from exc
        finally:
            client.stop()
        if not server.alive():
            raise ClientError(server.why_dead())

        def cpu(start: str, end: str) -> tuple[float, float]:
            (t0, c0), (t1, c1) = marks[start], marks[end]
            return c1 - c0, max(1e-9, t1 - t0)

        busy_cpu, busy_s = cpu("busy", "busy-end")
        quiet_cpu, quiet_s = cpu("quiet", "busy")
        in_window = result["logins_per_s"] * result["busy_s"]
        if result["failures"]:
            self.log(f"  {result['failures']} logins failed: {result['failure_reasons']}")
        for what in ("quiet_lost", "busy_lost", "unfinished_clients"):
            if result[what]:
                self.log(f"  {what.replace('_', ' ')}: {result[what]}")
        keys: tuple[str, ...] = (
            "logins_per_s",
            "login_p50_ms",
            "login_p99_ms",
            "failures",
            "attempts",
        )
        keys += ("quiet_p50_ms", "quiet_p99_ms", "busy_p50_ms", "busy_p99_ms", "busy_max_ms")
        keys += ("quiet_lost", "busy_lost", "client_cpu_pct")
        metrics = {key: float(result[key]) for key in keys if result.get(key) is not None}
        metrics["server_cpu_pct"] = 100 * busy_cpu / busy_s
        metrics["quiet_server_cpu_pct"] = 100 * quiet_cpu / quiet_s
        metrics["cpu_ms_per_login"] = busy_cpu * 1000 / max(1.0, in_window)
        return metrics

    # ------------------------------------------------------------ workload 6

    def memory(self, rep: int) -> None:
        n = self.settings.memory_conns
        kinds = [
            ("memory-tcp", "idle-tcp", f"{n} conns", _stacks.TCP_ECHO),
            ("memory-udp", "idle-udp", f"{n} peers", _stacks.UDP_ECHO),
        ]
        for workload, mode, config, stacks in kinds:
            for stack in self.stacks(stacks):
                cell = self.results.cell(workload, config, n, stack.name, stack.role)
                with self.serve(stack, workload, [cell]) as server:
                    if server is None:
                        continue
                    try:
                        time.sleep(0.3)
                        idle = server.rss()
                        with self.client.holding(mode, server.port, n, timeout=60):
                            time.sleep(0.5)
                            if not server.alive():
                                raise ClientError(server.why_dead())
                            loaded = server.rss()
                    except (ClientError, OSError, RuntimeError) as exc:
                        self.fail(cell, str(exc), rep)
                        continue
                    metrics = {
                        "rss_idle_kib": float(idle),
                        "rss_loaded_kib": float(loaded),
                        "kib_per_conn": (loaded - idle) / n,
                    }
                    cell.reps.append(metrics)
                    self.progress(cell, rep, metrics)

    # ------------------------------------------------------------ workload 7

    def http(self, rep: int) -> None:
        """Keep-alive HTTP/1.1: ``GET /`` and the whole response, then the next request."""
        plan = [("http", f"{n} conns", n, n) for n in self.settings.http_conns]

        def measure(server: Server, conns: int) -> dict[str, float]:
            result, cpu = self.measure(server, "http", {"conns": conns}, 30)
            return {
                "req_per_s": result["rt_per_s"],
                "cpu_us_per_req": cpu * 1e6 / max(1.0, result["round_trips"]),
                "reconnects": result["reconnects"],
                **_shared_metrics(result, cpu),
            }

        self.side_by_side(rep, "http", _stacks.HTTP, plan, measure)

    # ------------------------------------------------------------ all of it

    def run(self) -> None:
        self.log(f"load client: {self.client.kind}")
        self.log(f"CPU pinning: {self.pinning.note}")
        steps = [
            ("echo", self.tcp_echo),
            ("lines", self.line_service),
            ("udp", self.udp_echo),
            ("chat", self.chat),
            ("wsfanout", self.wsfanout),
            ("irc", self.irc),
            ("cluster", self.cluster),
            ("resume", self.resume),
            ("logins", self.logins),
            ("hub", self.hub),
            ("memory", self.memory),
            ("http", self.http),
        ]
        for rep in range(1, self.settings.repeat + 1):
            for name, step in steps:
                if name in self.only or (name == "echo" and "stream" in self.only):
                    try:
                        step(rep)
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except Exception as exc:  # a bug in one workload must not end the run
                        self.log(f"{name}: failed in rep {rep}: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self.procs.stop_all()


def triosock_irc_missing(cwd: Path) -> str:
    """Why ``python -m triosock chat serve``, run in ``cwd`` (the current directory comes
    first on ``sys.path``), cannot serve IRC: "" when its ``--help`` lists ``--irc``, else
    the reason (the option is not there, or the help failed)."""
    argv = [sys.executable, "-m", "triosock", "chat", "serve", "--help"]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=cwd,
            env=server_env(),
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`python -m triosock chat serve --help` failed: {exc}"
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-2:]) or f"exit {done.returncode}"
        return f"`python -m triosock chat serve --help` failed: {tail}"
    if not re.search(r"(?m)^\s*--irc\b", done.stdout):
        return "`python -m triosock chat serve` has no --irc option (not in its --help)"
    return ""


def _shared_metrics(result: dict[str, Any], cpu: float) -> dict[str, float]:
    """Latency percentiles and both sides' CPU use, for a workload that measures latency."""
    return {
        "p50_us": result["p50_us"],
        "p99_us": result["p99_us"],
        "server_cpu_pct": 100 * cpu / result["duration_s"],
        "client_cpu_pct": result["client_cpu_pct"],
    }


def _distributions(only: set[str]) -> tuple[str, ...]:
    """The distributions whose versions a run reports: the HTTP servers only with ``http``,
    websockets only with ``wsfanout``, coredis only with ``cluster``."""
    dists: tuple[str, ...] = ("trio", "anyio", "uvloop", "triosock")
    if "wsfanout" in only:
        dists += ("websockets",)
    if "cluster" in only:
        dists += ("coredis",)
    if "http" in only:
        dists += ("hypercorn", "aiohttp", "uvicorn")
    return dists


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "source tree" if dist == "triosock" else "not installed"


def _redis_version() -> str:
    """``redis-server --version``'s ``v=7.0.15``, or why there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        return "not installed"
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    found = re.search(r"v=(\S+)", done.stdout)
    return found.group(1) if found else "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _meta(runner: Runner, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    versions = {d: _version(d) for d in _distributions(runner.only)}
    if "cluster" in runner.only:
        versions["redis-server"] = _redis_version()
    if "irc" in runner.only:
        versions |= {name: _ircd.version(name) for name in _ircd.IRCDS}
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "client": runner.client.kind,
        "pinning": runner.pinning.note,
        "settings": asdict(runner.settings),
        "arguments": sys.argv[1:],
        "only": sorted(runner.only),
        "seconds": round(seconds, 1),
        "quick": args.quick,
        "baseline": (
            None
            if runner.baseline is None
            else {k: str(v) for k, v in asdict(runner.baseline).items()}
        ),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke pass (< 60 s)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), metavar="DIR")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="WORKLOAD",
        help=f"only these workloads (repeatable, or comma-separated): {', '.join(ALL_WORKLOADS)}",
    )
    parser.add_argument("--repeat", type=int, metavar="N", help="repetitions (default 3, quick 1)")
    parser.add_argument("--duration", type=float, metavar="S", help="measured seconds per run")
    parser.add_argument("--warmup", type=float, metavar="S", help="warm-up seconds per run")
    parser.add_argument(
        "--stacks",
        action="append",
        default=[],
        metavar="NAME",
        help="only stacks whose name contains NAME (repeatable or comma-separated)",
    )
    parser.add_argument("--client", choices=["auto", "c", "python"], default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--baseline-rev",
        metavar="REV",
        help="also run the chat fan-out's triosock row from a temporary git worktree of "
        "commit REV (e.g. 1c22f1b, before accounts), as 'triosock chat serve @REV', and "
        "compare deliveries/s and CPU per delivery against it; the worktree is removed "
        "at the end (default: none)",
    )
    args = parser.parse_args(argv)
    only = {w.strip() for item in args.only for w in item.split(",") if w.strip()}
    unknown = only - set(ALL_WORKLOADS)
    if unknown:
        parser.error(f"unknown workload {', '.join(sorted(unknown))}; pick from {ALL_WORKLOADS}")
    args.only = only or set(ALL_WORKLOADS)
    args.stacks = [s.strip() for item in args.stacks for s in item.split(",") if s.strip()]
    if args.repeat is not None and not 1 <= args.repeat <= 50:
        parser.error("--repeat must be between 1 and 50")
    for name in ("duration", "warmup"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 600:
            parser.error(f"--{name} must be between 0 and 600 seconds")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.repeat is not None:
        settings = replace(settings, repeat=args.repeat)
    if args.duration:
        settings = replace(settings, duration=args.duration)
    if args.warmup is not None:
        settings = replace(settings, warmup=args.warmup)
    out_dir = args.out if args.out.is_absolute() else Path.cwd() / args.out
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # 1000 connections need more than the usual 1024 descriptors
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # chat servers keep their history where --data says by default (the user's state
    # directory): this run's go into its own folder, a new one each run
    state = out_dir / "state"
    shutil.rmtree(state, ignore_errors=True)
    os.environ["XDG_STATE_HOME"] = str(state)
    runner = Runner(settings, out_dir, args.only, args.stacks, args.client, not args.no_pin)
    started = time.monotonic()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop like Ctrl-C, so the finally below runs
        signal.signal(sig, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background
        signal.signal(signal.SIGINT, _interrupt)
    with contextlib.ExitStack() as worktree:  # removed after the servers have stopped
        try:
            if args.baseline_rev and "chat" in runner.only:
                baseline = baseline_worktree(args.baseline_rev, runner.log)
                runner.baseline = worktree.enter_context(baseline)
            elif args.baseline_rev:
                runner.log("--baseline-rev: the chat workload is not run; no worktree made")
            runner.run()
        except KeyboardInterrupt:
            runner.log("interrupted: writing what was measured so far")
        finally:
            runner.close()
    seconds = time.monotonic() - started
    meta = _meta(runner, args, seconds)
    print(runner.results.text() or "\nnothing was measured (check --only and --stacks)")
    print(
        f"\n{meta['date']}; {meta['machine']}; Python {meta['python']}; "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    )
    print(f"load client: {meta['client']}; {meta['pinning']}; medians of {settings.repeat} runs")
    runner.results.write(out_dir, meta, runner.log)
    runner.log(f"done in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
