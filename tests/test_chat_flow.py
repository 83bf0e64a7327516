"""The chat's flow control over real sockets: a paste reaches everyone, a reader that
stops is disconnected under the documented rule without slowing anybody, lines are
never torn, notices keep their order, and nicks never have two owners.

The timed tests run on virtual time (``autojump_clock``): the rate limit, the stall
timeout and the goodbye wait are seconds of trio's clock, not of the wall.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections import Counter
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from triosock._services.chat._sessions import SESSIONS_PER_BATCH
from triosock.chat import ChatServer, InProcessDirectory
from triosock.hub import InProcessHub, Policy

from .chattools import LineSocket, chat_servers, validate_udp_socket, without_token
from .conftest import GUARD, Batches, rss


class CountingHub(InProcessHub[bytes]):
    """An in-process hub that counts how often a publisher had to wait."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    async def publish(self, topic: str, message: bytes) -> int:
        self.waits += 1
        return await super().publish(topic, message)


async def joined(member: LineSocket, nick: bytes) -> None:
    await member.read_until(b"* " + nick + b" joined")


async def test_a_paste_of_ten_thousand_lines_reaches_every_reader_whole_and_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer()  # every default: the rate limit, the buffer, the disconnect rule
    count = 10_000
    paste = b"".join(b"paste line %05d of the clipboard\n" % i for i in range(count))
    expected = [b"[#lobby] guest4: paste line %05d of the clipboard" % i for i in range(count)]
    baseline = rss()
    peak = baseline
    with trio.fail_after(count):  # virtual seconds: 10,000 lines at 50 a second is ~200
        async with chat_servers(chat) as (tcp, _, _):
            readers = [await LineSocket.connect(tcp.port) for _ in range(3)]
            await joined(readers[0], b"guest3")
            sender = await LineSocket.connect(tcp.port)
            await joined(readers[0], b"guest4")

            async def receive_all(member: LineSocket) -> None:
                got = 0
                while got < count and not member.eof:
                    lines = await member.read_some()
                    got += sum(line.startswith(b"[#lobby] guest4: paste") for line in lines)

            async def sample_memory() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, rss())
                    await trio.sleep(0.5)

            async with trio.open_nursery() as sampling:
                sampling.start_soon(sample_memory)
                start = trio.current_time()
                async with trio.open_nursery() as nursery:
                    for member in [*readers, sender]:  # the sender reads too, as nc does
                        nursery.start_soon(receive_all, member)
                    await sender.send(paste)  # one write (the kernel takes what it can)
                took = trio.current_time() - start
                sampling.cancel_scope.cancel()
            assert await chat.users() == ["guest1", "guest2", "guest3", "guest4"]
            stats = chat.statistics()
            for member in [*readers, sender]:
                member.close()
    for member in [*readers, sender]:
        assert [line for line in member.lines if line.startswith(b"[#lobby] guest4: paste")] == (
            expected
        )
    assert stats.disconnected_slow == 0
    assert stats.paced > 0  # the sender was slowed: that is where the paste waited
    assert took == pytest.approx((count - chat.burst) / 50, rel=0.05)
    assert peak - baseline < 16 * 1024 * 1024, f"RSS grew by {(peak - baseline) >> 20} MiB"


