"""Tests of the chat's sans-IO rules: ChatSession, DirectoryState, LineReader, TokenBucket.

In the manner of h11's tests of its state machine: no sockets and no trio. Inputs go in,
effects (or lines, or delays) come out, and time is passed in as plain numbers. The
module docstrings of :mod:`triosock._sansio.chat` and :mod:`triosock._sansio.ratelimit`
are the specification.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from triosock._sansio.chat import (
    DEFAULT_ROOM,
    HELP_TEXT,
    Action,
    AreYouThere,
    ChatError,
    ChatSession,
    Close,
    Direct,
    DirectoryState,
    Effect,
    HttpRequest,
    Joined,
    Left,
    LineReader,
    ListRooms,
    ListUsers,
    Lookup,
    Message,
    Move,
    NickChanged,
    Overlong,
    Pause,
    Presence,
    Publish,
    Rename,
    Replay,
    Reply,
    Say,
    Tell,
    TlsHello,
    apply_erasures,
    inbox_topic,
    nick_key,
    parse_line_untrusted,
    room_topic,
    validate_nick,
    validate_room,
)
from triosock._sansio.chat._lines import MAX_SUBNEGOTIATION
from triosock._sansio.ratelimit import TokenBucket

LOBBY = room_topic(DEFAULT_ROOM)

# Telnet (RFC 854) bytes, spelled out so the expectations read like the RFC.
IAC, SB, SE = b"\xff", b"\xfa", b"\xf0"
WILL, WONT, DO, DONT = b"\xfb", b"\xfc", b"\xfd", b"\xfe"
NOP, DM, BRK, IP, AO, AYT, EC, EL, GA = (bytes([b]) for b in range(241, 250))
ECHO, SGA, TIMING_MARK, TTYPE = b"\x01", b"\x03", b"\x06", b"\x18"


def make_session(
    nick: str = "alice",
    *,
    max_line_length: int = 4096,
    rate: float | None = None,
    burst: int = 100,
) -> ChatSession:
    presence = Presence("o.1", nick, DEFAULT_ROOM, "tcp")
    return ChatSession(presence, max_line_length=max_line_length, rate=rate, burst=burst)


def said(text: str, nick: str = "alice") -> Publish:
    return Publish(LOBBY, Message(DEFAULT_ROOM, nick, text))


# -- ChatSession: arriving and leaving -----------------------------------------------------


@pytest.mark.parametrize("welcome", [True, False])
def test_start_welcomes_if_wanted_then_announces_the_join(welcome: bool) -> None:
    hello = Tell("welcome to triosock chat, alice; /help lists commands")
    joined = Publish(LOBBY, Joined(DEFAULT_ROOM, "alice"))
    replay = Replay(DEFAULT_ROOM)  # the room's earlier lines, then its live ones
    expected = ([hello] if welcome else []) + [replay, joined]
    assert make_session().start(welcome=welcome) == expected


def test_leave_tells_the_room_it_joined_and_nobody_before_it_started() -> None:
    session = make_session()
    assert session.leave() == []  # the room was never told it came
    session.start()
    assert session.leave() == [Publish(LOBBY, Left(DEFAULT_ROOM, "alice"))]


# -- ChatSession: each command -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"hello", [said("hello")]),
        (b"//shrug", [said("/shrug")]),
        (b"/me waves", [Publish(LOBBY, Action(DEFAULT_ROOM, "alice", "waves"))]),
        (b"/nick bob", [Rename("bob")]),
        (b"/nick ALICE", [Rename("ALICE")]),  # a case change: the directory allows it
        (b"/nick alice", [Tell("you are alice already")]),
        (b"/join #Dev", [Move("#dev")]),
        (b"/join dev", [Move("#dev")]),
        (b"/join #lobby", [Tell("you are in #lobby already")]),
        (b"/join LOBBY", [Tell("you are in #lobby already")]),
        (b"/msg bob hi there", [Lookup("bob", "hi there")]),
        (b"/who", [ListUsers(DEFAULT_ROOM)]),
        (b"/rooms", [ListRooms()]),
        (b"/quit", [Close("quit")]),
        (b"/QUIT see you", [Close("quit")]),
        (b"/frob", [Tell("unknown command /frob; try /help")]),
        (b"/msg bob", [Tell("usage: /msg NAME TEXT")]),
        (b"/who me", [Tell("usage: /who")]),
        (b"/", [Tell("empty command; try /help")]),
    ],
)
def test_each_command_has_its_effects(line: bytes, expected: list[Effect]) -> None:
    assert make_session().receive_line(line, 0) == expected


@pytest.mark.parametrize(
    ("command", "name", "error"),
    [
        ("nick", "9lives", "must start with a letter"),
        ("nick", "x" * 25, "too long"),
        ("nick", "b@d", "contains"),
        ("nick", "bob smith", "nicks cannot contain spaces"),
        ("join", "#", "must not be empty"),
        ("join", "r" * 33, "too long"),
        ("join", "#a:b", "contains"),
        ("join", "my room", "room names cannot contain spaces"),
    ],
)
def test_an_invalid_nick_or_room_is_told_with_the_error(
    command: str, name: str, error: str
) -> None:
    with pytest.raises(ChatError, match=error) as info:
        (validate_nick if command == "nick" else validate_room)(name)
    effects = make_session().receive_line(f"/{command} {name}".encode(), 0)
    assert effects == [Tell(str(info.value))]


@pytest.mark.parametrize("line", [b"", b"   ", b"\t \r", b"ab\x7f\x7f"])
def test_an_empty_line_has_no_effects(line: bytes) -> None:
    assert make_session().receive_line(line, 0) == []


def test_help_lists_the_commands_and_the_line_limit() -> None:
    effects = make_session(max_line_length=512).receive_line(b"/help", 0)
    assert effects == [*(Tell(line) for line in HELP_TEXT), Tell("lines may be at most 512 bytes")]


def test_help_names_the_rate_and_burst_when_there_is_a_rate() -> None:
    effects = make_session(rate=0.5, burst=3).receive_line(b"/HELP me", 0)
    assert effects[:-1] == [Tell(line) for line in HELP_TEXT]
    assert effects[-1] == Tell(
        "lines may be at most 4096 bytes; up to 0.5 lines a second (bursts of 3)"
    )


# -- ChatSession: answers to its questions -------------------------------------------------


@pytest.mark.parametrize(
    ("ok", "effect", "nick"),
    [
        (True, Publish(LOBBY, NickChanged("alice", "bob")), "bob"),
        (False, Tell("nick bob is taken"), "alice"),
    ],
)
def test_renamed_takes_the_nick_only_when_ok(ok: bool, effect: Effect, nick: str) -> None:
    session = make_session()
    assert session.renamed("bob", ok=ok) == [effect]
    assert session.nick == nick
    assert session.receive_line(b"hi", 0) == [said("hi", nick=nick)]


def test_moved_tells_the_old_room_then_the_new_one() -> None:
    session = make_session()
    session.start()
    assert session.moved("#dev") == [
        Publish(LOBBY, Left(DEFAULT_ROOM, "alice")),
        Replay("#dev"),
        Publish("room:#dev", Joined("#dev", "alice")),
    ]
    assert (session.room, session.topic) == ("#dev", "room:#dev")
    assert session.receive_line(b"/who", 0) == [ListUsers("#dev")]
    assert session.receive_line(b"hi", 0) == [Publish("room:#dev", Message("#dev", "alice", "hi"))]
    assert session.leave() == [Publish("room:#dev", Left("#dev", "alice"))]


def test_found_nobody_tells_no_user_named() -> None:
    assert make_session().found(Lookup("bob", "hi"), None) == [Tell("no user named bob")]
    long = make_session().found(Lookup("x" * 100, "hi"), None)  # a nick is shown cut short
    assert long == [Tell("no user named " + "x" * 39 + "…")]


def test_found_target_gets_the_message_and_the_sender_a_copy_unless_it_is_oneself() -> None:
    session = make_session()
    to_bob = Direct("alice", "bob", "hi")
    assert session.found(Lookup("BOB", "hi"), Presence("o.2", "bob", "#dev", "udp")) == [
        Publish("inbox:o.2", to_bob),
        Publish("inbox:o.1", to_bob),
    ]
    me = Presence("o.1", "alice", DEFAULT_ROOM, "tcp")
    to_me = Direct("alice", "alice", "note")
    assert session.found(Lookup("Alice", "note"), me) == [Publish("inbox:o.1", to_me)]


def test_listed_users_and_rooms_are_told() -> None:
    session = make_session()
    assert session.listed_users("#lobby", ["alice", "bob"]) == [Tell("in #lobby: alice, bob")]
    assert session.listed_rooms({"#a": 1, "#lobby": 2}) == [Tell("rooms: #a (1), #lobby (2)")]
    assert session.owns("ALICE")


# -- ChatSession: the line limit -----------------------------------------------------------


@pytest.mark.parametrize("line", [b"x" * 11, b"/nick " + b"a" * 5, b"/quit " + b"q" * 5])
def test_a_line_over_the_limit_is_refused_with_one_notice(line: bytes) -> None:
    effects = make_session(max_line_length=10).receive_line(line, 0)
    assert effects == [Tell("line refused (11 bytes): lines may be at most 10 bytes")]


@pytest.mark.parametrize("text", ["x" * 10, "é" * 5, "/me " + "w" * 6])
def test_a_line_at_the_limit_is_carried_out_whole(text: str) -> None:
    [effect] = make_session(max_line_length=10).receive_line(text.encode(), 0)
    assert isinstance(effect, Publish)
    assert isinstance(effect.event, Message | Action)
    assert effect.event.text == text.removeprefix("/me ")


@pytest.mark.parametrize(("size", "told"), [(5000, "5000 bytes"), (None, "longer than the limit")])
def test_receive_overlong_gives_the_same_notice(size: int | None, told: str) -> None:
    effects = make_session(max_line_length=10).receive_overlong(size, 0)
    assert effects == [Tell(f"line refused ({told}): lines may be at most 10 bytes")]


# -- ChatSession: UDP datagrams ------------------------------------------------------------


@pytest.mark.parametrize("data", [b"^hb^", b"^HB^ \r\n", b"\t^Hb^ ", b"", b"  \r\n"])
def test_heartbeat_and_empty_datagrams_have_no_effects(data: bytes) -> None:
    assert make_session().receive_datagram(data, 0) == []


@pytest.mark.parametrize("data", [b"quit", b"QUIT", b"quit\r\n", b" Quit \n"])
def test_quit_datagrams_close(data: bytes) -> None:
    assert make_session().receive_datagram(data, 0) == [Close("quit")]


def test_other_datagrams_are_lines_commands_included() -> None:
    assert make_session().receive_datagram(b"hello\r\n", 0) == [said("hello")]
    assert make_session().receive_datagram(b"two\nlines\n", 0) == [said("two lines")]
    # A /msg over UDP is a direct message, never said to the room by mistake.
    assert make_session().receive_datagram(b"/msg bob psst\n", 0) == [Lookup("bob", "psst")]
    assert make_session().receive_datagram(b"/nick bob", 0) == [Rename("bob")]
    assert make_session().receive_datagram(b"/quit", 0) == [Close("quit")]
    assert make_session().receive_datagram(b"//hb", 0) == [said("/hb")]


def test_a_datagram_over_the_limit_is_refused_and_its_terminator_is_not_counted() -> None:
    session = make_session(max_line_length=10)
    refused = Tell("line refused (11 bytes): lines may be at most 10 bytes")
    assert session.receive_datagram(b"x" * 11 + b"\r\n", 0) == [refused]
    assert session.receive_datagram(b"x" * 10 + b"\r\n", 0) == [said("x" * 10)]


# -- ChatSession: the rate limit -----------------------------------------------------------


def test_the_first_burst_is_free_and_the_next_line_is_paced() -> None:
    session = make_session(rate=50, burst=100)
    for n in range(100):
        assert session.receive_line(b"line %d" % n, 0) == [said(f"line {n}")]
    assert session.paused == 0
    assert session.receive_line(b"one more", 0) == [Pause(0.02), said("one more")]
    assert session.paused == 1


def test_lines_at_the_paced_times_never_owe_more_than_one_line() -> None:
    session, now = make_session(rate=50, burst=100), 0.0
    for n in range(1000):
        effects = session.receive_line(b"x", now)
        assert effects[-1] == said("x")
        if n >= 100:
            assert isinstance(effects[0], Pause)
            assert effects[0].seconds == pytest.approx(0.02)  # not 0.04, 0.06, ...
            now += effects[0].seconds
    assert session.paused == 900
    assert now == pytest.approx(900 / 50)


def test_after_a_quiet_period_the_bucket_refills_to_the_burst_only() -> None:
    session = make_session(rate=50, burst=100)
    for _ in range(150):
        session.receive_line(b"x", 0)
    for _ in range(100):
        assert session.receive_line(b"x", 3600) == [said("x")]
    assert session.receive_line(b"x", 3600) == [Pause(0.02), said("x")]


@pytest.mark.parametrize(
    ("spend", "spends"),
    [
        (lambda s: s.receive_line(b"hi", 0), True),
        (lambda s: s.receive_line(b"/who", 0), True),
        (lambda s: s.receive_line(b"x" * 20, 0), True),
        (lambda s: s.receive_overlong(None, 0), True),
        (lambda s: s.receive_datagram(b"hi", 0), True),
        (lambda s: s.receive_line(b"", 0), True),  # every line costs, refused or not
        (lambda s: s.receive_line(b"   ", 0), True),
        (lambda s: s.receive_other(Tell("yes, the server is here"), 0), True),
        (lambda s: s.receive_other(Reply(b"\xff\xfc\x06"), 0), True),
        (lambda s: s.receive_datagram(b"^HB^\r\n", 0), False),
        (lambda s: s.receive_datagram(b" \n", 0), True),
    ],
)
def test_which_inputs_spend_a_token(
    spend: Callable[[ChatSession], list[Effect]], spends: bool
) -> None:
    session = make_session(max_line_length=10, rate=1, burst=1)
    for _ in range(1 if spends else 3):
        spend(session)
    expected = [Pause(1.0), said("hi")] if spends else [said("hi")]
    assert session.receive_line(b"hi", 0) == expected


def test_no_rate_never_pauses() -> None:
    session = make_session(rate=None, burst=1)
    assert all(session.receive_line(b"x", 0) == [said("x")] for _ in range(10_000))
    assert session.paused == 0


# -- TokenBucket ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(0, 1), (-1, 1), (float("nan"), 1), (float("inf"), 1), (1, 0), (1, -3)],
)
def test_bucket_refuses_bad_rates_and_bursts(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"^(rate|burst) must"):
        TokenBucket(rate, burst, 0)


def test_bucket_starts_full_and_goes_one_token_into_debt() -> None:
    bucket = TokenBucket(4, 3, now=10)
    assert bucket.available(10) == 3
    assert [bucket.take(10) for _ in range(3)] == [0, 0, 0]
    assert bucket.available(10) == 0
    assert bucket.take(10) == 0.25
    assert bucket.available(10) == -1
    assert bucket.available(10.25) == 0  # the caller waited: even again, exactly on the rate
    assert bucket.available(10_000) == 3
    assert bucket.available(5) == -1  # a time before the last take refills nothing


@given(
    rate=st.floats(0.1, 1000),
    burst=st.integers(1, 50),
    idles=st.lists(st.one_of(st.just(0.0), st.floats(0, 100)), max_size=300),
)
def test_a_caller_that_waits_as_told_never_owes_more_than_one_token(
    rate: float, burst: int, idles: list[float]
) -> None:
    bucket, now = TokenBucket(rate, burst, 0), 0.0
    for idle in idles:
        now += idle
        delay = bucket.take(now)
        assert 0 <= delay <= 1 / rate * (1 + 1e-9)
        assert -1 - 1e-9 <= bucket.available(now) <= burst
        now += delay


# -- DirectoryState: ids, registering, nicks -----------------------------------------------


def test_session_ids_are_unique_and_carry_the_origin() -> None:
    directory = DirectoryState(origin="3f9c")
    ids = [directory.register("tcp").session for _ in range(5)]
    assert len(set(ids)) == 5
    assert all(i.startswith("3f9c.") for i in ids)
    assert directory.get(ids[0]) == Presence(ids[0], "guest1", DEFAULT_ROOM, "tcp")
    assert Presence(ids[0], "x", "#x", "ws").inbox == inbox_topic(ids[0]) == f"inbox:{ids[0]}"


def test_directories_with_default_origins_never_share_ids() -> None:
    one, two = DirectoryState(), DirectoryState()
    assert one.origin != two.origin
    assert len(one.origin) == 16
    int(one.origin, 16)  # hex
    assert {one.register("tcp").session for _ in range(20)}.isdisjoint(
        two.register("tcp").session for _ in range(20)
    )


@pytest.mark.parametrize("asked", ["alice", "ALICE"])
def test_register_gets_a_free_nick_and_a_guest_nick_for_a_taken_one(asked: str) -> None:
    directory = DirectoryState("o")
    udp = directory.register("udp", "127.0.0.1:5000", room="#dev")
    assert (udp.nick, udp.room, udp.kind) == ("127.0.0.1:5000", "#dev", "udp")
    assert directory.register("tcp", "alice").nick == "alice"
    assert directory.register("tcp", asked).nick == "guest1"


def test_guest_nicks_count_up_and_skip_taken_ones() -> None:
    directory = DirectoryState("o")
    first, second = directory.register("tcp"), directory.register("tcp")
    assert (first.nick, second.nick) == ("guest1", "guest2")
    assert directory.rename(first.session, "Guest3")
    directory.register("tcp", "guest5")
    assert [directory.register("tcp").nick for _ in range(2)] == ["guest4", "guest6"]


def test_rename_is_case_insensitive_for_uniqueness() -> None:
    directory = DirectoryState("o")
    alice, bob = directory.register("tcp", "Alice"), directory.register("tcp", "bob")
    assert directory.rename(bob.session, "alice") is False
    assert directory.get(bob.session) == bob
    assert directory.lookup("ALICE") == alice
    assert directory.nicks() == ["Alice", "bob"]


def test_a_case_change_of_ones_own_nick_is_allowed() -> None:
    directory = DirectoryState("o")
    alice = directory.register("tcp", "alice")
    assert directory.rename(alice.session, "ALICE") is True
    assert directory.rename(alice.session, "ALICE") is True  # owning it already
    assert directory.lookup("alice") == Presence(alice.session, "ALICE", DEFAULT_ROOM, "tcp")
    assert directory.nicks() == ["ALICE"]
    assert directory.rename(alice.session, "al")  # and the old nick is free again
    assert directory.lookup("alice") is None
    assert directory.register("tcp", "alice").nick == "alice"


def test_unknown_sessions_raise_key_error_on_rename_and_move() -> None:
    directory = DirectoryState("o")
    with pytest.raises(KeyError):
        directory.rename("o.99", "x")
    with pytest.raises(KeyError):
        directory.move("o.99", "#x")


# -- DirectoryState: rooms, leaving --------------------------------------------------------


def test_rooms_are_sorted_with_counts_and_vanish_when_empty() -> None:
    directory = DirectoryState("o")
    carol, alice, bob = (directory.register("tcp", n) for n in ("carol", "alice", "bob"))
    assert directory.rooms() == {DEFAULT_ROOM: 3}
    assert directory.nicks(DEFAULT_ROOM) == ["alice", "bob", "carol"]
    assert directory.move(bob.session, "#zoo") == Presence(bob.session, "bob", "#zoo", "tcp")
    directory.move(carol.session, "#art")
    assert list(directory.rooms().items()) == [("#art", 1), (DEFAULT_ROOM, 1), ("#zoo", 1)]
    directory.move(alice.session, "#zoo")
    assert list(directory.rooms().items()) == [("#art", 1), ("#zoo", 2)]
    assert directory.nicks("#zoo") == ["alice", "bob"]
    assert directory.nicks(DEFAULT_ROOM) == []
    directory.move(alice.session, "#zoo")  # to the room one is in: nothing changes
    assert directory.rooms() == {"#art": 1, "#zoo": 2}


def test_unregister_frees_the_nick_and_is_idempotent() -> None:
    directory = DirectoryState("o")
    alice = directory.register("tcp", "alice", room="#dev")
    directory.register("tcp", "bob")
    assert directory.unregister(alice.session) == alice
    assert directory.unregister(alice.session) is None
    assert directory.unregister("nobody") is None
    assert (directory.lookup("alice"), directory.get(alice.session)) == (None, None)
    assert (len(directory), directory.rooms(), directory.nicks()) == (1, {DEFAULT_ROOM: 1}, ["bob"])
    assert directory.register("tcp", "Alice").nick == "Alice"


NICKS = ["alice", "Alice", "ALICE", "bob", "guest1", "Guest2", "guest3", "127.0.0.1:5000"]
ROOMS = [DEFAULT_ROOM, "#a", "#b"]


class DirectoryMachine(RuleBasedStateMachine):
    """Random register/rename/move/unregister, checked against a model after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = DirectoryState("m")
        self.model: dict[str, Presence] = {}  # session id -> what the directory must say

    def owner(self, nick: str) -> str | None:
        return next((s for s, p in self.model.items() if nick_key(p.nick) == nick_key(nick)), None)

    @rule(nick=st.none() | st.sampled_from(NICKS), room=st.sampled_from(ROOMS))
    def register(self, nick: str | None, room: str) -> None:
        free = nick is not None and self.owner(nick) is None
        presence = self.directory.register("tcp", nick, room)
        assert (presence.nick == nick) if free else presence.nick.startswith("guest")
        assert self.owner(presence.nick) is None
        assert presence.session not in self.model
        self.model[presence.session] = presence

    @rule(data=st.data(), nick=st.sampled_from(NICKS), room=st.sampled_from(ROOMS))
    def rename_and_move(self, data: st.DataObject, nick: str, room: str) -> None:
        if self.model:
            session = data.draw(st.sampled_from(sorted(self.model)))
            ok = self.directory.rename(session, nick)
            assert ok is (self.owner(nick) in (None, session))
            if ok:
                self.model[session] = Presence(session, nick, self.model[session].room, "tcp")
            if data.draw(st.booleans()):
                self.model[session] = self.directory.move(session, room)
                assert self.model[session].room == room

    @rule(data=st.data())
    def unregister(self, data: st.DataObject) -> None:
        session = data.draw(st.sampled_from([*sorted(self.model), "m.0"]))
        assert self.directory.unregister(session) == self.model.pop(session, None)

    @invariant()
    def every_nick_has_exactly_one_owner(self) -> None:
        keys = [nick_key(p.nick) for p in self.model.values()]
        assert len(keys) == len(set(keys))
        for session, presence in self.model.items():
            assert self.directory.lookup(presence.nick.upper()) == presence
            assert self.directory.get(session) == presence

    @invariant()
    def listings_agree_with_the_sessions(self) -> None:
        assert self.directory.nicks() == sorted(p.nick for p in self.model.values())
        rooms = self.directory.rooms()
        assert list(rooms) == sorted(rooms)
        assert rooms == dict(Counter(p.room for p in self.model.values()))
        assert sum(rooms.values()) == len(self.directory) == len(self.model)
        for room in rooms:  # each session in exactly one room
            expected = sorted(p.nick for p in self.model.values() if p.room == room)
            assert self.directory.nicks(room) == expected


