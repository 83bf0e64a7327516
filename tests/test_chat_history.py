"""Room history: ids per room, the bounds, the earlier lines a user is shown on joining
a room (over ``nc`` and WebSocket), ``/history N``, nothing missing or shown twice
between the earlier lines and the live ones."""

from __future__ import annotations

import json
import re
import time

import pytest
import trio
from websockets.trio.client import connect

from triosock._sansio import chat as proto
from triosock._sansio.history import RECORD_OVERHEAD, HistoryLog, Record
from triosock.chat import ChatServer, MemoryStore

from .chattools import Events, LineSocket, chat_servers, web_chat
from .clitools import cli_server, line_process, need
from .conftest import GUARD
from .test_chat_web import events, ws_url

STAMPED = re.compile(rb"\[\d\d:\d\d:\d\d\] (.*)")

# -- the log, sans-IO ------------------------------------------------------------------


def test_ids_count_up_per_key_from_one_and_never_go_back() -> None:
    log = HistoryLog(per_key=3)
    assert [log.add("room:#a", 0, b"a%d" % i).id for i in range(5)] == [1, 2, 3, 4, 5]
    assert log.add("room:#b", 0, b"b").id == 1  # each key its own
    page = log.last("room:#a", 10)
    assert [r.data for r in page.records] == [b"a2", b"a3", b"a4"]  # the last 3 kept
    assert (page.first, page.last, page.more) == (3, 5, False)
    assert log.last("room:#a", 2).more  # older ones are kept than those two
    log.forget("room:#a")
    assert log.add("room:#a", 0, b"x").id == 1  # forgotten: a new key (an inbox, ended)
    assert len(log) == 2


def test_no_history_still_gives_ids() -> None:
    log = HistoryLog(per_key=0)
    assert [log.add("k", 0, b"x").id for _ in range(3)] == [1, 2, 3]
    assert log.last("k", 5).records == ()
    assert (log.last("k", 5).last, len(log), log.bytes) == (3, 0, 0)


def test_the_bound_on_bytes_drops_the_oldest_lines_of_any_room_first() -> None:
    size = 100 + RECORD_OVERHEAD
    log = HistoryLog(per_key=1000, max_bytes=10 * size)
    for i in range(6):
        log.add("room:#old", i, b"o" * 100)
    for i in range(6):
        log.add("room:#new", 10 + i, b"n" * 100)
    # 12 lines of `size` bytes, room for 10: the two oldest of the whole log went
    assert log.bytes == 10 * size
    assert [r.id for r in log.last("room:#old", 100).records] == [3, 4, 5, 6]
    assert [r.id for r in log.last("room:#new", 100).records] == [1, 2, 3, 4, 5, 6]
    assert log.last("room:#old", 100).first == 3


def test_the_order_of_the_log_stays_bounded_when_the_count_drops_lines() -> None:
    log = HistoryLog(per_key=2)
    for i in range(50_000):
        log.add("room:#a", i, b"x")
    assert len(log) == 2
    assert len(log._order) <= 2 * 2 + 1024 + 1


def test_after_and_before_read_around_an_id() -> None:
    log = HistoryLog(per_key=5)
    for i in range(1, 9):
        log.add("k", i, b"%d" % i)
    # kept: 4..8
    assert [r.id for r in log.after("k", 5, 10).records] == [6, 7, 8]
    assert [r.id for r in log.after("k", 1, 2).records] == [4, 5]  # a gap: first is 4
    assert log.after("k", 1, 2).first == 4
    assert log.after("k", 8, 10).records == ()
    assert log.after("k", 99, 10).records == ()  # an id from the future: nothing
    assert [r.id for r in log.before("k", 7, 2).records] == [5, 6]
    assert [r.id for r in log.before("k", 5, 10).records] == [4]
    assert log.before("k", 4, 10).records == ()
    assert log.after("nothing", 0, 5).last == 0


