"""Why a session ended, as the log says it: each way a session is cancelled from outside
(the TCP idle timeout, a UDP peer's expiry, the end of the grace period) is named, over
real sockets, on virtual time."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from triosock import TCPServer, serve_tcp
from triosock.chat import ChatServer

from .chattools import (
    LineSocket,
    MemoryMember,
    chat_servers,
    expect,
    join_over_udp,
    lobby_user,
)


class Leavings:
    """The log lines of the chat's leavings, as the test's log captured them."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="triosock.chat")
        self._caplog = caplog

    def __call__(self) -> list[str]:
        return [r.getMessage() for r in self._caplog.records if " left (" in r.getMessage()]


@pytest.fixture
def leavings(caplog: pytest.LogCaptureFixture) -> Leavings:
    return Leavings(caplog)


async def test_an_idle_user_is_told_why_and_the_log_names_its_seconds(
    autojump_clock: trio.testing.MockClock, leavings: Leavings
) -> None:
    # The idle timeout ends the session's input through its stop scope: the session says
    # goodbye (what was queued, then why) as for any other end; it is detached for the
    # resume window (120 s), and then the room is told.
    with trio.fail_after(300):
        async with (
            chat_servers(ChatServer(), tcp_options={"idle_timeout": 5}) as (tcp, _, _),
            trio.open_nursery() as nursery,
        ):
            witness = await lobby_user(tcp.port)

            async def keep_talking() -> None:
                while True:  # an empty line: not said, but life
                    await trio.sleep(2)
                    await witness.send(b"")

            nursery.start_soon(keep_talking)
            silent = await LineSocket.connect(tcp.port)
            start = trio.current_time()
            await silent.read_until(b"* guest2 joined #lobby")
            await silent.read_to_eof()  # the server closes it once the session has left
            assert trio.current_time() - start == pytest.approx(5)
            assert silent.lines[-1] == b"-!- disconnected: idle for 5 s"
            await expect(witness, b"* guest2 left #lobby")
            assert trio.current_time() - start == pytest.approx(5 + 120)
            silent.close()
            nursery.cancel_scope.cancel()
            await witness.aclose()
    assert leavings()[0] == "guest2 left (idle for 5 s, then no resume within 120 s)"


async def test_a_udp_peers_expiry_is_named(
    autojump_clock: trio.testing.MockClock, leavings: Leavings
) -> None:
    with trio.fail_after(100):
        async with chat_servers(ChatServer(resume_window=0), peer_idle_timeout=10) as (tcp, udp, _):
            watcher = await lobby_user(tcp.port)
            peer = await join_over_udp(udp.port)
            await peer.send(b"hello")
            name = b"127.0.0.1:%d" % peer.socket.getsockname()[1]
            await expect(watcher, name + b": hello")
            await expect(watcher, b"* " + name + b" left #lobby")
            await peer.aclose()
            await watcher.aclose()
    # The peer's leaving comes first; how the watcher's own session ends does not matter.
    assert leavings()[0] == f"{name.decode()} left (cancelled: the UDP peer expired)"


async def test_the_end_of_the_grace_period_is_named(
    autojump_clock: trio.testing.MockClock, leavings: Leavings
) -> None:
    chat = ChatServer()
    with trio.fail_after(100):
        async with chat, trio.open_nursery() as nursery:
            tcp: TCPServer = await nursery.start(
                lambda task_status: serve_tcp(
                    chat.serve_tcp_client, 0, grace_period=0, task_status=task_status
                )
            )
            user = await LineSocket.connect(tcp.port)
            await user.read_until(b"* guest1 joined #lobby")
            tcp.stop()  # no grace at all: the session is cancelled before it can end
            await user.read_to_eof()
            user.close()
            nursery.cancel_scope.cancel()
    assert leavings() == ["guest1 left (cancelled: the end of the grace period)"]


async def test_a_session_cancelled_by_its_caller_says_only_cancelled(leavings: Leavings) -> None:
    chat = ChatServer()
    member = MemoryMember("memory")
    with trio.fail_after(10):
        async with chat, trio.open_nursery() as nursery:
            nursery.start_soon(chat.serve_member, member)
            await member.sink.wait_for(b"* guest1 joined #lobby")
            nursery.cancel_scope.cancel()
    assert leavings() == ["guest1 left (cancelled)"]
