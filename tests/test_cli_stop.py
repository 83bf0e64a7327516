"""Stopping a server from the command line: a second Ctrl-C during a graceful stop ends
the process at once with 130, a server's or a supervisor's; a supervisor says it is
stopping once, not once per worker. Real processes, real signals, real sockets."""

from __future__ import annotations

import re
import signal

import trio

from .clitools import Supervisor, cli_server, gone, need, supervisor

GUARD = 60
#: How long a second Ctrl-C may take to end the process. A chat user that never reads
#: keeps the first stop busy for 2 s (the server lingers for its close).
AT_ONCE = 1.0
CHAT_TCP = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "none"]


async def test_a_second_sigint_ends_a_stopping_server_at_once_with_130() -> None:
    with trio.fail_after(GUARD):
        async with cli_server([*CHAT_TCP, "--status", "none"], ready_lines=2) as server:
            process = server.process
            assert process.stderr is not None
            assert process.stdout is not None
            user = await trio.open_tcp_stream("127.0.0.1", server.port("chat (tcp)"))
            log = b""
            while b"guest1 joined" not in log:  # the session runs; the user never reads
                log += await process.stderr.receive_some()
            process.send_signal(signal.SIGINT)
            said = b""
            while b"shutting down" not in said:
                said += await process.stdout.receive_some()
            second = trio.current_time()
            process.send_signal(signal.SIGINT)
            status = await process.wait()
            took = trio.current_time() - second
            while chunk := await process.stderr.receive_some():
                log += chunk
            await user.aclose()
    assert status == 130
    assert took < AT_ONCE, f"the second SIGINT took {took:.2f} s"
    assert b"Traceback" not in log


async def _stopping(sup: Supervisor) -> float:
    """SIGINT, then wait for the supervisor's word; the time of that word."""
    sup.process.send_signal(signal.SIGINT)
    await sup.wait_until(lambda: b"stopping 2 workers" in sup.out)
    return trio.current_time()


async def test_a_second_sigint_ends_a_supervisor_and_its_workers_at_once() -> None:
    need("redis-server")
    with trio.fail_after(GUARD):
        args = [*CHAT_TCP, "--workers", "2", "--status", "none"]
        async with supervisor(args) as sup:
            pids = sup.pids()
            users = [
                await trio.open_tcp_stream("127.0.0.1", sup.port("chat (tcp)")) for _ in range(4)
            ]
            await sup.wait_until(lambda: sup.err.count(b" joined ") >= 4)
            second = await _stopping(sup)
            sup.process.send_signal(signal.SIGINT)
            status = await sup.process.wait()
            took = trio.current_time() - second
            for pid in pids:  # killed, not left to finish their stop
                await gone(pid)
            workers_gone = trio.current_time() - second
            for user in users:
                await user.aclose()
    assert status == 130
    assert took < AT_ONCE, f"the second SIGINT took {took:.2f} s"
    assert workers_gone < AT_ONCE + 1, f"the workers took {workers_gone:.2f} s"
    assert b"Traceback" not in sup.err
    # The private redis-server's directory is removed all the same.
    shared = re.search(rb"a private redis at (\S+)/redis\.sock", sup.err)
    assert shared is not None, sup.err
    assert not await trio.Path(shared.group(1).decode()).exists()


async def test_a_supervisor_says_it_stops_once_and_its_workers_say_nothing() -> None:
    with trio.fail_after(GUARD):
        async with supervisor(["echo", "serve", "--port", "0", "--workers", "2"]) as sup:
            await _stopping(sup)
            assert await sup.process.wait() == 0
    # (read once the supervisor's output has ended: the context waits for its end)
    said = [line for line in (sup.out + sup.err).decode().splitlines() if "received" in line]
    assert said == ["SIGINT received, stopping 2 workers"]