def test_epochs_differ_between_logs() -> None:
    assert HistoryLog().epoch != HistoryLog().epoch
    assert HistoryLog(epoch="e").epoch == "e"


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="0 or more"):
        HistoryLog(per_key=-1)
    with pytest.raises(ValueError, match="at least"):
        HistoryLog(max_bytes=10)
    with pytest.raises(ValueError, match="history_on_join"):
        ChatServer(history_on_join=-1)


# -- the recall, sans-IO ---------------------------------------------------------------

DAY = 86_400_000
NOON = 1_796_645_823_000  # 2026-12-07 ... UTC


def _said(i: int, at: int) -> Record:
    event = proto.Message("#lobby", "alice", f"line {i}", i, at)
    return Record(i, at, proto.encode_event(event))


def test_recalled_lines_show_their_time_and_the_day_changes() -> None:
    records = [_said(1, NOON), _said(2, NOON + 1000), _said(3, NOON + DAY)]
    shown = [proto.render_line(e) for e in proto.recall("#lobby", records, more=True)]
    first, second = proto.day(NOON), proto.day(NOON + DAY)
    assert shown == [
        f"-!- #lobby: 3 earlier lines (times UTC, {first})".encode(),
        f"[{proto.clock(NOON)}] [#lobby] alice: line 1".encode(),
        f"[{proto.clock(NOON + 1000)}] [#lobby] alice: line 2".encode(),
        f"-!- day changed to {second}".encode(),
        f"[{proto.clock(NOON + DAY)}] [#lobby] alice: line 3".encode(),
        b"-!- end of earlier lines of #lobby; /history N shows more",
    ]
    assert proto.clock(0) == "00:00:00"
    assert proto.day(0) == "1970-01-01"
    assert proto.recall("#lobby", [], more=False) == []
    # what is not a line said is left out
    junk = [Record(1, 0, b"nonsense"), Record(2, 0, proto.encode_event(proto.Notice("x")))]
    assert proto.recall("#lobby", junk, more=False) == []


def test_recalled_lines_as_json_carry_the_history_flag() -> None:
    shown = proto.recall("#lobby", [_said(4, NOON)], more=False)
    lines = [json.loads(proto.render_json(e)) for e in shown]
    assert lines == [
        {"count": 1, "room": "#lobby", "type": "history"},
        {
            "history": True,
            "id": 4,
            "room": "#lobby",
            "sender": "alice",
            "text": "line 4",
            "time": NOON,
            "type": "message",
        },
        {"more": False, "room": "#lobby", "type": "history_end"},
    ]
    assert proto.render_json(proto.DayChanged("2026-12-08")) == b""


USAGE = proto.Invalid("usage: /history [N], N a number of lines from 1 to 200")


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"/history", proto.History(20)),
        (b"/history 5", proto.History(5)),
        (b"/HISTORY 200", proto.History(200)),
        (b"/history 201", proto.History(200, capped=True)),
        (b"/history 99999999999", proto.History(200, capped=True)),
        (b"/history 0", proto.Invalid("usage: /history [N], N a number of lines from 1 to 200")),
        (b"/history -3", proto.Invalid("usage: /history [N], N a number of lines from 1 to 200")),
        (b"/history x", proto.Invalid("usage: /history [N], N a number of lines from 1 to 200")),
        (
            b"/history \xd9\xa3",
            proto.Invalid("usage: /history [N], N a number of lines from 1 to 200"),
        ),
        (
            b"/history 1" + b"0" * 40,
            proto.Invalid("usage: /history [N], N a number of lines from 1 to 200"),
        ),
    ],
)
def test_history_command(line: bytes, command: proto.Command) -> None:
    assert proto.parse_line_untrusted(line) == command


# -- over real sockets -----------------------------------------------------------------