async def test_a_member_that_never_reads_is_dropped_under_the_rule_and_nobody_waits(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="triosock.chat")
    hub = CountingHub()
    chat = ChatServer(hub, resume_window=0)  # otherwise every default; it leaves at once
    text = b"x" * 900
    most = 20_000  # ~18 MB, a bound: the kernel holds a few MB for a reader that stops
    with trio.fail_after(most):
        async with chat_servers(chat) as (tcp, _, _):
            sleeper = await LineSocket.connect(tcp.port, rcvbuf=4096)
            listener = await LineSocket.connect(tcp.port)
            await joined(listener, b"guest2")
            talker = await LineSocket.connect(tcp.port)
            await joined(listener, b"guest3")
            dropped = trio.Event()
            said: list[bytes] = []

            async def drain(member: LineSocket) -> None:
                while not member.eof:
                    if b"* guest1 left #lobby" in await member.read_some():
                        dropped.set()

            async def talk() -> None:
                for i in range(most):
                    said.append(b"%d %s" % (i, text))
                    await talker.send(said[-1] + b"\n")
                    if dropped.is_set():
                        return  # the server still has thousands of these to read

            async def wake_the_sleeper() -> list[bytes]:
                await dropped.wait()
                # Now the sleeper reads: the server still offers it the notice.
                return await sleeper.read_to_eof()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, talker)
                async with trio.open_nursery() as listening:
                    listening.start_soon(drain, listener)
                    async with trio.open_nursery() as waking:
                        waking.start_soon(talk)
                        lines = await wake_the_sleeper()
                    listening.cancel_scope.cancel()
                await listener.read_until(b": %d " % (len(said) - 1))
                nursery.cancel_scope.cancel()
            users = await chat.users()
            for member in (sleeper, listener, talker):
                member.close()
    # Every other member got every line, once, in order; nobody waited for the sleeper.
    assert [line for line in listener.lines if line.startswith(b"[#lobby] guest3: ")] == [
        b"[#lobby] guest3: " + line for line in said
    ]
    assert hub.waits == 0
    assert users == ["guest2", "guest3"]
    assert chat.statistics().disconnected_slow == 1
    # The log says which rule fired; the sleeper saw whole lines, then why.
    (record,) = [r for r in caplog.records if "disconnecting" in r.getMessage()]
    assert re.search(
        r"disconnecting guest1 \(tcp 127\.0\.0\.1:\d+\): \d+ bytes were waiting for it, "
        r"over the limit of 262144",
        record.getMessage(),
    )
    assert lines[-1].startswith(b"-!- disconnected: your connection stopped taking"), lines[-3:]
    body = [line for line in lines[:-1] if line.startswith(b"[#lobby] guest3: ")]
    assert body == [b"[#lobby] guest3: " + line for line in said[: len(body)]]
    assert len(body) < len(said)


async def test_a_member_whose_socket_takes_nothing_is_dropped_after_the_stall_timeout(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="triosock.chat")
    chat = ChatServer(resume_window=0)  # it leaves at once (detaching: test_chat_resume)
    with trio.fail_after(1000):
        async with chat_servers(chat) as (tcp, _, _):
            sleeper = await LineSocket.connect(tcp.port, rcvbuf=4096)
            talker = await LineSocket.connect(tcp.port)
            await talker.read_until(b"guest2 joined")
            # Talk until some output waits for the sleeper, then fall silent: a quiet
            # room, a backlog far below the byte limit, and a socket taking nothing.
            (user,) = [u for u in chat._sessions.users.values() if u.core.nick == "guest1"]
            sent = 0
            while user.outbox.queued == 0:
                await talker.send(b"%d %s\n" % (sent, b"y" * 1000))
                sent += 1
                await talker.read_until(b"guest2: %d " % (sent - 1))
            start = trio.current_time()
            await talker.read_until(b"* guest1 left #lobby")
            waited = trio.current_time() - start
            for member in (sleeper, talker):
                member.close()
    assert waited == pytest.approx(chat.stall_timeout, abs=0.1)
    (record,) = [r for r in caplog.records if "disconnecting" in r.getMessage()]
    assert re.search(r"it took nothing for 30 s with \d+ bytes waiting", record.getMessage())


THE_TEXT = b"z" * 600
#: A talker's line and every other line the members of this test may see, whole.
WHOLE = re.compile(
    rb"(\[\d\d:\d\d:\d\d\] )?\[#(a|b)\] guest[12]: \d+ "  # live, or an earlier line
    + THE_TEXT
    + rb"|-!- #(a|b): \d+ earlier lines \(times UTC, \d{4}-\d\d-\d\d\)"
    + rb"|-!- end of earlier lines of #(a|b)(; /history N shows more)?"
    + rb"|-!- day changed to \d{4}-\d\d-\d\d"
    + rb"|\* guest\d+ (joined|left) #(a|b|lobby)"
    + rb"|-!- (welcome to triosock chat, guest\d+; /help lists commands|server closing: goodbye)"
    + rb"|-!- your resume token: [A-Za-z0-9_-]{32} \(secret; .*\)"
)


