"""Tests of the sans-IO chat protocol core: parsing, names, neutralising, rendering."""

from __future__ import annotations

import contextlib
import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triosock._errors import TriosockError
from triosock._sansio.chat import (
    BYE,
    DEFAULT_ROOM,
    HEARTBEAT,
    HELP_TEXT,
    MAX_NICK_LENGTH,
    MAX_ROOM_LENGTH,
    REFLECTION_FACTOR,
    TOKEN_MARK,
    UDP_QUIT,
    Action,
    ChatError,
    Command,
    Direct,
    Empty,
    Event,
    Heartbeat,
    Help,
    Invalid,
    Join,
    Joined,
    Left,
    Me,
    Message,
    Msg,
    Nick,
    NickChanged,
    Notice,
    Quit,
    Rooms,
    Say,
    ServerClosing,
    UdpQuit,
    UdpText,
    Who,
    address_token,
    classify_datagram_untrusted,
    decode_event_untrusted,
    default_nick,
    encode_event,
    format_address,
    is_address_token,
    join_notice,
    nick_key,
    notice_token_untrusted,
    parse_line_untrusted,
    render_line,
    sanitize_text,
    udp_ack_line,
    validate_nick,
    validate_room,
)

BIDI = {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


def is_clean(text: str) -> bool:
    return not any(unicodedata.category(c) in ("Cc", "Cs") or c in BIDI for c in text)


# -- parsing: each command ----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"hello", Say("hello")),
        (b"hello world  and more", Say("hello world  and more")),
        (b"  indented", Say("  indented")),
        (b" /nick bob", Say(" /nick bob")),
        (b"//shrug", Say("/shrug")),
        (b"//", Say("/")),
        (b"///x", Say("//x")),
        (b"caf\xc3\xa9", Say("café")),
        (b"/nick bob", Nick("bob")),
        (b"/nick   bob  ", Nick("bob")),
        (b"/join #rust", Join("#rust")),
        (b"/join rust", Join("rust")),
        (b"/msg bob hi", Msg("bob", "hi")),
        (b"/msg bob hi  there, bob", Msg("bob", "hi  there, bob")),
        (b"/msg   bob    hi", Msg("bob", "hi")),
        (b"/me waves", Me("waves")),
        (b"/me waves  twice", Me("waves  twice")),
        (b"/who", Who()),
        (b"/rooms", Rooms()),
        (b"/quit", Quit()),
        (b"/quit see you", Quit()),
        (b"/help", Help()),
        (b"/help nick", Help()),
        # A name with spaces is a name: its validation says why it is refused.
        (b"/nick bob smith", Nick("bob smith")),
        (b"/join a  b", Join("a  b")),
    ],
)
def test_parse(line: bytes, expected: Command) -> None:
    assert parse_line_untrusted(line) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"/NICK Bob", Nick("Bob")),
        (b"/Nick Bob", Nick("Bob")),
        (b"/JOIN #Rust", Join("#Rust")),
        (b"/MSG Bob Hi", Msg("Bob", "Hi")),
        (b"/Me Waves", Me("Waves")),
        (b"/WHO", Who()),
        (b"/Rooms", Rooms()),
        (b"/QUIT", Quit()),
        (b"/HeLp", Help()),
    ],
)
def test_commands_are_case_insensitive_arguments_keep_case(line: bytes, expected: Command) -> None:
    assert parse_line_untrusted(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"/nick", "usage: /nick NAME"),
        (b"/nick   ", "usage: /nick NAME"),
        (b"/join", "usage: /join ROOM"),
        (b"/msg", "usage: /msg NAME TEXT"),
        (b"/msg bob", "usage: /msg NAME TEXT"),
        (b"/msg bob   ", "usage: /msg NAME TEXT"),
        (b"/me", "usage: /me TEXT"),
        (b"/me  ", "usage: /me TEXT"),
        (b"/who #lobby", "usage: /who"),
        (b"/rooms all", "usage: /rooms"),
        (b"/", "empty command; try /help"),
        (b"/ nick bob", "empty command; try /help"),
        (b"/foo", "unknown command /foo; try /help"),
        (b"/FOO bar", "unknown command /foo; try /help"),
    ],
)
def test_invalid(line: bytes, reason: str) -> None:
    assert parse_line_untrusted(line) == Invalid(reason)


