"""Room operators: the commands' syntax, who may do what (the ranks), the rooms' records
in every store, and the chat over real sockets: a founder claims a room, sets its
topic, names operators; kicks and bans hold over TCP, UDP and WebSocket; mutes and the
moderated mode refuse lines; a server operator disconnects a user.

The chat tests run on virtual time whose jumps wait for a second of real idleness: the
password hashing runs in worker threads (see ``test_accounts``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing
from websockets.trio.client import connect

from triosock._accounts import Accounts, Hasher, MemoryAccounts, SqliteAccounts
from triosock._sansio import chat as proto
from triosock._sansio import rooms as rules
from triosock._sansio.rooms import RoomRecord
from triosock.chat import ChatServer

from .chattools import Events, LineSocket, detached, socat_join, validate_udp_socket, web_chat
from .clitools import PYTHON, cli_server, line_process, need, run
from .test_accounts import FAST, PLAIN, patient_clock
from .test_chat_resume import TOKEN, token_of
from .test_chat_web import ws_url

__all__ = ["patient_clock"]  # a fixture, used by name

# -- the commands and the rules --------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"/claim", proto.Moderate("claim")),
        (b"/claim #dev", proto.Moderate("claim", "#dev")),
        (b"/op bob", proto.Moderate("op", "bob")),
        (b"/kick bob flooding the room", proto.Moderate("kick", "bob", "flooding the room")),
        (b"/ban bob", proto.Moderate("ban", "bob")),
        (b"/topic Release day: be kind", proto.Moderate("topic", "", "Release day: be kind")),
        (b"/topic", proto.Moderate("topic")),
        (b"/mode +m", proto.Moderate("mode", "+m")),
        (b"/bans", proto.Moderate("bans")),
        (b"/unban 127.0.0.5", proto.Moderate("unban", "127.0.0.5")),
        (b"/kill bob spam", proto.Moderate("kill", "bob", "spam")),
    ],
)
def test_the_operators_commands_parse(line: bytes, command: proto.Command) -> None:
    assert proto.parse_line_untrusted(line) == command


@pytest.mark.parametrize(
    ("line", "usage"),
    [
        (b"/op", "usage: /op NICK"),
        (b"/op bob extra", "usage: /op NICK"),
        (b"/kick", "usage: /kick NICK [REASON]"),
        (b"/kill bob", "usage: /kill NICK REASON"),
        (b"/bans please", "usage: /bans"),
        (b"/claim #a #b", "usage: /claim [ROOM]"),
    ],
)
def test_an_operators_command_without_its_words_gets_its_usage(line: bytes, usage: str) -> None:
    assert proto.parse_line_untrusted(line) == proto.Invalid(usage)


def test_the_session_checks_the_words_before_asking_the_service() -> None:
    core = proto.ChatSession(proto.Presence("s.1", "alice", "#dev", "tcp"))
    assert core.receive_line(b"/kick alice", 0) == [proto.Tell("/kick is for others, not yourself")]
    assert core.receive_line(b"/mode +x", 0) == [
        proto.Tell("usage: /mode [+m|-m]: +m lets only operators speak")
    ]
    assert core.receive_line(b"/topic " + b"x" * 301, 0) == [
        proto.Tell("a topic may be at most 300 characters, not 301")
    ]
    assert core.receive_line(b"/claim Ops", 0) == [proto.Act("#ops", "claim")]
    assert core.receive_line(b"/kick bob too loud", 0) == [
        proto.Act("#dev", "kick", "bob", "too loud")
    ]
    core.silenced = "you are muted in #dev: your lines to it are not said"
    assert core.receive_line(b"hello", 0) == [proto.Tell(core.silenced)]
    assert core.receive_line(b"/me waves", 0) == [proto.Tell(core.silenced)]
    assert core.receive_line(b"/msg bob hi", 0) == [proto.Lookup("bob", "hi")]  # still goes


def test_ranks_say_who_may_act_on_whom() -> None:
    record = RoomRecord("#dev", founder="alice", operators=frozenset({"carol"}))
    opers = frozenset({"root"})
    ranks = {who: rules.rank(record, who, opers) for who in ("alice", "carol", "dave", "root")}
    assert ranks == {"alice": 2, "carol": 1, "dave": 0, "root": 3}
    assert rules.rank(record, None, opers) == rules.MEMBER  # a guest
    assert rules.may_act_on(ranks["carol"], ranks["dave"])
    assert not rules.may_act_on(ranks["carol"], ranks["alice"])  # an operator, the founder
    assert not rules.may_act_on(ranks["carol"], ranks["carol"])
    assert rules.may_act_on(ranks["root"], ranks["alice"])
    assert not rules.may_act_on(ranks["dave"], rules.MEMBER)


def test_bans_and_mutes_match_by_account_or_address_and_spare_operators() -> None:
    record = RoomRecord("#dev", bans=(("address:127.0.0.5", "mallory"), ("account:eve", "eve")))
    guest = rules.entries_of(None, "127.0.0.5")
    assert rules.banned(record, guest, rules.MEMBER)
    assert rules.banned(record, rules.entries_of("eve", "127.0.0.9"), rules.MEMBER)
    assert not rules.banned(record, rules.entries_of(None, "127.0.0.6"), rules.MEMBER)
    assert not rules.banned(record, guest, rules.OPERATOR)  # never locked out of their room
    assert rules.entry_for("eve", "127.0.0.9") == "account:eve"
    assert rules.entry_for(None, "127.0.0.9") == "address:127.0.0.9"
    unbanned, gone = record.without("bans", "MALLORY")
    assert gone == ["mallory"]
    assert unbanned.bans == (("account:eve", "eve"),)
    assert record.without("bans", "127.0.0.5")[1] == ["mallory"]  # by address too
    moderated = RoomRecord("#dev", moderated=True)
    assert rules.silenced(moderated, guest, rules.MEMBER) == (
        "#dev is moderated (+m): only its operators speak"
    )
    assert rules.silenced(moderated, guest, rules.OPERATOR) is None


def test_a_list_of_bans_is_bounded() -> None:
    record: RoomRecord | None = RoomRecord("#dev")
    for n in range(rules.MAX_ENTRIES):
        assert record is not None
        record = record.with_entry("bans", f"address:10.0.{n // 256}.{n % 256}", f"g{n}")
    assert record is not None
    assert len(record.bans) == rules.MAX_ENTRIES
    assert record.with_entry("bans", "address:10.9.9.9", "one-more") is None
    # the same entry again replaces its label: no room needed
    assert record.with_entry("bans", "address:10.0.0.0", "again") is not None


def test_a_record_round_trips_and_junk_is_refused() -> None:
    record = RoomRecord(
        "#dev", "alice", frozenset({"carol"}), (("address:::1", "bob"),), (), "hi", "alice", True
    )
    assert rules.decode_record_untrusted(rules.encode_record(record)) == record
    for junk in (b"", b"[]", b'{"room": 1}', b"\xff", json.dumps({"room": "#a"}).encode()):
        with pytest.raises(ValueError, match="room record"):
            rules.decode_record_untrusted(junk)


def test_every_action_is_a_line_of_its_own() -> None:
    lines = {
        ("kick", "bob", "flooding"): b"* alice kicked bob (flooding)",
        ("ban", "bob", ""): b"* alice banned bob",
        ("op", "carol", ""): b"* alice made carol an operator of #dev",
        ("topic", "", "be kind"): b"* alice set the topic of #dev: be kind",
        ("topic", "", ""): b"* alice cleared the topic of #dev",
        ("mode", "+m", ""): b"* alice set #dev +m (only operators speak)",
        ("claim", "", ""): b"* alice claimed #dev: its founder",
    }
    for (action, target, text), line in lines.items():
        event = proto.Moderation("#dev", "alice", action, target, text)
        assert proto.render_line(event) == line
        assert proto.decode_event_untrusted(proto.encode_event(event)) == event


# -- the records in each store ---------------------------------------------------------


async def _exercise_rooms(accounts: Accounts) -> None:
    assert await accounts.get_room("#dev") == (None, 0)
    assert await accounts.put_room("#dev", b"one", 0)
    assert not await accounts.put_room("#dev", b"two", 0)  # another change came first
    assert await accounts.get_room("#dev") == (b"one", 1)
    assert await accounts.put_room("#dev", b"two", 1)
    assert await accounts.get_room("#dev") == (b"two", 2)
    assert await accounts.get_room("#other") == (None, 0)


async def test_room_records_in_memory() -> None:
    await _exercise_rooms(MemoryAccounts())


async def test_room_records_in_the_sqlite_file_survive_a_reopen(tmp_path: Path) -> None:
    async with SqliteAccounts(tmp_path / "chat.sqlite3") as accounts:
        await _exercise_rooms(accounts)
    async with SqliteAccounts(tmp_path / "chat.sqlite3") as accounts:
        assert await accounts.get_room("#dev") == (b"two", 2)


# -- over real sockets ----------------------------------------------------------------


async def logged_in(port: int, nick: bytes, source: str = "127.0.0.1") -> LineSocket:
    """A TCP user from ``source`` who registered ``nick`` and is logged in to it."""
    user = await LineSocket.connect(port, source=source)
    await user.read_until(b"welcome to triosock chat")
    await user.send(b"/nick " + nick + b"\n/register " + PLAIN.encode() + b"\n")
    await user.read_until(b"is yours")
    return user


async def founder(port: int, room: bytes, nick: bytes = b"alice") -> LineSocket:
    """A registered user who went to ``room`` and claimed it."""
    user = await logged_in(port, nick)
    if room != b"#lobby":
        await user.send(b"/join " + room + b"\n")
    await user.send(b"/claim\n")
    await user.read_until(b"claimed " + room)
    return user


async def guest(port: int, nick: bytes, source: str = "127.0.0.1") -> LineSocket:
    user = await LineSocket.connect(port, source=source)
    await user.read_until(b"welcome to triosock chat")
    await user.send(b"/nick " + nick + b"\n")
    await user.read_until(b"is now known as " + nick)
    return user


async def test_a_founder_claims_a_room_sets_its_topic_and_names_operators(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with web_chat(chat) as (tcp, _, _):
            alice = await logged_in(tcp, b"alice")
            carol = await logged_in(tcp, b"carol")
            bob = await guest(tcp, b"bob")
            await alice.send(b"/join #dev\n/topic nothing yet\n")
            assert await alice.read_until(b"topic") == (
                b"-!- only operators of #dev may /topic (see /help)"
            )
            await bob.send(b"/claim #dev\n")
            assert await bob.read_until(b"claim") == (
                b"-!- only registered users may claim a room; log in first "
                b"(/login NICK PASSWORD): rooms know their operators by account"
            )
            await alice.send(b"/claim\n/topic Release day: be kind\n")
            assert await alice.read_until(b"claimed") == b"* alice claimed #dev: its founder"
            assert await alice.read_until(b"set the topic") == (
                b"* alice set the topic of #dev: Release day: be kind"
            )
            await carol.send(b"/claim #dev\n")
            assert await carol.read_until(b"claimed") == b"-!- #dev is claimed already"
            # whoever joins is shown the topic, and /rooms lists it
            await bob.send(b"/join #dev\n/rooms\n")
            assert await bob.read_until(b"topic of") == (
                b"-!- topic of #dev: Release day: be kind (set by alice)"
            )
            assert b"#dev (2): Release day: be kind" in await bob.read_until(b"rooms:")
            # operators are accounts, named by the founder only
            await alice.send(b"/op bob\n")
            assert await alice.read_until(b"registered") == (
                b"-!- bob is not registered: operators are accounts"
            )
            await alice.send(b"/op carol\n")
            assert await bob.read_until(b"operator") == b"* alice made carol an operator of #dev"
            await carol.send(b"/join #dev\n/deop alice\n/kick alice\n")
            assert await carol.read_until(b"names its") == (
                b"-!- only the founder of #dev names its operators"
            )
            assert await carol.read_until(b"outrank") == (
                b"-!- you cannot /kick alice: they outrank you in #dev"
            )
            await alice.send(b"/deop alice\n")
            assert await alice.read_until(b"founder of") == (
                b"-!- alice is the founder of #dev: always its operator"
            )
            for user in (alice, bob, carol):
                user.close()


async def test_a_kicked_and_banned_user_cannot_come_back_over_any_transport(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with web_chat(chat) as (tcp, udp, web):
            alice = await founder(tcp, b"#lobby")
            mallory = await guest(tcp, b"mallory", source="127.0.0.5")
            bystander = await guest(tcp, b"bystander", source="127.0.0.6")
            # a kick from a room other than the lobby sends the user to the lobby
            await alice.send(b"/join #dev\n/claim\n")
            await alice.read_until(b"claimed #dev")
            await mallory.send(b"/join #dev\n")
            await alice.read_until(b"mallory joined #dev")
            await alice.send(b"/kick mallory flooding\n")
            assert await alice.read_until(b"kicked") == b"* alice kicked mallory (flooding)"
            assert await mallory.read_until(b"kicked you") == (
                b"-!- alice kicked you from #dev (flooding)"
            )
            assert await mallory.read_until(b"joined") == b"* mallory joined #lobby"
            # a non-operator cannot
            await bystander.send(b"/ban mallory\n")
            assert await bystander.read_until(b"operators") == (
                b"-!- only operators of #lobby may /ban (see /help); log in first "
                b"(/login NICK PASSWORD): rooms know their operators by account"
            )
            # banned from the lobby: out of the chat, and kept out by address
            await alice.send(b"/join #lobby\n/ban mallory flooding\n")
            assert await bystander.read_until(b"banned") == b"* alice banned mallory (flooding)"
            assert (await mallory.read_to_eof())[-1] == (
                b"-!- disconnected: banned from #lobby by alice (flooding)"
            )
            mallory.close()
            again = await LineSocket.connect(tcp, source="127.0.0.5")
            assert (await again.read_to_eof()) == [b"-!- disconnected: you are banned from #lobby"]
            again.close()
            sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
            with sock:
                await sock.bind(("127.0.0.5", 0))
                await sock.connect(("127.0.0.1", udp))
                await validate_udp_socket(sock)
                assert await sock.recv(2048) == b"-!- disconnected: you are banned from #lobby\n"
            async with connect(ws_url(web), local_address="127.0.0.5") as ws:
                bye = json.loads(await ws.recv())
                assert bye == {"text": "disconnected: you are banned from #lobby", "type": "notice"}
            assert "mallory" not in await chat.users()
            await alice.send(b"/bans\n")
            assert await alice.read_until(b"bans of") == (
                b"-!- bans of #lobby: mallory (address:127.0.0.5)"
            )
            await alice.send(b"/unban mallory\n")
            assert await bystander.read_until(b"unbanned") == b"* alice unbanned mallory"
            back = await guest(tcp, b"mallory", source="127.0.0.5")
            back.close()
            alice.close()
            bystander.close()


async def test_a_muted_user_and_a_moderated_room_are_not_heard_but_told_why(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with web_chat(chat) as (tcp, _, _):
            alice = await founder(tcp, b"#dev")
            bob = await guest(tcp, b"bob", source="127.0.0.7")
            await bob.send(b"/join #dev\n")
            await alice.read_until(b"bob joined #dev")
            await alice.send(b"/mute bob\n")
            assert await bob.read_until(b"muted") == b"* alice muted bob"
            await bob.send(b"can you hear me\n/me shouts\n/msg alice psst\n")
            assert await bob.read_until(b"muted in") == (
                b"-!- you are muted in #dev: your lines to it are not said"
            )
            assert await bob.read_until(b"muted in") == (
                b"-!- you are muted in #dev: your lines to it are not said"
            )
            assert await alice.read_until(b"dm from") == b"[dm from bob] psst"  # still goes
            # a new nick, or another room and back, does not shake it off: it is by address
            await bob.send(b"/nick robert\n/join #elsewhere\n/join #dev\nstill me\n")
            assert await bob.read_until(b"muted in") == (
                b"-!- you are muted in #dev: your lines to it are not said"
            )
            await alice.send(b"/unmute bob\n")
            assert await alice.read_until(b"unmuted") == b"* alice unmuted bob"
            await bob.send(b"heard again\n")
            assert await alice.read_until(b"heard again") == b"[#dev] robert: heard again"
            # moderated: only operators speak
            await alice.send(b"/mode +m\n")
            assert await bob.read_until(b"+m") == b"* alice set #dev +m (only operators speak)"
            await bob.send(b"hello?\n")
            assert await bob.read_until(b"moderated") == (
                b"-!- #dev is moderated (+m): only its operators speak"
            )
            await alice.send(b"operators still speak\n/mode\n")
            assert await bob.read_until(b"operators still") == (
                b"[#dev] alice: operators still speak"
            )
            assert await alice.read_until(b"#dev is") == b"-!- #dev is +m (only operators speak)"
            await alice.send(b"/mode -m\n")
            await bob.read_until(b"-m (everyone speaks)")
            await bob.send(b"free again\n")
            assert await alice.read_until(b"free again") == b"[#dev] robert: free again"
            alice.close()
            bob.close()


async def test_a_server_operator_disconnects_a_user_and_acts_in_every_room(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST), opers=["Root"])
    with trio.fail_after(300):
        async with web_chat(chat) as (tcp, _, _):
            owner = await founder(tcp, b"#lobby", b"owner")
            root = await logged_in(tcp, b"root")
            spammer = await guest(tcp, b"spammer", source="127.0.0.8")
            await owner.send(b"/kill spammer spam\n")
            assert await owner.read_until(b"kill") == b"-!- only server operators may /kill"
            await root.send(b"/kill owner testing\n/topic set by the server\n")
            assert await root.read_until(b"topic") == (
                b"* root set the topic of #lobby: set by the server"
            )  # a server operator outranks the founder, and acts in every room
            assert (await owner.read_to_eof())[-1] == (
                b"-!- disconnected: disconnected by root (testing)"
            )
            await root.send(b"/kill spammer spam\n")
            assert await root.read_until(b"disconnected spammer") == (
                b"* root disconnected spammer (spam)"
            )
            assert (await spammer.read_to_eof())[-1] == (
                b"-!- disconnected: disconnected by root (spam)"
            )
            # a kill is no ban: the user may come back
            back = await guest(tcp, b"spammer", source="127.0.0.8")
            for user in (owner, root, spammer, back):
                user.close()


async def test_a_websocket_founder_acts_with_json_events_and_sees_them_as_events(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with web_chat(chat) as (tcp, _, web), connect(ws_url(web)) as ws:
            events = Events(ws)
            await events.next(type="hello")
            for event in (
                {"type": "nick", "nick": "alice"},
                {"type": "register", "password": PLAIN},
                {"type": "claim", "room": ""},
                {"type": "topic", "text": "json topics"},
                {"type": "mode", "mode": ""},
            ):
                await ws.send(json.dumps(event))
            claimed = await events.next(type="moderation", action="claim")
            assert claimed == {
                "action": "claim",
                "by": "alice",
                "room": "#lobby",
                "target": "",
                "text": "",
                "type": "moderation",
            }
            topic = await events.next(type="moderation", action="topic")
            assert topic["text"] == "json topics"
            assert (await events.next(type="notice"))["text"] == "#lobby is -m (everyone speaks)"
            bob = await guest(tcp, b"bob", source="127.0.0.9")
            await ws.send(json.dumps({"type": "kick", "nick": "bob", "reason": ""}))
            kicked = await events.next(type="moderation", action="kick")
            assert (kicked["target"], kicked["text"]) == ("bob", "")
            assert (await bob.read_to_eof())[-1] == b"-!- disconnected: kicked from #lobby by alice"
            bob.close()


async def test_a_detached_session_renamed_by_its_accounts_new_login_loses_the_rank(
    patient_clock: trio.testing.MockClock,
) -> None:
    """A login takes the nick from the account's session when it is detached (a running
    one would get one more connection instead): the detached session is a guest now,
    logged out, and resumed it has no operator's rank."""
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with web_chat(chat) as (tcp, _, _):
            laptop = await founder(tcp, b"#lobby")
            token = next(m[1] for line in laptop.lines if (m := TOKEN.search(line)))
            laptop.close()  # no /quit: detached
            await detached(chat, "alice")
            phone = await LineSocket.connect(tcp)
            await phone.send(b"/login alice " + PLAIN.encode() + b"\n")
            assert await phone.read_until(b"logged in") == b"-!- you are logged in as alice"
            back = await LineSocket.connect(tcp)
            await back.send(b"/resume " + token + b"\n")
            welcome = await back.read_until(b"welcome back")
            assert welcome.startswith(b"-!- welcome back, guest")
            await back.send(b"/topic mine\n")
            assert await back.read_until(b"topic") == (
                b"-!- only operators of #lobby may /topic (see /help); log in first "
                b"(/login NICK PASSWORD): rooms know their operators by account"
            )
            await phone.send(b"/topic theirs\n")
            await back.read_until(b"set the topic of #lobby: theirs")
            back.close()
            phone.close()