TestDirectoryMachine = DirectoryMachine.TestCase


# -- LineReader: line ends -----------------------------------------------------------------


def feed_in_pieces(reader: LineReader, data: bytes, cuts: list[int]) -> list[object]:
    out: list[object] = []
    start = 0
    for cut in sorted(cuts):
        out += reader.feed(data[start:cut])
        start = cut
    return out + reader.feed(data[start:])


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"a\nb\n", [b"a", b"b"]),
        (b"a\r\nb\r\n", [b"a", b"b"]),
        (b"a\rb\r", [b"a", b"b"]),
        (b"a\r\x00b\r\x00", [b"a", b"b"]),
        (b"a\r\n\nb\r\r\n\r\x00\n", [b"a", b"", b"b", b"", b"", b""]),
        (b"\x00a\x00\n", [b"\x00a\x00"]),  # a NUL that does not follow a CR is kept
    ],
)
def test_every_line_end_ends_a_line(data: bytes, lines: list[bytes]) -> None:
    assert LineReader(100).feed(data) == lines
    assert feed_in_pieces(LineReader(100), data, list(range(len(data)))) == lines


@pytest.mark.parametrize("second", [b"\n", b"\x00"])
def test_a_cr_pair_split_across_feeds_makes_no_empty_line(second: bytes) -> None:
    reader = LineReader(100)
    assert reader.feed(b"one\r") == [b"one"]
    assert reader.feed(b"") == []
    assert reader.feed(second + b"two\n") == [b"two"]