def test_unknown_command_name_is_neutralised_and_short() -> None:
    result = parse_line_untrusted(b"/x\x1b[31m" + b"y" * 100)
    assert isinstance(result, Invalid)
    assert "\x1b" not in result.reason
    assert len(result.reason) < 60


@pytest.mark.parametrize("line", [b"", b" ", b"   \t ", b"\r", b"\r\r", b"\x1b[2J", b"\x00\x07"])
def test_empty(line: bytes) -> None:
    assert parse_line_untrusted(line) == Empty()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"hi\r", Say("hi")),
        (b"hi\r\r", Say("hi")),
        (b"hi \r", Say("hi")),
        (b"/who\r", Who()),
        (b"/nick bob\r", Nick("bob")),
        (b"/msg bob hi\r", Msg("bob", "hi")),
        (b"/quit\r\x00", Quit()),  # telnet's CR NUL
    ],
)
def test_crlf_remnants(line: bytes, expected: Command) -> None:
    assert parse_line_untrusted(line) == expected


def test_invalid_utf8_is_replaced() -> None:
    assert parse_line_untrusted(b"a\xffb") == Say("a\ufffdb")
    assert parse_line_untrusted(b"/nick \xc3") == Nick("\ufffd")
    assert parse_line_untrusted(b"\xed\xa0\x80") == Say("\ufffd" * 3)  # encoded surrogate


def test_text_is_sanitised_in_commands() -> None:
    assert parse_line_untrusted(b"\x1b[31mred\x1b[0m") == Say("red")
    assert parse_line_untrusted(b"a\tb") == Say("a b")
    assert parse_line_untrusted(b"/msg bob \x1b]0;pwned\x07hi") == Msg("bob", "hi")
    assert parse_line_untrusted("/me \u202eevil".encode()) == Me("evil")
    assert parse_line_untrusted(b"/nick \x1b[1mbob") == Nick("bob")


def test_long_text_is_kept_whole() -> None:
    # The server refuses lines over its limit before parsing: parsing never cuts.
    assert parse_line_untrusted(b"x" * 5000) == Say("x" * 5000)
    assert parse_line_untrusted(b"/msg bob " + b"y" * 5000) == Msg("bob", "y" * 5000)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"helo\x7flo", Say("hello")),
        (b"helo\x08lo", Say("hello")),
        (b"\x7f\x7fhi", Say("hi")),
        (b"abc\x7f\x7f\x7f\x7f", Empty()),
        ("caf\u00e9\x7fe".encode(), Say("cafe")),  # a character, not a byte
        (b"/nicj\x7fk bob", Nick("bob")),
    ],
)
def test_erasures_are_applied_as_the_user_saw_them(line: bytes, expected: Command) -> None:
    assert parse_line_untrusted(line) == expected


@given(st.binary())
def test_parse_never_raises(line: bytes) -> None:
    command = parse_line_untrusted(line)
    for value in vars_of(command):
        assert is_clean(value)


@given(st.text().map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_parse_never_raises_on_text(line: bytes) -> None:
    parse_line_untrusted(b"/msg bob " + line)
    parse_line_untrusted(b"/" + line)
    parse_line_untrusted(line)


def vars_of(obj: object) -> list[str]:
    """The text a command carries (its other fields, a flag or a missing nick, are no
    text to clean)."""
    values = [getattr(obj, name) for name in getattr(obj, "__slots__", ())]
    return [value for value in values if isinstance(value, str)]


# -- names --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "bob", "Alice", "al_ice-2.0", "x" * MAX_NICK_LENGTH])
def test_valid_nicks(name: str) -> None:
    assert validate_nick(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("x" * (MAX_NICK_LENGTH + 1), "too long"),
        ("1bob", "must start with a letter"),
        ("_bob", "must start with a letter"),
        ("-bob", "must start with a letter"),
        ("bo b", "contains ' ': nicks cannot contain spaces;"),
        ("bob:", "contains ':'"),
        ("bob]", "contains ']'"),
        ("#bob", "contains '#'"),
        ("zoë", "contains 'ë'"),
        ("bob\x1b[31m", "contains '\\x1b'"),
        ("bob\u202e", "contains '\\u202e'"),
    ],
)
def test_invalid_nicks(name: str, message: str) -> None:
    with pytest.raises(ChatError, match="nick") as info:
        validate_nick(name)
    assert message in str(info.value)
    assert is_clean(str(info.value))


