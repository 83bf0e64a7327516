"""Rooms shared across servers ("machines" on 127.0.0.2 and 127.0.0.3) through a real
redis-server: the Redis hub and directory, ``chat serve --redis``, and broker faults.

Redis keeps time in real seconds (its key expiry, a paused process), so these tests run
on real time, each under an absolute guard.
"""

from __future__ import annotations

import os
import signal

import pytest
import trio

from triosock._services.chat._server import HUB_BACK, HUB_DEGRADED

from .chattools import socat_join
from .clitools import PYTHON, cli_server, line_process, need, run
from .conftest import GUARD
from .redistools import chat_node, chat_users, free_port, redis_server

pytest.importorskip("coredis")


async def test_two_servers_share_rooms_nicks_and_direct_messages_through_redis() -> None:
    nc, socat = need("nc"), need("socat")
    with trio.fail_after(GUARD):
        async with redis_server() as redis:
            serve = ["chat", "serve", "--redis", redis.url, "--web", "none"]
            async with (
                cli_server([*serve, "--tcp", "127.0.0.2:0", "--udp", "127.0.0.2:0"], 3) as a,
                cli_server([*serve, "--tcp", "127.0.0.3:0", "--udp", "none"], 2) as b,
            ):
                tcp_a, udp_a = _port(a.lines, "(tcp)"), _port(a.lines, "(udp)")
                tcp_b = _port(b.lines, "(tcp)")
                async with (
                    line_process([nc, "127.0.0.2", str(tcp_a)]) as alice,
                    line_process([nc, "127.0.0.3", str(tcp_b)]) as bob,
                    line_process([socat, "-", f"UDP:127.0.0.2:{udp_a}"]) as peer,
                ):
                    await alice.expect(b"welcome")
                    await alice.send(b"/nick alice")
                    await alice.expect(b"is now known as alice")
                    await bob.expect(b"welcome")
                    await bob.send(b"/nick alice")  # taken, on the other server
                    assert await bob.expect(b"taken") == b"-!- nick alice is taken"
                    await bob.send(b"/nick bob")
                    await alice.expect(b"is now known as bob")  # from the other machine
                    await socat_join(peer)
                    # The peer's own join line (bob's own may come late: not that one).
                    udp_name = (await bob.expect(b"* 127.0.0.1:")).split()[1]
                    assert udp_name.startswith(b"127.0.0.1:")
                    await bob.send(b"hello from b")
                    assert await alice.expect(b"hello from b") == b"[#lobby] bob: hello from b"
                    await peer.expect(b"[#lobby] bob: hello from b")
                    await alice.send(b"hello from a")
                    assert await bob.expect(b"hello from a") == b"[#lobby] alice: hello from a"
                    await peer.send(b"hi from udp")
                    assert await bob.expect(b"hi from udp") == (
                        b"[#lobby] " + udp_name + b": hi from udp"
                    )
                    await bob.send(b"/who")
                    who = await bob.expect(b"in #lobby:")
                    names = b", ".join(sorted([b"alice", b"bob", udp_name]))
                    assert who == b"-!- in #lobby: " + names
                    await alice.send(b"/msg bob across the machines")
                    assert await bob.expect(b"across") == b"[dm from alice] across the machines"
                    await bob.send(b"/msg alice and back")
                    assert await alice.expect(b"and back") == b"[dm from bob] and back"
                    await alice.send(b"/rooms")
                    await alice.expect(b"#lobby (3)")
                    # Nobody got anything twice: alice's own line came back once.
                    await alice.send(b"marker")
                    await bob.expect(b"marker")
                    await alice.expect(b"marker")
                    assert [line for line in alice.seen if b"hello from a" in line] == [
                        b"[#lobby] alice: hello from a"
                    ]


async def test_a_killed_server_frees_its_users_nicks_within_the_lease() -> None:
    """Without resumes (a session with a token waits for its resume instead: see
    test_cluster_resume)."""
    nc = need("nc")
    with trio.fail_after(GUARD):
        async with redis_server() as redis:
            serve = ["chat", "serve", "--redis", redis.url, "--web", "none", "--udp", "none"]
            serve += ["--resume-window", "0"]
            async with (
                cli_server([*serve, "--tcp", "127.0.0.2:0"], 2) as a,
                cli_server([*serve, "--tcp", "127.0.0.3:0"], 2) as b,
                line_process([nc, "127.0.0.2", str(_port(a.lines, "(tcp)"))]) as alice,
                line_process([nc, "127.0.0.3", str(_port(b.lines, "(tcp)"))]) as bob,
            ):
                await alice.expect(b"welcome")
                await bob.expect(b"welcome")
                await bob.send(b"/nick bob")
                await alice.expect(b"is now known as bob")
                os.kill(b.process.pid, signal.SIGKILL)  # no goodbye, no unregister
                await b.process.wait()
                killed = trio.current_time()
                # Nobody is left on b to say bob left: a's reaper does, once the lease ends.
                await alice.expect(b"* bob left #lobby")
                assert 1 <= trio.current_time() - killed <= 8
                # The lease (6 s) runs out; /who stops listing bob, his nick is free.
                while True:
                    await alice.send(b"/who")
                    who = await alice.expect(b"in #lobby:")
                    if b"bob" not in who:
                        break
                    await trio.sleep(0.5)  # polling Redis's real-time expiry
                assert trio.current_time() - killed <= 10
                await alice.send(b"/nick bob")
                await alice.expect(b"is now known as bob")