def test_a_line_limit_below_one_byte_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LineReader(0)
    with pytest.raises(ValueError, match="at least 1"):
        make_session(max_line_length=0)


# -- LineReader: telnet --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "items"),
    [
        pytest.param(b"a" + IAC + IAC + b"b\n", [b"a\xffb"], id="IAC IAC is 0xFF"),
        pytest.param(b"ab" + IAC + EC + b"c\n", [b"ab\x7fc"], id="EC is DEL"),
        pytest.param(b"ab" + IAC + AYT + b"c\n", [AreYouThere(), b"abc"], id="AYT"),
        *(
            pytest.param(b"junk" + IAC + c + b"ok\n", [b"ok"], id=f"{c!r} discards")
            for c in (EL, IP, AO, BRK)
        ),
        *(
            pytest.param(b"a" + IAC + c + b"b\n", [b"ab"], id=f"{c!r} ignored")
            for c in (NOP, GA, DM, SE)
        ),
        # 0xFF before a byte that is no telnet command: both are data (Latin-1 text, say).
        pytest.param(b"a" + IAC + b"bc\n", [b"a\xffbc"], id="IAC then data"),
        pytest.param(b"x" + IAC + b"\ny\n", [b"x\xff", b"y"], id="IAC then a line end"),
        pytest.param(b"a" + IAC + SB + TTYPE + b"\x00xterm" + IAC + SE + b"b\n", [b"ab"], id="SB"),
        pytest.param(
            b"a" + IAC + SB + IAC + IAC + b"no" + IAC + SE + b"b\n", [b"ab"], id="SB IAC IAC"
        ),
        pytest.param(
            b"a" + IAC + SB + b"1" + IAC + b"x2" + IAC + SE + b"b\n", [b"ab"], id="SB IAC x"
        ),
    ],
)
def test_telnet_commands_are_taken_out_whole_or_byte_by_byte(
    data: bytes, items: list[object]
) -> None:
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        reader = LineReader(100)
        assert [item for chunk in chunks for item in reader.feed(chunk)] == items
        assert reader.take_replies() == b""


