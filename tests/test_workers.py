"""``--workers N``: processes on one port (SO_REUSEPORT), a supervisor that restarts a
worker that dies, and a graceful stop of all; the chat's workers share the rooms through
a private redis-server. Judged by ab, nc and plain TCP clients."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess

import trio

from .chattools import LineReader, LineSocket
from .clitools import PYTHON, Supervisor, children, gone, need, run, supervisor
from .conftest import GUARD


async def test_http_serve_with_4_workers_takes_ab_without_errors_over_every_worker() -> None:
    ab = need("ab")
    with trio.fail_after(GUARD * 2):
        async with supervisor(["http", "serve", "--port", "0", "--workers", "4"]) as sup:
            port = sup.port("http (tcp)")
            assert len(set(sup.pids())) == 4
            result = await run(
                [ab, "-k", "-q", "-n", "20000", "-c", "50", f"http://127.0.0.1:{port}/"]
            )
            assert b"Complete requests:      20000" in result.stdout
            assert b"Failed requests:        0" in result.stdout
            assert b"Non-2xx" not in result.stdout
        assert sup.process.returncode == 0  # SIGINT: every worker stopped, exit 0
        served = {
            int(w): int(n) for w, n in re.findall(rb"worker (\d) served (\d+) connections", sup.out)
        }
        assert sorted(served) == [1, 2, 3, 4], sup.out
        assert all(count > 0 for count in served.values()), served  # the kernel spread them


async def test_a_killed_worker_is_started_again_and_serves() -> None:
    with trio.fail_after(GUARD * 2):
        async with supervisor(["http", "serve", "--port", "0", "--workers", "2"]) as sup:
            port = sup.port("http (tcp)")
            first, _ = sup.pids()
            os.kill(first, signal.SIGKILL)
            await sup.wait_until(lambda: b"worker 1 (pid %d) ended" % first in sup.err)
            assert b"ended with status -9" in sup.err
            assert b"starting it again in 0.5 s" in sup.err
            # The new worker's start-up line (the first worker's lines are shown).
            await sup.wait_until(lambda: sup.out.count(b"http (tcp) listening") >= 2)
            for _ in range(20):  # new connections are served (by either worker)
                answer = await run(["curl", "-s", f"http://127.0.0.1:{port}/"])
                assert answer.returncode == 0
        assert sup.process.returncode == 0


class NcUser(LineReader):
    """An ``nc`` process as a chat user: lines to its stdin, what it prints read as
    lines."""

    def __init__(self, process: trio.Process) -> None:
        super().__init__()
        self.process = process

    @classmethod
    async def start(cls, nc: str, port: int) -> NcUser:
        process = await trio.lowlevel.open_process(
            [nc, "127.0.0.1", str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        return cls(process)

    async def receive(self) -> bytes:
        assert self.process.stdout is not None
        return bytes(await self.process.stdout.receive_some())

    async def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(data)

    async def leave(self) -> None:
        """/quit and the end of nc's input: nc ends once the server has closed too."""
        assert self.process.stdin is not None
        await self.send(b"/quit\n")
        await self.process.stdin.aclose()
        await self.read_to_eof()
        assert await self.process.wait() == 0

    async def aclose(self) -> None:
        """Whatever happened, no nc left running (shielded: also on a failed guard)."""
        with trio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.kill()
            await self.process.wait()
            for pipe in (self.process.stdin, self.process.stdout):
                if pipe is not None:
                    await pipe.aclose()


async def _talk(sup: Supervisor, users: list[NcUser], each: int) -> bytes:
    """Every user: a nick, ``each`` lines, everyone's read; the status JSON; a /quit."""
    for user in users:
        await user.read_until(b"welcome")
    for i, user in enumerate(users):
        await user.send(b"/nick u%02d\n" % i)
    for user in users:  # everyone is in #lobby and has seen every rename
        await user.read_until(b"is now known as u%02d" % (len(users) - 1))
    for n in range(each):
        for user in users:
            await user.send(b"line %d\n" % n)
    last = b": line %d" % (each - 1)
    for user in users:  # every sender's last line (senders interleave: any order)
        while sum(line.endswith(last) for line in user.lines) < len(users):
            assert await user.read_some() or not user.eof, user.lines[-5:]
    where = f"127.0.0.1:{sup.port('status (http)')}"
    status = await run([PYTHON, "-m", "triosock", "chat", "status", "--json", where])
    for user in users:
        await user.leave()
    return status.stdout


async def test_chat_with_4_workers_and_a_private_redis_delivers_every_line_once_in_order() -> None:
    need("redis-server")
    nc = need("nc")
    clients, each = 40, 20
    with trio.fail_after(GUARD * 3):
        args = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "none"]
        async with supervisor([*args, "--workers", "4", "--status", "127.0.0.1:0"]) as sup:
            port = sup.port("chat (tcp)")
            users: list[NcUser] = []
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(clients):
                    users.append(await NcUser.start(nc, port))
                    stack.push_async_callback(users[-1].aclose)
                status = await _talk(sup, users, each)
        joined = set(re.findall(rb"\[worker (\d)\] triosock\.chat: guest\d+ joined", sup.err))
        assert len(joined) >= 3, sup.err[-2000:]  # spread over at least 3 of the 4
        # The status says the same: each worker's users, and all 40 in #lobby.
        figures = json.loads(status)
        serving = [w["chat"]["users"] for w in figures["workers"]]
        assert sum(serving) == clients
        assert sum(1 for n in serving if n) >= 3, serving
        assert figures["total"]["chat"]["rooms"] == {"#lobby": clients}
        for user in users:
            for i in range(clients):
                said = [line for line in user.lines if line.startswith(b"[#lobby] u%02d: " % i)]
                assert said == [b"[#lobby] u%02d: line %d" % (i, n) for n in range(each)]
        assert sup.process.returncode == 0