async def test_nc_joiner_sees_the_last_lines_as_history_then_live_lines() -> None:
    nc = need("nc")
    chat = ChatServer(history_on_join=3)
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            alice = await LineSocket.connect(tcp.port)
            await alice.send(b"/nick alice\n")
            await alice.read_until(b"is now known as alice")
            before = time.time()
            await alice.send(b"".join(b"line %d\n" % i for i in range(1, 6)) + b"/me waves\n")
            await alice.read_until(b"* alice waves")
            async with line_process([nc, "127.0.0.1", str(tcp.port)]) as bob:
                await bob.expect(b"welcome")
                await bob.expect(b"your resume token")
                header = await bob.readline()
                recalled = [await bob.readline() for _ in range(3)]
                end = await bob.readline()
                await alice.send(b"line 6\n")
                joined = await bob.readline()
                live = await bob.readline()
            alice.close()
            after = time.time()
    today = time.strftime("%Y-%m-%d", time.gmtime(before)).encode()
    assert header == b"-!- #lobby: 3 earlier lines (times UTC, " + today + b")"
    bodies = []
    for line in recalled:
        assert line is not None
        match = STAMPED.fullmatch(line)
        assert match is not None, line
        stamp = time.strptime(today.decode() + line[1:9].decode(), "%Y-%m-%d%H:%M:%S")
        assert before - 1 <= time.mktime(stamp) - time.timezone <= after + 1
        bodies.append(match[1])
    assert bodies == [
        b"[#lobby] alice: line 4",
        b"[#lobby] alice: line 5",
        b"[#lobby] * alice waves",
    ]
    assert end == b"-!- end of earlier lines of #lobby; /history N shows more"
    assert joined is not None
    assert joined.endswith(b" joined #lobby")
    assert live == b"[#lobby] alice: line 6"


async def test_an_empty_room_shows_no_history_and_history_on_join_0_shows_none() -> None:
    for chat, says in ((ChatServer(), False), (ChatServer(history_on_join=0), True)):
        with trio.fail_after(GUARD):
            async with chat_servers(chat) as (tcp, _, _):
                if says:
                    alice = await LineSocket.connect(tcp.port)
                    await alice.send(b"hello\n")
                    await alice.read_until(b"hello")
                bob = await LineSocket.connect(tcp.port)
                assert (await bob.next_line()).startswith(b"-!- welcome")
                assert (await bob.next_line()).startswith(b"-!- your resume token: ")
                assert (await bob.next_line()).endswith(b"joined #lobby")
                bob.close()
                if says:
                    alice.close()


async def test_history_command_over_tcp_and_the_history_bound() -> None:
    chat = ChatServer(history=30, history_on_join=0, rate=None)
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            alice = await LineSocket.connect(tcp.port)
            await alice.send(b"/history\n")
            assert await alice.read_until(b"-!- nothing") == b"-!- nothing was said in #lobby yet"
            await alice.send(b"".join(b"n%d\n" % i for i in range(1, 41)))
            await alice.read_until(b": n40")
            await alice.send(b"/history 5\n")
            await alice.read_until(b"5 earlier lines")
            lines = [await alice.next_line() for _ in range(6)]
            assert [STAMPED.fullmatch(x)[1] for x in lines[:5]] == [  # type: ignore[index]
                b"[#lobby] guest1: n%d" % i for i in range(36, 41)
            ]
            assert lines[5] == b"-!- end of earlier lines of #lobby; /history N shows more"
            await alice.send(b"/history 500\n")
            assert await alice.next_line() == b"-!- /history shows at most 200 lines at a time"
            # 40 said, 30 kept: the 30 newest, and no "more"
            assert (await alice.next_line()).startswith(b"-!- #lobby: 30 earlier lines")
            lines = [await alice.next_line() for _ in range(31)]
            assert STAMPED.fullmatch(lines[0])[1] == b"[#lobby] guest1: n11"  # type: ignore[index]
            assert lines[30] == b"-!- end of earlier lines of #lobby"
            await alice.send(b"/history -1\n")
            assert await alice.next_line() == (
                b"-!- usage: /history [N], N a number of lines from 1 to 200"
            )
            alice.close()
    off = ChatServer(history=0)
    with trio.fail_after(GUARD):
        async with chat_servers(off) as (tcp, _, _):
            alice = await LineSocket.connect(tcp.port)
            await alice.send(b"said\n/history\n")
            assert await alice.read_until(b"history") == (
                b"-!- this server keeps no history (--history 0)"
            )
            alice.close()


