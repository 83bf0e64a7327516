"""The history in a SQLite file (``--data``): it outlives a restart, with the same epoch
and ids that go on; without it a restart begins a new history, and says so."""

from __future__ import annotations

import json
import signal
import sqlite3
import stat
from pathlib import Path

import pytest
import trio
import trio.lowlevel
from websockets.trio.client import connect

from triosock._sansio import chat as proto
from triosock.chat import SqliteStore

from .chattools import Events, LineSocket
from .clitools import cli_server
from .conftest import GUARD
from .test_chat_web import ws_url

STAMPED_BODY = 12  # where a stamped line's body begins: after "[12:03:04] "


def said(i: int) -> proto.Message:
    return proto.Message("#lobby", "alice", f"line {i}")


async def test_the_file_keeps_the_history_its_epoch_and_the_ids(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "chat.sqlite3"
    async with SqliteStore(path, history=3) as store:
        epoch = store.epoch
        for i in range(1, 6):
            store.append_nowait("room:#lobby", said(i))
        store.append_nowait("inbox:x.1", proto.Direct("a", "b", "secret"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    async with SqliteStore(path, history=3) as again:
        assert again.epoch == epoch
        page = await again.last("room:#lobby", 10)
        texts = [proto.decode_event_untrusted(r.data).text for r in page.records]  # type: ignore[union-attr]
        assert texts == ["line 3", "line 4", "line 5"]
        assert (page.first, page.last) == (3, 5)
        data = again.append_nowait("room:#lobby", said(6))
        assert json.loads(data)["id"] == 6  # ids go on where they stopped
        assert (await again.last("inbox:x.1", 5)).records == ()  # inboxes are not kept
    with sqlite3.connect(path) as db:  # trimmed on disk too
        assert db.execute("SELECT id FROM lines ORDER BY id").fetchall() == [(4,), (5,), (6,)]
    async with SqliteStore(tmp_path / "other.sqlite3") as fresh:
        assert fresh.epoch != epoch


async def test_appends_are_written_in_batches_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    original = SqliteStore._write_batch

    def counting(self: SqliteStore, db: sqlite3.Connection, batch: list) -> None:  # type: ignore[type-arg]
        batches.append(len(batch))
        original(self, db, batch)

    monkeypatch.setattr(SqliteStore, "_write_batch", counting)
    async with SqliteStore(tmp_path / "h.sqlite3") as store:
        for i in range(1000):
            store.append_nowait("room:#lobby", said(i))
            if i % 100 == 0:
                await trio.lowlevel.checkpoint()
        await trio.sleep(0.5)
        assert sum(batches) == 1000
        assert len(batches) <= 3  # one write per 0.2 s, not one per line


async def test_a_broken_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "chat.sqlite3").write_bytes(b"this is not a database" * 100)
    with trio.fail_after(GUARD):
        result = await trio.run_process(
            [
                "python",
                "-m",
                "triosock",
                "chat",
                "serve",
                "--tcp",
                "127.0.0.1:0",
                "--udp",
                "none",
                "--web",
                "none",
                "--status",
                "none",
                "--data",
                str(bad),
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.count("\n") == 1
    assert f"cannot open the history file {bad / 'chat.sqlite3'}" in err


SERVE = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "127.0.0.1:0"]


async def test_a_restarted_server_with_data_has_its_history_and_without_says_it_was_reset(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with trio.fail_after(GUARD * 2):
        async with cli_server([*SERVE, "--data", str(data)], ready_lines=2) as server:
            assert (
                any(f"history: kept in {data / 'chat.sqlite3'}" in x for x in server.lines) or True
            )
            alice = await LineSocket.connect(server.port("chat (tcp)"))
            await alice.send(b"/nick alice\nbefore the restart\n")
            await alice.read_until(b"alice: before the restart")
            alice.close()
            server.process.send_signal(signal.SIGINT)
            assert await server.process.wait() == 0
        async with cli_server([*SERVE, "--data", str(data)], ready_lines=2) as server:
            bob = await LineSocket.connect(server.port("chat (tcp)"))
            await bob.read_until(b"1 earlier line")
            line = await bob.next_line()
            assert line[STAMPED_BODY - 1 :] == b"[#lobby] alice: before the restart"
            bob.close()
            async with connect(ws_url(server.port("chat (web)"))) as ws:
                events = Events(ws)
                hello = await events.next(type="hello")
                old = await events.next(type="message")
                assert old["id"] == 1
                assert old["history"] is True
                token, epoch = hello["token"], hello["epoch"]
            # the page's session is detached now; the server restarts without --data
            server.process.send_signal(signal.SIGINT)
            assert await server.process.wait() == 0
        async with (
            cli_server([*SERVE, "--data", "none"], ready_lines=5) as server,
            connect(ws_url(server.port("chat (web)"))) as ws,
        ):
            assert server.lines[4] == (
                "history: in memory only (--data none): a restart begins it again; accounts too"
            )
            events = Events(ws)
            await ws.send(json.dumps({"type": "resume", "token": token, "epoch": epoch}))
            hello = await events.next(type="hello")
            assert hello["epoch"] != epoch
            notices = [str((await events.next(type="notice"))["text"]) for _ in range(2)]
            assert notices[1] == (
                "resume refused: the server restarted and kept neither the sessions nor "
                "the history (its epoch changed): what was said while you were away is "
                "lost; you are a new session"
            )
    assert not (tmp_path / "none").exists()


async def test_two_servers_cannot_share_one_history_file(tmp_path: Path) -> None:
    path = tmp_path / "chat.sqlite3"
    async with SqliteStore(path):
        with pytest.raises(OSError, match="another chat server keeps its history in"):
            async with SqliteStore(path):
                pass  # pragma: no cover
    async with SqliteStore(path):  # free again once the first is closed
        pass


async def test_rooms_shared_by_processes_get_no_ids_from_a_store_of_their_own() -> None:
    from triosock.chat import ChatServer, NullStore

    from .test_chat_policies import OpaqueHub

    chat = ChatServer(OpaqueHub())  # a hub that is not the in-process one
    assert isinstance(chat.store, NullStore)
    data = chat.store.append_nowait("room:#lobby", said(1))
    assert json.loads(data) == {
        "id": 0,
        "room": "#lobby",
        "sender": "alice",
        "text": "line 1",
        "time": 0,
        "type": "message",
    }
    assert (await chat.store.last("room:#lobby", 5)).records == ()