def test_chat_error_is_a_triosock_error() -> None:
    assert issubclass(ChatError, TriosockError)


def test_long_invalid_nick_is_not_echoed_whole() -> None:
    with pytest.raises(ChatError) as info:
        validate_nick("x" * 10_000)
    assert len(str(info.value)) < 100


def test_nick_key() -> None:
    assert nick_key("Alice") == nick_key("ALICE") == nick_key("alice") == "alice"
    assert nick_key("bob") != nick_key("alice")


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("lobby", "#lobby"),
        ("#lobby", "#lobby"),
        ("#Lobby", "#lobby"),
        ("RUST", "#rust"),
        ("2024", "#2024"),
        ("#a.b-c_d", "#a.b-c_d"),
        ("x" * MAX_ROOM_LENGTH, "#" + "x" * MAX_ROOM_LENGTH),
    ],
)
def test_valid_rooms(name: str, canonical: str) -> None:
    assert validate_room(name) == canonical


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("#", "must not be empty"),
        ("##lobby", "contains '#'"),
        ("x" * (MAX_ROOM_LENGTH + 1), "too long"),
        ("my room", "contains ' ': room names cannot contain spaces;"),
        ("#caf\u00e9", "contains 'é'"),
    ],
)
def test_invalid_rooms(name: str, message: str) -> None:
    with pytest.raises(ChatError, match="room") as info:
        validate_room(name)
    assert message in str(info.value)


def test_default_room_is_canonical() -> None:
    assert DEFAULT_ROOM == "#lobby"
    assert validate_room(DEFAULT_ROOM) == DEFAULT_ROOM


def test_default_nick() -> None:
    assert default_nick(1) == "guest1"
    assert default_nick(42) == "guest42"
    assert validate_nick(default_nick(10**15)) == "guest" + "1" + "0" * 15
    with pytest.raises(ValueError, match="negative"):
        default_nick(-1)


# -- neutralising -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", "hello"),
        ("héllo wörld 你好 🙂", "héllo wörld 你好 🙂"),
        ("a\tb", "a b"),
        ("a\nb\r\nc", "a b  c"),
        ("a\x00b\x07c\x08d", "abcd"),
        ("a\x7fb", "ab"),
        ("a\x85b", "a b"),
        ("a\x80\x81b", "ab"),
        ("a\x9fapc\x9cb", "ab"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b[1;31;40mx", "x"),
        ("\x1b[?25l", ""),
        ("\x1b[2J\x1b[H", ""),
        ("\x1b]0;title\x07text", "text"),
        ("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1b]0;never ends", ""),
        ("\x1b]0;t\x1b[31mx", "x"),
        ("\x1bPdcs\x1b\\ok", "ok"),
        ("\x1b(Bok", "ok"),
        ("\x1bcok", "ok"),
        ("\x1b", ""),
        ("a\x1b", "a"),
        ("\x1b\x1b[31mx", "x"),
        ("\x9b31mx", "x"),
        ("\x9d0;t\x9cx", "x"),
        ("\u202eevil\u202c", "evil"),
        ("\u2066a\u2069", "a"),
        ("a\u2028b", "a b"),
        ("\ud800x", "\ufffdx"),
    ],
)
def test_sanitize(text: str, expected: str) -> None:
    assert sanitize_text(text) == expected