async def test_a_room_change_shows_the_new_rooms_history() -> None:
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            alice = await LineSocket.connect(tcp.port)
            await alice.send(b"/join #dev\nin dev\n/join #lobby\n")
            await alice.read_until(b"[#dev] guest1: in dev")
            await alice.read_until(b"* guest1 joined #lobby")
            bob = await LineSocket.connect(tcp.port)
            await bob.read_until(b"joined #lobby")
            await bob.send(b"/join #dev\n")
            assert await bob.next_line() == b"-!- #dev: 1 earlier line (times UTC, %s)" % (
                time.strftime("%Y-%m-%d", time.gmtime()).encode()
            )
            assert STAMPED.fullmatch(await bob.next_line())[1] == b"[#dev] guest1: in dev"  # type: ignore[index]
            assert await bob.next_line() == b"-!- end of earlier lines of #dev"
            assert await bob.next_line() == b"* guest2 joined #dev"
            alice.close()
            bob.close()


@pytest.mark.parametrize("buffer", [256, 4])
async def test_websocket_joiners_get_ids_with_nothing_missing_or_twice_under_load(
    buffer: int,
) -> None:
    """A talker says lines without a pause while 30 WebSocket clients join one after
    another: each sees the earlier lines (flagged) and then the live ones, and the ids
    of what it sees count up by one, from the first it was shown to the last. With a
    small buffer the room's subscription of a joiner fills while it is held (the talker
    waits for it): the joiner must be fed before it says it joined, or the room stops."""
    chat = ChatServer(rate=None, history_on_join=5, buffer=buffer)
    said = 3000
    with trio.fail_after(GUARD):
        async with web_chat(chat) as (tcp, _, web):
            talker = await LineSocket.connect(tcp)
            results: list[list[tuple[int, bool]]] = []

            async def joiner() -> None:
                async with connect(ws_url(web)) as ws:
                    seen: list[tuple[int, bool]] = []
                    while not seen or seen[-1][0] < said:
                        for event in await events(ws):
                            if event["type"] == "message":
                                seen.append((int(event["id"]), bool(event.get("history"))))
                    results.append(seen)

            async with trio.open_nursery() as nursery:

                async def talk() -> None:
                    for i in range(1, said + 1):
                        await talker.send(b"t%d\n" % i)
                        if i % 100 == 0:
                            await trio.sleep(0.001)

                nursery.start_soon(talk)
                for _ in range(30):
                    await nursery.start(_started, joiner)
            talker.close()
    assert len(results) == 30
    flagged_somewhere = 0
    for seen in results:
        ids = [i for i, _ in seen]
        assert ids == list(range(ids[0], said + 1)), ids[:20]
        flags = [h for _, h in seen]
        assert flags == sorted(flags, reverse=True)  # the history first, then live
        flagged_somewhere += any(flags)
    assert flagged_somewhere >= 25  # most joined after lines had been said


async def _started(fn, task_status=trio.TASK_STATUS_IGNORED) -> None:  # type: ignore[no-untyped-def]
    task_status.started()
    await fn()