@pytest.mark.parametrize(("verb", "answer"), [(DO, WONT), (WILL, DONT), (WONT, None), (DONT, None)])
def test_every_option_is_refused_every_time_it_is_asked(verb: bytes, answer: bytes | None) -> None:
    reader = LineReader(100)
    for _ in range(3):  # no suppression of repeats (RFC 1143 needs none for refusals)
        assert reader.feed(b"x" + IAC + verb + TIMING_MARK + b"y\n") == [b"xy"]
        assert reader.take_replies() == (b"" if answer is None else IAC + answer + TIMING_MARK)
    assert reader.take_replies() == b""


# Bytes captured from the real Debian telnet client (inetutils 2.4).


def test_debian_telnet_character_mode_typing() -> None:
    # `abc` Enter, `de` Backspace `f` Enter
    assert LineReader(100).feed(b"abc\r\x00de\x7ff\r\x00") == [b"abc", b"de\x7ff"]
    assert parse_line_untrusted(b"de\x7ff") == Say("df")


def test_debian_telnet_mode_character_is_refused() -> None:
    reader = LineReader(100)
    assert reader.feed(IAC + DO + SGA + IAC + DO + ECHO) == []
    assert reader.take_replies() == IAC + WONT + SGA + IAC + WONT + ECHO