def test_sanitize_truncates() -> None:
    assert sanitize_text("x" * 1000) == "x" * 1000
    assert sanitize_text("x" * 1001) == "x" * 999 + "…"
    assert sanitize_text("abcdef", max_length=4) == "abc…"
    assert sanitize_text("abcdef", max_length=1) == "…"
    assert sanitize_text("\x1b[31mabcd", max_length=4) == "abcd"
    with pytest.raises(ValueError, match="max_length"):
        sanitize_text("x", max_length=0)


NASTY = st.sampled_from(
    [*"\x1b[]\\\x07\x9b\x9c\x9d\x90\t\n\r\x00\x7f\x85P_^X(0;?m ", "\u202e", "\u2066", "a", "é"]
)
TEXT = st.one_of(
    st.text(st.characters(exclude_categories=())),
    st.text(NASTY),
    st.lists(st.one_of(NASTY, st.characters(exclude_categories=()))).map("".join),
)


@given(TEXT, st.integers(min_value=1, max_value=50))
def test_sanitize_properties(text: str, max_length: int) -> None:
    clean = sanitize_text(text, max_length=max_length)
    assert not any(unicodedata.category(c) == "Cc" for c in clean)
    assert not BIDI.intersection(clean)
    assert len(clean) <= max_length
    assert sanitize_text(clean, max_length=max_length) == clean
    clean.encode("utf-8")


@given(TEXT)
def test_sanitize_default_properties(text: str) -> None:
    clean = sanitize_text(text)
    assert is_clean(clean)
    assert len(clean) <= 1000
    assert sanitize_text(clean) == clean


@given(st.text(st.characters(categories=["L", "N", "P", "S", "Zs"])))
def test_sanitize_keeps_printable_text(text: str) -> None:
    assert sanitize_text(text, max_length=10**6) == text


# -- rendering ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (Message("#lobby", "alice", "hi"), b"[#lobby] alice: hi"),
        (Message("#lobby", "alice", "caf\u00e9"), "[#lobby] alice: caf\u00e9".encode()),
        (Action("#lobby", "alice", "waves"), b"[#lobby] * alice waves"),
        (Joined("#lobby", "bob"), b"* bob joined #lobby"),
        (Left("#lobby", "bob"), b"* bob left #lobby"),
        (NickChanged("alice", "al"), b"* alice is now known as al"),
        (Notice("no such nick: carol"), b"-!- no such nick: carol"),
        (ServerClosing("maintenance"), b"-!- server closing: maintenance"),
        (ServerClosing(""), b"-!- server closing"),
        (Direct("alice", "bob", "hi"), b"[dm alice -> bob] hi"),
    ],
)
def test_render(event: Event, line: bytes) -> None:
    assert render_line(event) == line


def test_render_direct_for_each_viewer() -> None:
    dm = Direct("alice", "bob", "hi")
    assert render_line(dm, viewer="bob") == b"[dm from alice] hi"
    assert render_line(dm, viewer="BOB") == b"[dm from alice] hi"
    assert render_line(dm, viewer="alice") == b"[dm to bob] hi"
    assert render_line(dm, viewer="Alice") == b"[dm to bob] hi"
    assert render_line(dm, viewer="carol") == b"[dm alice -> bob] hi"
    assert render_line(Direct("al", "al", "note"), viewer="al") == b"[dm from al] note"


def test_viewer_is_ignored_by_other_events() -> None:
    assert render_line(Message("#lobby", "alice", "hi"), viewer="alice") == b"[#lobby] alice: hi"


def test_render_neutralises_every_field() -> None:
    line = render_line(Message("#lo\nbby", "al\x1b[2Jice", "hi\r\n* bob joined #lobby"))
    assert line == b"[#lo bby] alice: hi  * bob joined #lobby"
    assert render_line(Notice("\u202eevil")) == b"-!- evil"
    assert render_line(Notice("\ud800")) == "-!- \ufffd".encode()


def test_render_rejects_non_events() -> None:
    with pytest.raises(TypeError):
        render_line(Say("hi"))  # type: ignore[arg-type]