async def test_joins_between_busy_rooms_and_a_stop_mid_burst_never_tear_a_line() -> None:
    # As much pressure as the machine makes, lossless (block) so that the slow mover stays.
    chat = ChatServer(rate=None, policy="block")
    joins = 200
    with trio.fail_after(GUARD * 2):
        async with chat_servers(chat) as (tcp, _, _):
            talkers = [await LineSocket.connect(tcp.port) for _ in range(2)]
            await talkers[0].read_until(b"guest2 joined")
            for talker, room in zip(talkers, (b"#a", b"#b"), strict=True):
                await talker.send(b"/join " + room + b"\n")
                await talker.read_until(b"joined " + room)
            readers = [await LineSocket.connect(tcp.port) for _ in range(2)]
            for reader, room in zip(readers, (b"#a", b"#b"), strict=True):
                await reader.send(b"/join " + room + b"\n")
                await reader.read_until(b"joined " + room)
            # A small receive window keeps the mover's socket full much of the time, so
            # its output is often mid-line when it moves or the server stops.
            mover = await LineSocket.connect(tcp.port, rcvbuf=4096)
            await mover.read_until(b"guest5 joined #lobby")
            members = [*talkers, *readers, mover]

            async def talk(talker: LineSocket) -> None:
                with contextlib.suppress(OSError):  # until the server closes on us
                    for burst in range(1000):  # bounded; the stop comes long before the end
                        lines = (b"%d %s\n" % (burst * 50 + i, THE_TEXT) for i in range(50))
                        await talker.send(b"".join(lines))

            async def drain(member: LineSocket) -> None:
                while not member.eof:
                    await member.read_some()

            async with trio.open_nursery() as talking:
                for talker in talkers:
                    talking.start_soon(talk, talker)
                async with trio.open_nursery() as draining:  # ends when all have had EOF
                    for member in [*talkers, *readers]:
                        draining.start_soon(drain, member)
                    for n in range(joins):
                        room = (b"#a", b"#b")[n % 2]
                        await mover.send(b"/join " + room + b"\n")
                        await mover.read_until(b"* guest5 joined " + room)
                    # Stop the server mid-burst: both talkers are still pasting.
                    tcp.stop()
                    await drain(mover)
                talking.cancel_scope.cancel()
            for member in members:
                member.close()
    for member in members:
        torn = [line for line in member.lines if not WHOLE.fullmatch(line)]
        assert torn == [], f"{len(torn)} torn lines, e.g. {torn[0][:80]!r}"
        assert member.lines[-1] == b"-!- server closing: goodbye", (
            members.index(member),
            member.lines[-1][:50],
            member._rest[:50],
            len(member.lines),
        )
    assert sum(line.endswith(THE_TEXT) for line in mover.lines) > joins  # it was busy


async def test_notices_come_after_the_room_lines_produced_before_them() -> None:
    chat = ChatServer(max_line_length=100, history_on_join=0)
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            alice = await LineSocket.connect(tcp.port)
            await alice.send(b"/nick alice\n")
            await alice.read_until(b"is now known as alice")
            for _ in range(20):  # the join and the notice race every time
                late = await LineSocket.connect(tcp.port)
                await late.send(b"/nick alice\nhello\n" + b"y" * 200 + b"\n/quit\n")
                lines = without_token(await late.read_to_eof())
                nick = lines[0].split(b", ")[1].split(b";")[0]
                assert lines == [
                    b"-!- welcome to triosock chat, " + nick + b"; /help lists commands",
                    b"* " + nick + b" joined #lobby",
                    b"-!- nick alice is taken",
                    b"[#lobby] " + nick + b": hello",
                    b"-!- line refused (200 bytes): lines may be at most 100 bytes",
                    b"-!- bye",
                ]
                late.close()
            alice.close()