async def test_echo_and_time_serve_with_workers_answer_real_clients() -> None:
    nc, socat, rdate = need("nc"), need("socat"), need("rdate")
    with trio.fail_after(GUARD * 2):
        async with supervisor(["echo", "serve", "--port", "0", "--workers", "2"]) as sup:
            port = sup.port("echo (tcp)")
            for i in range(10):  # new connections, over both workers
                answer = await run([nc, "-N", "127.0.0.1", str(port)], stdin=b"hi %d\n" % i)
                assert answer.stdout == b"hi %d\n" % i
        assert sup.process.returncode == 0
        udp = ["echo", "serve", "--udp", "--port", "0", "--workers", "2"]
        async with supervisor(udp) as sup:
            port = sup.port("echo (udp)")
            for i in range(6):  # new source ports, so new peers
                answer = await run(
                    [socat, "-t", "0.3", "-", f"UDP:127.0.0.1:{port}"], stdin=b"datagram %d" % i
                )
                assert answer.stdout == b"datagram %d" % i
        assert sup.process.returncode == 0
        times = ["time", "serve", "--rfc868-port", "0", "--daytime-port", "none"]
        times += ["--sntp-port", "none", "--strftime-port", "none", "--workers", "2"]
        async with supervisor(times) as sup:
            port = sup.port("rfc868-time (tcp)")
            for _ in range(4):
                answer = await run([rdate, "-p", "127.0.0.1", "-o", str(port)])
                assert answer.returncode == 0, answer.stderr
                assert re.fullmatch(
                    rb"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d UTC \d{4}\n", answer.stdout
                )
        assert sup.process.returncode == 0


async def test_a_killed_chat_worker_its_users_leave_the_rest_stay_and_a_new_one_serves() -> None:
    need("redis-server")
    with trio.fail_after(GUARD * 2):
        args = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "none"]
        args += ["--resume-window", "0"]  # (else the dead worker's sessions wait: resumes)
        async with supervisor([*args, "--workers", "2"]) as sup:
            port = sup.port("chat (tcp)")
            users = [await LineSocket.connect(port) for _ in range(12)]
            guests = []
            for i, user in enumerate(users):
                welcome = await user.read_until(b"welcome")
                guests.append(welcome.split(b", ")[1].split(b";")[0])
                await user.send(b"/nick u%02d\n" % i)
            # Each told of its own rename: every rename is done (a killed worker's in
            # flight would be reaped under the guest name).
            for i, user in enumerate(users):
                await user.read_until(b"is now known as u%02d" % i)
            # Which worker serves whom: from the workers' "guestN joined" log lines.
            worker_of: dict[bytes, bytes] = {}
            for worker, guest in re.findall(
                rb"\[worker (\d)\] triosock\.chat: (guest\d+) joined", sup.err
            ):
                worker_of[guest] = worker
            on = [worker_of[guest] for guest in guests]
            assert set(on) == {b"1", b"2"}, sup.err[-1500:]  # both serve someone
            victim = sup.pids()[0]  # worker 1
            killed = trio.current_time()
            os.kill(victim, signal.SIGKILL)
            gone = [i for i, worker in enumerate(on) if worker == b"1"]
            kept = [i for i, worker in enumerate(on) if worker == b"2"]
            for i in gone:
                await users[i].read_to_eof()  # disconnected with its worker
            leaves = {b"* u%02d left #lobby" % j for j in gone}
            for i in kept:  # the rest hear each one leave (in any order), from the reaper
                while not leaves <= set(users[i].lines):
                    assert await users[i].read_some() or not users[i].eof, users[i].lines[-5:]
            # Within the lease (6 s) and a reaping pass, as the README promises (<= 10 s).
            assert trio.current_time() - killed < 10
            await users[kept[0]].send(b"/who\n")
            who = await users[kept[0]].read_until(b"-!- in #lobby: ")
            assert who == b"-!- in #lobby: " + b", ".join(b"u%02d" % i for i in kept)
            await sup.wait_until(lambda: b"worker 1 (pid %d) ended" % victim in sup.err)
            newcomer = await LineSocket.connect(port)  # served by either worker
            await newcomer.read_until(b"welcome")
            await newcomer.send(b"/nick u%02d\n" % gone[0])  # a dead user's nick is free
            await newcomer.read_until(b"is now known as u%02d" % gone[0])
            await newcomer.send(b"hello after the crash\n")
            for i in kept:
                await users[i].read_until(b"hello after the crash")
            for user in [*users, newcomer]:
                user.close()
        assert sup.process.returncode == 0


async def test_a_supervisor_killed_outright_takes_its_workers_and_redis_with_it() -> None:
    need("redis-server")
    with trio.fail_after(GUARD):
        args = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "none"]
        async with supervisor([*args, "--workers", "2"]) as sup:
            kids = [int(pid) for pid in children(sup.process.pid)]
            assert len(kids) == 3  # two workers and the private redis-server
            sup.process.kill()  # SIGKILL: no stop, no cleanup of its own
            await sup.process.wait()
            # The workers see their stdin end; the kernel tells redis (PR_SET_PDEATHSIG).
            for pid in kids:
                await gone(pid)