def test_help_text() -> None:
    assert HELP_TEXT
    for line in HELP_TEXT:
        assert is_clean(line)
        assert render_line(Notice(line)) == b"-!- " + line.encode()
    text = "\n".join(HELP_TEXT)
    for command in ("/nick", "/join", "/msg", "/me", "/who", "/rooms", "/help", "/quit", "//"):
        assert command in text


# -- encoding events ----------------------------------------------------------------

ANY_TEXT = st.text(st.characters(exclude_categories=()))
EVENTS: st.SearchStrategy[Event] = st.one_of(
    st.builds(Message, ANY_TEXT, ANY_TEXT, ANY_TEXT),
    st.builds(Action, ANY_TEXT, ANY_TEXT, ANY_TEXT),
    st.builds(Direct, ANY_TEXT, ANY_TEXT, ANY_TEXT),
    st.builds(Joined, ANY_TEXT, ANY_TEXT),
    st.builds(Left, ANY_TEXT, ANY_TEXT),
    st.builds(NickChanged, ANY_TEXT, ANY_TEXT),
    st.builds(Notice, ANY_TEXT),
    st.builds(ServerClosing, ANY_TEXT),
)


EVENT_CLASSES = (Message, Action, Direct, Joined, Left, NickChanged, Notice, ServerClosing)


@given(EVENTS)
def test_encode_decode_round_trip(event: Event) -> None:
    data = encode_event(event)
    data.decode("ascii")
    assert b"\n" not in data
    assert decode_event_untrusted(data) == event


@given(EVENTS, st.sampled_from([None, "alice", "bob"]))
def test_render_is_clean_for_any_event(event: Event, viewer: str | None) -> None:
    line = render_line(event, viewer=viewer).decode("utf-8")
    assert is_clean(line)


def test_encoding_format() -> None:
    assert encode_event(Message("#lobby", "alice", "hi", 7, 1796645823123)) == (
        b'{"id":7,"room":"#lobby","sender":"alice","text":"hi","time":1796645823123,'
        b'"type":"message"}'
    )
    assert json.loads(encode_event(NickChanged("a", "b"))) == {
        "type": "nick",
        "old": "a",
        "new": "b",
    }


def test_encode_rejects_bad_events() -> None:
    with pytest.raises(TypeError):
        encode_event(Say("hi"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encode_event(Notice(42))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\xff\xfe",
        b"null",
        b"[]",
        b'"message"',
        b"{}",
        b'{"type": 1}',
        b'{"type": "nope"}',
        b'{"type": "notice"}',
        b'{"type": "notice", "text": 1}',
        b'{"type": "notice", "text": null}',
        b'{"type": "notice", "text": "x", "extra": "y"}',
        b'{"type": "message", "room": "#a", "sender": "b"}',
        b'{"type": ["notice"], "text": "x"}',
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"type": "notice", "text": ' + b"1" * 10_000 + b"}",
        b"NaN",
    ],
)
def test_decode_garbage(data: bytes) -> None:
    with pytest.raises(ChatError):
        decode_event_untrusted(data)


@given(st.binary())
def test_decode_raises_only_chat_error(data: bytes) -> None:
    with contextlib.suppress(ChatError):
        assert isinstance(decode_event_untrusted(data), EVENT_CLASSES)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(JSON, st.sampled_from(["message", "notice", "nick", "closing", "x"]))
def test_decode_raises_only_chat_error_on_json(value: object, tag: str) -> None:
    for obj in (value, {"type": tag, "text": value}, {"type": tag, "old": "a", "new": value}):
        with contextlib.suppress(ChatError):
            assert isinstance(decode_event_untrusted(json.dumps(obj).encode()), EVENT_CLASSES)


# -- the UDP tutorial dialect -------------------------------------------------------