async def wins_racer(member: LineSocket, name: bytes) -> bool:
    """Whether ``member``'s own ``/nick racer`` was granted (the answer to it, not the
    announcement of somebody else's)."""
    while True:
        line = await member.read_until(b"racer")
        if line == b"-!- nick racer is taken":
            return False
        if line == b"* " + name + b" is now known as racer":
            return True


@pytest.mark.parametrize("policy", ["disconnect", "block"])
async def test_racing_for_one_nick_never_makes_two_owners(
    autojump_clock: trio.testing.MockClock, policy: Policy
) -> None:
    directory = InProcessDirectory()
    chat = ChatServer(directory=directory, policy=policy)
    rounds = 1000
    with trio.fail_after(100 * rounds):
        async with chat_servers(chat) as (tcp, _, _):
            names = [b"alice", b"carol", b"dave"]
            alice, carol, dave = users = [await LineSocket.connect(tcp.port) for _ in names]
            for member, name in zip(users, names, strict=True):
                await member.send(b"/nick " + name + b"\n")
                await member.read_until(b"is now known as " + name)
            owners: list[bytes] = []
            for n in range(rounds):
                # alice changes rooms while carol asks for her nick; carol and dave both
                # ask for "racer" in the same instant.
                await alice.send(b"/join #r%d\n" % (n % 2))
                await carol.send(b"/nick alice\n/nick racer\n")
                await dave.send(b"/nick racer\n")
                await alice.read_until(b"* alice joined #r%d" % (n % 2))
                while (line := await carol.read_until(b"alice")).startswith(b"* alice "):
                    pass  # alice's comings and goings in the lobby
                assert line == b"-!- nick alice is taken"
                won = [
                    await wins_racer(member, name)
                    for member, name in ((carol, b"carol"), (dave, b"dave"))
                ]
                assert won.count(True) == 1, won
                owner = directory.state.lookup("racer")
                assert owner is not None
                owners.append(owner.nick.encode())
                # The winner gives it back, so the next round races again.
                back = carol if won[0] else dave
                name = b"carol" if back is carol else b"dave"
                await back.send(b"/nick " + name + b"\n")
                await back.read_until(b"racer is now known as " + name)
                if n % 100 == 0:
                    await dave.send(b"/who\n")
                    who = await dave.read_until(b"-!- in #lobby:")
                    listed = who.split(b": ", 1)[1].split(b", ")
                    assert [x.decode() for x in listed] == await chat.users("#lobby")
            assert directory.state.lookup("alice") is not None
            assert sorted(await chat.users()) == ["alice", "carol", "dave"]
            for member in users:
                member.close()
    assert set(owners) <= {b"racer"}


@pytest.mark.parametrize(("peers", "lines"), [(300, 300), (150, 200)])
async def test_a_room_flooded_for_its_udp_peers_does_not_hold_another_rooms_line(
    peers: int, lines: int
) -> None:
    """300 lines for 300 UDP peers in #a are 90,000 datagrams, a write each. The fan-out
    gives a room's UDP peers about ROOM_WRITES_PER_PASS writes a pass, serves what is new
    first and lets the server run between passes, so a line said in #b meanwhile goes out
    after a pass or two, not after the whole backlog. A room of 150 (30,000 datagrams)
    is no exception: its pass is bounded the same way (rooms of up to 256 members once
    wrote all they had in one pass, over 100 ms of one scheduler batch)."""
    chat = ChatServer(rate=None, policy="block", buffer=lines, presence_limit=None)
    with trio.fail_after(GUARD):
        async with chat_servers(chat, queue_size=lines) as (tcp, udp, _):
            members = []
            for _ in range(peers):
                sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
                await sock.connect(("127.0.0.1", udp.port))
                await validate_udp_socket(sock)
                await sock.send(b"/join #a")
                while b"joined #a" not in await sock.recv(65536):
                    pass
                members.append(sock)
            speaker, watcher = (
                await LineSocket.connect(tcp.port),
                await LineSocket.connect(tcp.port),
            )
            for user in (speaker, watcher):
                await user.read_until(b"welcome")
            await speaker.send(b"/join #a\n")
            await speaker.read_until(b"joined #a")
            await watcher.send(b"/join #b\n")
            await watcher.read_until(b"joined #b")
            said_in_b = await LineSocket.connect(tcp.port)
            await said_in_b.send(b"/join #b\n")
            await said_in_b.read_until(b"joined #b")
            before = udp.statistics().datagrams_out
            await speaker.send(b"".join(b"flood %03d\n" % i for i in range(lines)))
            await members[0].recv(65536)  # the fan-out has begun #a's backlog
            await said_in_b.send(b"in b\n")
            await watcher.read_until(b"in b")
            sent = udp.statistics().datagrams_out - before
            # All of them in one pass would come first; a pass or two of 4,000 do not.
            assert sent < peers * lines // 2, sent
            for sock in members:
                sock.close()
            for user in (speaker, watcher, said_in_b):
                user.close()