# -- faults, on the API ----------------------------------------------------------------


async def test_redis_paused_for_2_s_loses_and_duplicates_nothing() -> None:
    lines = 200
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            chat_node(redis.url, "127.0.0.2") as (_, a),
            chat_node(redis.url, "127.0.0.3") as (_, b),
        ):
            here = await chat_users(a, "127.0.0.2", 50)
            there = await chat_users(b, "127.0.0.3", 50)
            sender = here[0]
            await sender.send(b"/nick sender\n")
            for user in there:
                await user.read_until(b"is now known as sender")

            async def send_steadily() -> None:
                for i in range(lines):
                    await sender.send(b"line %d\n" % i)
                    await trio.sleep(0.02)  # a steady sender: 50 lines/s for 4 s

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_steadily)
                await trio.sleep(1)
                redis.pause()
                await trio.sleep(2)  # the fault itself: Redis stopped for 2 s
                redis.resume()
            for user in [*here, *there]:
                await user.read_until(b"sender: line %d" % (lines - 1))
                said = [line for line in user.lines if b"] sender: line " in line]
                assert said == [b"[#lobby] sender: line %d" % i for i in range(lines)]
            for user in [*here, *there]:
                user.close()


async def test_redis_killed_and_restarted_users_stay_are_told_and_delivery_resumes() -> None:
    with trio.fail_after(GUARD):
        async with (
            redis_server() as redis,
            chat_node(redis.url, "127.0.0.2") as (_, a),
            chat_node(redis.url, "127.0.0.3") as (_, b),
        ):
            (alice,) = await chat_users(a, "127.0.0.2", 1)
            (bob,) = await chat_users(b, "127.0.0.3", 1)
            await alice.send(b"/nick alice\n")
            await bob.read_until(b"is now known as alice")
            await bob.send(b"/nick bob\n")
            await alice.read_until(b"is now known as bob")
            await redis.kill()
            for user in (alice, bob):
                assert await user.read_until(b"degraded") == b"-!- " + HUB_DEGRADED.encode()
            await alice.send(b"said while redis is down\n")  # reaches alice's server only
            await alice.read_until(b"said while redis is down")
            await trio.sleep(2)  # Redis stays down for 2 s
            await redis.start()  # the same port, empty
            restarted = trio.current_time()
            for user in (alice, bob):
                assert await user.read_until(b"are back") == b"-!- " + HUB_BACK.encode()
            await alice.send(b"after the restart\n")
            assert await bob.read_until(b"after the restart") == (
                b"[#lobby] alice: after the restart"
            )
            assert trio.current_time() - restarted <= 2
            assert not any(b"while redis is down" in line for line in bob.lines)
            # Each server re-asserts its users (retrying every 0.25 s while Redis was
            # away): the directory knows both again, within 2 s of the restart.
            while True:
                await bob.send(b"/who\n")
                who = await bob.read_until(b"in #lobby:")
                if who == b"-!- in #lobby: alice, bob" or trio.current_time() - restarted > 2:
                    break
                await trio.sleep(0.1)  # polling the other server's re-assertion
            assert who == b"-!- in #lobby: alice, bob"
            alice.close()
            bob.close()


def _port(lines: list[str], label: str) -> int:
    for line in lines:
        if label in line:
            return int(line.rsplit(":", 1)[1].split()[0])
    raise AssertionError(f"no {label} line in {lines}")


async def test_an_unreachable_or_malformed_redis_is_one_line_on_stderr() -> None:
    with trio.fail_after(GUARD):
        port = free_port()  # nothing listens there
        down = await run(
            [PYTHON, "-m", "triosock", "chat", "serve", "--redis", f"redis://127.0.0.1:{port}"]
        )
        assert down.returncode == 1
        assert down.stderr.decode().startswith(
            f"triosock: error: cannot reach redis at redis://127.0.0.1:{port}: "
        )
        assert down.stderr.count(b"\n") == 1
        bad = await run([PYTHON, "-m", "triosock", "chat", "serve", "--redis", "localhost:6379"])
        assert bad.returncode == 2
        assert (
            b"not a redis URL: 'localhost:6379' (redis://HOST:PORT/DB or unix://PATH)" in bad.stderr
        )
        assert b"Traceback" not in down.stderr + bad.stderr