def test_udp_constants() -> None:
    assert HEARTBEAT == b"^hb^"
    assert UDP_QUIT == b"quit"
    assert BYE == b"Bye!"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"^hb^", Heartbeat()),
        (b"^hb^\n", Heartbeat()),
        (b"^hb^\r\n", Heartbeat()),
        (b"^hb^\r\n\r\n", Heartbeat()),
        (b"quit", UdpQuit()),
        (b"quit\n", UdpQuit()),
        (b"quit\r", UdpQuit()),
        (b"QUIT", UdpQuit()),
        (b"Quit\r\n", UdpQuit()),
        (b" quit", UdpQuit()),
        (b"quit ", UdpQuit()),
        (b"\tquit \r\n", UdpQuit()),
        (b"^hb^ ", Heartbeat()),
        (b"^HB^", Heartbeat()),
        (b" ^hb^\n", Heartbeat()),
        (b"quit now", UdpText("quit now")),
        (b"quitquit", UdpText("quitquit")),
        (b"q uit", UdpText("q uit")),
        (b"hello\n", UdpText("hello")),
        (b"hello\r\n", UdpText("hello")),
        (b"multi\nline\n", UdpText("multi line")),
        (b"", UdpText("")),
        (b"\n", UdpText("")),
        (b"\xffx", UdpText("\ufffdx")),
        (b"\x1b[31mred", UdpText("red")),
        (b"y" * 2000, UdpText("y" * 2000)),
        (b"  indented  \n", UdpText("  indented")),
    ],
)
def test_classify_datagram(data: bytes, expected: object) -> None:
    assert classify_datagram_untrusted(data) == expected


@given(st.binary())
def test_classify_datagram_never_raises(data: bytes) -> None:
    result = classify_datagram_untrusted(data)
    if isinstance(result, UdpText):
        assert is_clean(result.text)


@pytest.mark.parametrize(
    ("ip", "port", "text", "line"),
    [
        ("192.0.2.7", 5000, "hi", b"[192.0.2.7:5000] hi"),
        ("127.0.0.1", 1, "", b"[127.0.0.1:1] "),
        ("2001:db8::1", 5000, "hi", b"[[2001:db8::1]:5000] hi"),
        ("::1", 65535, "caf\u00e9", "[[::1]:65535] caf\u00e9".encode()),
        ("10.0.0.1", 9, "a\x1b[2Jb\n", b"[10.0.0.1:9] ab "),
    ],
)
def test_udp_ack_line(ip: str, port: int, text: str, line: bytes) -> None:
    assert udp_ack_line(ip, port, text) == line


def test_address_tokens_are_per_address_and_per_secret() -> None:
    assert REFLECTION_FACTOR == 3
    assert TOKEN_MARK == b"^ok^"
    token = address_token(b"k" * 32, "192.0.2.7", 5000)
    assert token == address_token(b"k" * 32, "192.0.2.7", 5000)
    assert len(token) == 16
    assert token.startswith(b"^ok^")
    others = {
        address_token(b"k" * 32, "192.0.2.7", 5001),
        address_token(b"k" * 32, "192.0.2.8", 5000),
        address_token(b"j" * 32, "192.0.2.7", 5000),
        address_token(b"k" * 32, "2001:db8::1", 5000),
    }
    assert token not in others
    assert len(others) == 4


def test_only_the_token_itself_validates_and_a_client_finds_it_in_the_notice() -> None:
    token = address_token(b"k" * 32, "192.0.2.7", 5000)
    notice = join_notice(token)
    assert notice == b"send " + token + b" to join"
    assert len(notice + b"\n") == 30
    for same in (token, token + b"\n", b" " + token.upper() + b"\r\n"):
        assert is_address_token(same, token)
    for not_it in (notice, notice + b"\n", token[:-1], token + b"x", b"x" + token, b""):
        assert not is_address_token(not_it, token)
    assert notice_token_untrusted(notice) == token
    assert notice_token_untrusted(notice + b"\n") == token
    for junk in (token, b"send ^ok^xyz to join", b"send ^ok^0123456789abc to join", b""):
        assert notice_token_untrusted(junk) is None


@given(st.binary())
def test_notice_token_never_raises(data: bytes) -> None:
    token = notice_token_untrusted(data)
    assert token is None or (token.startswith(TOKEN_MARK) and len(token) == 16)


def test_format_address() -> None:
    assert format_address("192.0.2.7", 80) == "192.0.2.7:80"
    assert format_address("fe80::1%eth0", 80) == "[fe80::1%eth0]:80"