class _Leaves(logging.Handler):
    """The scheduler batch of each "X left" the chat logs; ``all_left`` once ``expected``
    have. The batch counter starts with the first (``start_counting``), so that it does
    not hold virtual time still before."""

    def __init__(self, nursery: trio.Nursery, expected: int) -> None:
        super().__init__(logging.INFO)
        self.nursery, self.expected = nursery, expected
        self.batches: Batches | None = None
        self.ends: list[int] = []
        self.all_left = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if " left (" not in record.getMessage():
            return
        if self.batches is None:
            self.batches = Batches()
            self.nursery.start_soon(self.batches.run)
        self.ends.append(self.batches.now)
        if len(self.ends) == self.expected:
            self.all_left.set()

    def check(self) -> None:
        # A batch lets SESSIONS_PER_BATCH go; each logs its leaving a step or two later,
        # so a batch's count here can hold two or three groups, never the whole burst.
        per_batch = Counter(self.ends)
        assert len(self.ends) == self.expected
        assert max(per_batch.values()) <= 3 * SESSIONS_PER_BATCH, per_batch
        assert len(per_batch) >= self.expected // (2 * SESSIONS_PER_BATCH), per_batch


@contextlib.contextmanager
def _logged_leaves(nursery: trio.Nursery, expected: int) -> Iterator[_Leaves]:
    logger = logging.getLogger("triosock.chat")
    leaves, level = _Leaves(nursery, expected), logger.level
    logger.addHandler(leaves)
    logger.setLevel(logging.INFO)
    try:
        yield leaves
    finally:
        logger.removeHandler(leaves)
        logger.setLevel(level)


async def test_two_hundred_members_that_close_at_once_end_a_few_a_batch() -> None:
    """A burst of sessions ending (here, peers that close together) is spread over
    scheduler batches, SESSIONS_PER_BATCH or so a batch, so that the rest of the server
    runs between (without it: 200 in two batches); all of them end."""
    with trio.fail_after(GUARD):
        async with chat_servers(ChatServer(rate=None, resume_window=0)) as (tcp, _, nursery):
            members = []
            for _ in range(200):
                member = await LineSocket.connect(tcp.port)
                await member.read_until(b"welcome")
                members.append(member)
            with _logged_leaves(nursery, 200) as leaves:
                for member in members:  # all at once: no checkpoint between
                    member.close()
                await leaves.all_left.wait()
    leaves.check()


async def test_two_hundred_udp_peers_that_expire_together_end_a_few_a_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """UDP peers silent since the same moment expire at the same moment: their idle timers
    fall due together, and their ends are spread like the closes above."""
    with trio.fail_after(GUARD):
        chat = ChatServer(rate=None, resume_window=0)  # expired peers leave at once
        async with chat_servers(chat, peer_idle_timeout=10) as (_, udp, nursery):
            socks = []
            for _ in range(200):
                sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
                await sock.connect(("127.0.0.1", udp.port))
                await validate_udp_socket(sock)
                socks.append(sock)
            with _logged_leaves(nursery, 200) as leaves:
                await leaves.all_left.wait()  # 10 s of virtual time on
            for sock in socks:
                sock.close()
    leaves.check()