async def test_the_websocket_history_events() -> None:
    chat = ChatServer()
    with trio.fail_after(GUARD):
        async with web_chat(chat) as (tcp, _, web):
            alice = await LineSocket.connect(tcp)
            await alice.send(b"/nick alice\nhi all\n/msg alice to me\n")
            await alice.read_until(b"[dm from alice]")
            async with connect(ws_url(web)) as ws:
                reader = Events(ws)
                start = await reader.next(type="history")
                assert start == {"count": 1, "room": "#lobby", "type": "history"}
                said = await reader.next(type="message")
                at = said.pop("time")
                assert isinstance(at, int)
                assert abs(at / 1000 - time.time()) < 60
                assert said == {
                    "history": True,
                    "id": 1,
                    "room": "#lobby",
                    "sender": "alice",
                    "text": "hi all",
                    "type": "message",
                }
                end = await reader.next(type="history_end")
                assert end == {"more": False, "room": "#lobby", "type": "history_end"}
                await alice.send(b"live\n")
                live = await reader.next(type="message")
                assert live["id"] == 2
                assert "history" not in live
            alice.close()


async def test_the_cli_history_options() -> None:
    with trio.fail_after(GUARD):
        async with cli_server(
            [
                "chat",
                "serve",
                "--tcp",
                "127.0.0.1:0",
                "--udp",
                "none",
                "--web",
                "none",
                "--history",
                "2",
                "--history-on-join",
                "5",
            ]
        ) as server:
            port = server.port("chat (tcp)")
            alice = await LineSocket.connect(port)
            await alice.send(b"a\nb\nc\n")
            await alice.read_until(b": c")
            bob = await LineSocket.connect(port)
            await bob.read_until(b"2 earlier lines")
            assert STAMPED.fullmatch(await bob.next_line())[1] == b"[#lobby] guest1: b"  # type: ignore[index]
            alice.close()
            bob.close()


def test_memory_store_is_the_default() -> None:
    chat = ChatServer(history=7)
    assert isinstance(chat.store, MemoryStore)
    assert chat.store.per_key == 7


def test_keys_past_the_most_go_and_their_ids_are_never_given_again() -> None:
    log = HistoryLog(per_key=10, max_keys=3)
    for room in ("a", "b", "c"):
        for _ in range(5):
            log.add(room, 0, b"x")
    log.add("a", 0, b"x")  # a is the most recent now; b the oldest
    assert log.add("d", 0, b"x").id == 1  # no key evicted yet when d was made...
    assert log.keys() == ["c", "a", "d"]  # ...then b went (written longest ago)
    assert log.last("b", 10).records == ()
    assert len(log) == 5 + 6 + 1
    # b comes back: above every id an evicted key gave (b's 5), never 1 again
    assert log.add("b", 0, b"x").id == 6
    assert log.keys() == ["a", "d", "b"]  # c went
    assert log.next_id("c") == 6  # c had given 5: the floor is 5 still
    with pytest.raises(ValueError, match="at least 1 key"):
        HistoryLog(max_keys=0)


async def test_a_history_asked_for_faster_than_it_is_read_hits_the_backlog_rule() -> None:
    chat = ChatServer(rate=None, max_backlog=64 * 1024, resume_window=0)
    with trio.fail_after(GUARD):
        async with chat_servers(chat) as (tcp, _, _):
            talker = await LineSocket.connect(tcp.port)
            long_line = b"y" * 1000
            await talker.send(b"".join(b"%d %s\n" % (i, long_line) for i in range(200)))
            await talker.read_until(b"199 y")
            # 200 lines of ~1,035 bytes as an nc user gets them: /history shows the 31
            # that fit in half the backlog (32 KiB)
            await talker.send(b"/history 200\n")
            told = await talker.read_until(b"/history shows the")
            assert told == (
                b"-!- /history shows the 31 newest of those 200 lines: the rest would be "
                b"more than 32768 bytes at once"
            )
            # a client that asks again and again and never reads is disconnected
            sleeper = await LineSocket.connect(tcp.port, rcvbuf=4096)
            await sleeper.send(b"/history 200\n" * 100)
            left = await talker.read_until(b"guest2 left")
            assert left == b"* guest2 left #lobby"
            assert chat.statistics().disconnected_slow == 1
            talker.close()
            sleeper.close()