def test_debian_telnet_ctrl_c_discards_the_line_and_gets_its_timing_mark_answered() -> None:
    reader = LineReader(100)
    for _ in range(2):
        assert reader.feed(b"half a line" + IAC + IP + IAC + DO + TIMING_MARK) == []
        assert reader.take_replies() == IAC + WONT + TIMING_MARK
    assert reader.feed(b"next\r\n") == [b"next"]


# -- LineReader: the limit -----------------------------------------------------------------


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r\x00", b"\r"])
def test_an_overlong_line_is_refused_with_its_size_and_sync_is_kept(end: bytes) -> None:
    reader = LineReader(5)
    data = b"12345" + end + b"123456" + end + b"a" * 40 + end + b"ok" + end
    assert reader.feed(data) == [b"12345", Overlong(6), Overlong(40), b"ok"]


def test_an_overlong_line_over_many_feeds_has_its_exact_size() -> None:
    reader = LineReader(5)
    for chunk in [b"123", b"456", b"7" + IAC + IAC, b"89" * 100]:
        assert reader.feed(chunk) == []
        assert reader.buffered <= 5
    assert reader.feed(b"\nok\n") == [Overlong(208), b"ok"]


@pytest.mark.parametrize(
    ("data", "items"),
    [(b"a\nlast", [b"last"]), (b"a\n123456", [Overlong(6)]), (b"a\n", []), (b"a\r", [])],
)
def test_feed_eof_gives_an_unterminated_last_line(data: bytes, items: list[object]) -> None:
    reader = LineReader(5)
    reader.feed(data)
    assert reader.feed_eof() == items