async def test_chat_serve_oper_makes_a_server_operator_and_refuses_a_bad_nick() -> None:
    args = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "none", "--web", "none"]
    args += ["--status", "none", "--data", "none", "--rate", "none", "--oper", "Root"]
    with trio.fail_after(60):
        async with cli_server(args, ready_lines=3) as server:
            port = server.port("chat (tcp)")
            victim = await guest(port, b"victim", source="127.0.0.12")
            root = await logged_in(port, b"root")
            await root.send(b"/kill victim testing the option\n")
            assert (await victim.read_to_eof())[-1] == (
                b"-!- disconnected: disconnected by root (testing the option)"
            )
            for user in (victim, root):
                user.close()
        bad = await run([PYTHON, "-m", "triosock", *args[:-1], "#root"])
    assert bad.returncode == 2
    assert (
        bad.stderr.decode()
        .splitlines()[-1]
        .startswith(
            "python -m triosock chat serve: error: argument --oper: nick '#root' contains '#'"
        )
    )


async def test_a_user_who_drops_their_connection_is_banned_all_the_same(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with web_chat(chat) as (tcp, _, _):
            alice = await founder(tcp, b"#lobby")
            mallory = await LineSocket.connect(tcp, source="127.0.0.5")
            token = await token_of(mallory)
            await mallory.send(b"/nick mallory\n")
            await alice.read_until(b"is now known as mallory")
            mallory.close()  # no /quit: detached, waiting for a resume
            await detached(chat, "mallory")
            await alice.send(b"/ban mallory evading\n")
            assert await alice.read_until(b"banned") == b"* alice banned mallory (evading)"
            assert await alice.read_until(b"mallory") == b"* mallory left #lobby"
            back = await LineSocket.connect(tcp, source="127.0.0.5")
            await back.send(b"/resume " + token + b"\n")
            assert (await back.read_to_eof())[-1] == b"-!- disconnected: you are banned from #lobby"
            back.close()
            alice.close()


async def test_a_founder_bans_a_flooding_nc_user_who_cannot_come_back_over_any_transport() -> None:
    """The issue's acceptance, with the clients people use: ``chat serve`` as the README
    runs it, the flooder in ``nc`` (from an address of its own), coming back with ``nc``,
    ``socat`` over UDP and a WebSocket client."""
    nc, socat = need("nc"), need("socat")
    args = ["chat", "serve", "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"]
    args += ["--web", "127.0.0.1:0", "--status", "none", "--data", "none"]
    with trio.fail_after(60):
        async with cli_server(args, ready_lines=3) as server:
            tcp, udp = server.port("chat (tcp)"), server.port("chat (udp)")
            web = server.port("chat (web)")
            alice = await founder(tcp, b"#lobby")
            flood = [nc, "-s", "127.0.0.5", "127.0.0.1", str(tcp)]
            async with line_process(flood) as mallory:
                await mallory.expect(b"welcome")
                await mallory.send(b"/nick mallory")
                for n in range(300):
                    await mallory.send(b"spam %d" % n)
                await mallory.close_stdin()  # (nc goes on reading until the server closes)
                await alice.read_until(b"mallory: spam 20")
                await alice.send(b"/ban mallory flooding\n")
                assert (await mallory.read_to_eof())[-1] == (
                    b"-!- disconnected: banned from #lobby by alice (flooding)"
                )
            async with line_process(flood) as again:
                await again.close_stdin()
                refused = await again.read_to_eof()
                assert refused == [b"-!- disconnected: you are banned from #lobby"]
            peer = [socat, "-", f"UDP:127.0.0.1:{udp},bind=127.0.0.5"]
            async with line_process(peer) as over_udp:
                await socat_join(over_udp)
                await over_udp.expect(b"-!- disconnected: you are banned from #lobby")
            async with connect(ws_url(web), local_address="127.0.0.5") as ws:
                bye = json.loads(await ws.recv())
                assert bye == {"text": "disconnected: you are banned from #lobby", "type": "notice"}
            await alice.send(b"/who\n")
            assert await alice.read_until(b"in #lobby") == b"-!- in #lobby: alice"
            alice.close()


async def test_a_laptop_and_a_phone_are_two_connections_of_one_session(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST))
    with trio.fail_after(300):
        async with web_chat(chat) as (tcp, _, _):
            laptop = await logged_in(tcp, b"alice")
            bob = await guest(tcp, b"bob")
            phone = await LineSocket.connect(tcp)
            await phone.read_until(b"welcome")
            await phone.send(b"/login alice " + PLAIN.encode() + b"\n")
            assert await phone.read_until(b"logged in") == (
                b"-!- you are logged in as alice (2 connections)"
            )
            guest_left = await bob.read_until(b"left #lobby")  # the phone's guest session
            assert guest_left.startswith(b"* guest")
            # each gets what the session is sent: direct messages, the room's lines
            await bob.send(b"/msg alice psst\nhello alice\n")
            for device in (laptop, phone):
                assert await device.read_until(b"psst") == b"[dm from bob] psst"
                assert await device.read_until(b"hello alice") == b"[#lobby] bob: hello alice"
            await phone.send(b"from the phone\n")
            assert await bob.read_until(b"from the phone") == b"[#lobby] alice: from the phone"
            assert await laptop.read_until(b"from the phone") == b"[#lobby] alice: from the phone"
            # a /join from one moves the session: both connections follow it
            await phone.send(b"/join #dev\n")
            await laptop.read_until(b"alice joined #dev")
            carol = await guest(tcp, b"carol")  # in #lobby, which the session left
            await bob.send(b"/join #dev\n")
            for device in (laptop, phone):
                await device.read_until(b"bob joined #dev")
            await carol.send(b"only in the lobby\n")
            await carol.read_until(b"only in the lobby")
            await bob.send(b"only in dev\n")
            for device in (laptop, phone):
                await device.read_until(b"only in dev")
                assert not [line for line in device.lines if b"only in the lobby" in line]
            # one connection leaves: the session goes on, nobody is told it left
            await phone.send(b"/quit\n")
            await phone.read_to_eof()
            await bob.send(b"/who\n")
            assert await bob.read_until(b"in #dev") == b"-!- in #dev: alice, bob"
            await bob.send(b"still there?\n")
            assert await laptop.read_until(b"still there") == b"[#dev] bob: still there?"
            await laptop.send(b"/quit\n")
            assert await bob.read_until(b"alice left") == b"* alice left #dev"
            for user in (laptop, bob, phone, carol):
                user.close()


async def test_a_kill_ends_every_connection_of_the_session(
    patient_clock: trio.testing.MockClock,
) -> None:
    chat = ChatServer(rate=None, hasher=Hasher(parameters=FAST), opers=["root"])
    with trio.fail_after(300):
        async with web_chat(chat) as (tcp, _, _):
            laptop = await logged_in(tcp, b"alice")
            phone = await LineSocket.connect(tcp)
            await phone.send(b"/login alice " + PLAIN.encode() + b"\n")
            await phone.read_until(b"2 connections")
            root = await logged_in(tcp, b"root")
            await root.send(b"/kill alice enough\n")
            for device in (laptop, phone):
                assert (await device.read_to_eof())[-1] == (
                    b"-!- disconnected: disconnected by root (enough)"
                )
            assert await root.read_until(b"alice left") == b"* alice left #lobby"
            for user in (laptop, phone, root):
                user.close()