# -- LineReader: properties ----------------------------------------------------------------

plain_bytes = st.binary(max_size=300).map(lambda b: b.replace(b"\xff", b"")) | st.lists(
    st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\x00", b"\x7f", b"x" * 9]), max_size=80
).map(b"".join)
telnet_bytes = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"a", b"\r", b"\n", b"\x00", IAC, SB, SE, DO, WILL, EC, EL, AYT, b"xy" * 5]),
    max_size=80,
).map(b"".join)
cuts = st.lists(st.integers(0, 300), max_size=20)


@given(data=plain_bytes, cuts=cuts, limit=st.integers(1, 12))
def test_any_split_of_a_stream_without_ff_gives_the_same_items(
    data: bytes, cuts: list[int], limit: int
) -> None:
    whole = LineReader(limit)
    expected = whole.feed(data) + whole.feed_eof()
    pieces = LineReader(limit)
    assert feed_in_pieces(pieces, data, cuts) + pieces.feed_eof() == expected


@given(data=telnet_bytes, cuts=cuts, limit=st.integers(1, 12))
def test_any_stream_at_all_is_read_without_error_within_the_limit_in_any_split(
    data: bytes, cuts: list[int], limit: int
) -> None:
    whole = LineReader(limit)
    expected = (whole.feed(data) + whole.feed_eof(), whole.take_replies())
    reader, items, start = LineReader(limit), [], 0
    for cut in [*sorted(cuts), len(data)]:
        items += reader.feed(data[start:cut])
        assert reader.buffered <= limit
        start = max(start, cut)
    items += reader.feed_eof()
    assert all(
        len(i) <= limit if isinstance(i, bytes) else isinstance(i, AreYouThere | Overlong)
        for i in items
    )
    assert (items, reader.take_replies()) == expected


@given(
    lines=st.lists(st.binary(max_size=12).filter(lambda b: not set(b) & set(b"\r\n\x00\xff"))),
    ends=st.lists(st.sampled_from([b"\n", b"\r\n", b"\r\x00", b"\r"]), min_size=1),
)
def test_lines_come_out_as_they_went_in(lines: list[bytes], ends: list[bytes]) -> None:
    data, previous = b"", b""
    for n, line in enumerate(lines):
        end = ends[n % len(ends)]
        if previous == b"\r" and not line and end == b"\n":
            end = b"\r\n"  # CR then LF would be one CR LF: a single line end
        data, previous = data + line + end, end
    expected = [line if len(line) <= 8 else Overlong(len(line)) for line in lines]
    assert LineReader(8).feed(data) == expected


# -- apply_erasures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seen"),
    [
        ("helo\x7flo", "hello"),
        # The docstring's own example; "he" + "lo" by its rule, not the "hello" it claims.
        ("helo\x7f\x7flo", "helo"),
        ("ab\x08c", "ac"),
        ("\x7f\x08abc", "abc"),
        ("a\x7f\x7f\x7fb", "b"),
        ("né\x7f", "n"),  # a character, not a byte of its UTF-8
        ("a😀\x08b", "ab"),
        ("no erasure", "no erasure"),
    ],
)
def test_erasures_remove_the_previous_character(text: str, seen: str) -> None:
    assert apply_erasures(text) == seen


def test_an_erased_multibyte_character_leaves_no_replacement_character() -> None:
    assert parse_line_untrusted("né".encode() + b"\x7f!") == Say("n!")


@given(text=st.text(max_size=30), char=st.characters(exclude_characters="\x08\x7f"))
def test_a_typed_then_erased_character_changes_nothing(text: str, char: str) -> None:
    assert apply_erasures(text + char + "\x7f") == apply_erasures(text)


def test_a_subnegotiation_ends_at_a_line_end_or_its_bound() -> None:
    # Nothing agreed, so no real subnegotiation comes: Latin-1 "ÿú" (0xFF 0xFA) must not
    # swallow the lines after it.
    reader = LineReader(100)
    text = "latin-1: ÿú end\nnext line\n/who\n".encode("latin-1")
    assert reader.feed(text) == [b"latin-1: ", b"next line", b"/who"]
    long = IAC + SB + b"x" * (MAX_SUBNEGOTIATION + 10) + b"\n"
    assert reader.feed(long) == [b"x" * 10]


# -- LineReader: the first line, screened for an HTTP request --------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:7070\r\nUser-Agent: curl/8\r\n\r\n",
        b"POST /x?y=1 HTTP/1.1\r\nContent-Length: 13\r\n\r\n/nick mallory",
        b"HEAD / HTTP/1.0\n\n",
        b"OPTIONS * HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",  # HTTP/2 with prior knowledge
        b"GET /status HTTP/1.1\r",  # the verdict comes with the CR, not after it
        b"POST /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\nhello room\n",
    ],
)
def test_a_first_line_that_is_an_http_request_is_refused_and_nothing_after_it_read(
    data: bytes,
) -> None:
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        reader = LineReader(100, refuse_http=True)
        items = [item for chunk in chunks for item in reader.feed(chunk)]
        assert items + reader.feed(b"more\n") + reader.feed_eof() == [HttpRequest()]
        assert reader.refused
        assert not reader.screening
        assert reader.take_replies() == b""


@pytest.mark.parametrize(
    ("data", "items"),
    [
        (b"hello world\n", [b"hello world"]),
        (b"GET / HTTP/1.1 and more\n", [b"GET / HTTP/1.1 and more"]),
        (b"GET /\n", [b"GET /"]),
        (b"get / http/1.1\n", [b"get / http/1.1"]),  # the version is case-sensitive
        (b"GET  / HTTP/1.1\n", [b"GET  / HTTP/1.1"]),  # one space, not two
        (b"GET / HTTP/1.11\n", [b"GET / HTTP/1.11"]),
        (b"/nick GET / HTTP/1.1\n", [b"/nick GET / HTTP/1.1"]),
        (b"\nGET / HTTP/1.1\n", [b"", b"GET / HTTP/1.1"]),  # only the first line
        (b"GET / HTTP/1.1", [b"GET / HTTP/1.1"]),  # no line end: a line like any other
        (IAC + DO + b"\x01GET / HTTP/1.1\r\n", [b"GET / HTTP/1.1"]),  # telnet first
        (b"x" * 150 + b" HTTP/1.1\nok\n", [Overlong(159), b"ok"]),
    ],
)
def test_any_other_first_line_is_read_as_without_the_screen(
    data: bytes, items: list[object]
) -> None:
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))]):
        reader = LineReader(100, refuse_http=True)
        got = [item for chunk in chunks for item in reader.feed(chunk)] + reader.feed_eof()
        assert got == items
        assert not reader.refused
        assert not reader.screening


@given(data=telnet_bytes | plain_bytes, cuts=cuts, limit=st.integers(1, 12))
@example(data=b"\x16", cuts=[], limit=1)  # a TLS handshake's first byte, found by hypothesis
def test_the_screen_changes_nothing_but_a_request_line(
    data: bytes, cuts: list[int], limit: int
) -> None:
    plain = LineReader(limit)
    expected = (plain.feed(data) + plain.feed_eof(), plain.take_replies())
    screened = LineReader(limit, refuse_http=True)
    items = feed_in_pieces(screened, data, cuts) + screened.feed_eof()
    if items == [HttpRequest()]:
        first = data.replace(b"\r", b"\n").split(b"\n")[0]
        assert re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/[0-9]\.[0-9]", first)
    elif items == [TlsHello()]:  # and nothing more: the screen's other refusal
        assert data.startswith(b"\x16")
    else:
        assert (items, screened.take_replies()) == expected
