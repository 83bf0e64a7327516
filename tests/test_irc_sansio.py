"""The IRC protocol's sans-IO core: messages, the reader, text, names, numerics and
registration, bytes pinned exactly. No sockets, no trio."""

from __future__ import annotations

import base64
import ipaddress
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triosock._sansio.chat import nick_key, validate_nick, validate_room
from triosock._sansio.irc import (
    CHANNELLEN,
    MAX_CAP_REQ,
    MAX_PARAMS,
    MAX_SASL_BYTES,
    NICKLEN,
    CapsChanged,
    IrcError,
    IrcMessage,
    IrcReader,
    Malformed,
    Overlong,
    Quit,
    Registered,
    Registration,
    RegistrationItem,
    Reply,
    SaslPlain,
    ctcp,
    escape_tag_value,
    from_irc_nick,
    has_formatting,
    irc_lower,
    is_irc_channel,
    is_irc_nick,
    isupport_tokens,
    numeric,
    parse_ctcp,
    parse_message_untrusted,
    privmsg_room,
    render,
    split_text,
    strip_formatting,
    to_irc_nick,
    unescape_tag_value,
    welcome,
)

# -- render ---------------------------------------------------------------------------


def test_render_puts_a_colon_on_the_last_parameter_only_when_needed() -> None:
    assert render("NICK", "alice") == b"NICK alice\r\n"
    assert render("JOIN", "#lobby", source="a!u@h") == b":a!u@h JOIN #lobby\r\n"
    assert render("MODE", "#r", "+o", "bob") == b"MODE #r +o bob\r\n"
    assert render("PONG", "srv", "tok") == b"PONG srv :tok\r\n"  # its token is text
    assert render("PART", "#r") == b"PART #r\r\n"  # no reason: the channel is no text
    assert render("PART", "#r", "bye") == b"PART #r :bye\r\n"
    assert render("353", "me", "=", "#r", "alice") == b"353 me = #r :alice\r\n"
    assert render("004", "me", "srv", "v1", "i", "bmo", "bo") == b"004 me srv v1 i bmo bo\r\n"
    assert render("PONG", "srv", "two words") == b"PONG srv :two words\r\n"
    assert render("PONG", "srv", "") == b"PONG srv :\r\n"
    assert render("PONG", "srv", ":-)") == b"PONG srv ::-)\r\n"
    assert render("AUTHENTICATE", "+") == b"AUTHENTICATE +\r\n"
    assert render("MOTD") == b"MOTD\r\n"


def test_render_always_puts_a_colon_on_free_text() -> None:
    # Clients that cut a line at " :" must read one-word messages too.
    assert render("PRIVMSG", "#r", "hi", source="a!u@h") == b":a!u@h PRIVMSG #r :hi\r\n"
    assert render("NOTICE", "bob", "x") == b"NOTICE bob :x\r\n"
    assert render("QUIT", "bye") == b"QUIT :bye\r\n"
    assert render("CAP", "*", "ACK", "sasl") == b"CAP * ACK :sasl\r\n"


def test_render_escapes_tag_values() -> None:
    line = render(
        "PRIVMSG",
        "#r",
        "hi",
        source="a!u@h",
        tags=[("time", "2026-01-02T03:04:05.678Z"), ("+x", "a b;c\\d\r\ne"), ("k", "")],
    )
    assert line == (
        b"@time=2026-01-02T03:04:05.678Z;+x=a\\sb\\:c\\\\d\\r\\ne;k :a!u@h PRIVMSG #r :hi\r\n"
    )


def test_render_encodes_utf8_and_a_lone_surrogate_as_a_question_mark() -> None:
    assert render("PRIVMSG", "#r", "héllo ✓") == "PRIVMSG #r :héllo ✓\r\n".encode()
    assert render("PRIVMSG", "#r", "a\ud800b") == b"PRIVMSG #r :a?b\r\n"


@pytest.mark.parametrize(
    ("command", "params", "source", "tags"),
    [
        ("PRIVMSG", ("#r", "a\r\nQUIT"), None, ()),  # an injected second line
        ("PRIVMSG", ("#r", "a\nb"), None, ()),
        ("PRIVMSG", ("#r", "a\x00b"), None, ()),
        ("PRIVMSG", ("#r\r", "x"), None, ()),
        ("PRIVMSG", ("", "x"), None, ()),  # only the last may be empty
        ("PRIVMSG", ("#a b", "x"), None, ()),  # ... contain a space
        ("PRIVMSG", (":#r", "x"), None, ()),  # ... or begin with ":"
        ("", ("x",), None, ()),
        ("PRIV MSG", ("x",), None, ()),
        ("PRIVMSG", ("#r", "x"), "", ()),
        ("PRIVMSG", ("#r", "x"), "a b", ()),
        ("PRIVMSG", ("#r", "x"), "a\nb", ()),
        ("PRIVMSG", ("#r", "x"), None, (("", "v"),)),
        ("PRIVMSG", ("#r", "x"), None, (("a=b", "v"),)),
        ("PRIVMSG", ("#r", "x"), None, (("k", "a\x00"),)),
    ],
)
def test_render_refuses_what_would_break_the_line(
    command: str, params: tuple[str, ...], source: str | None, tags: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 -- each case has its own reason
        render(command, *params, source=source, tags=tags)


# -- parse ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"foo bar baz asdf", IrcMessage("FOO", ("bar", "baz", "asdf"))),
        (b":coolguy foo bar :asdf quux", IrcMessage("FOO", ("bar", "asdf quux"), (), "coolguy")),
        (b"foo bar baz :", IrcMessage("FOO", ("bar", "baz", ""))),
        (b"foo bar baz ::asdf", IrcMessage("FOO", ("bar", "baz", ":asdf"))),
        (b":src PRIVMSG bar :lol :) ", IrcMessage("PRIVMSG", ("bar", "lol :) "), (), "src")),
        (b":src JOIN :#chan", IrcMessage("JOIN", ("#chan",), (), "src")),
        (b":src AWAY ", IrcMessage("AWAY", (), (), "src")),
        (b":cool\tguy foo bar", IrcMessage("FOO", ("bar",), (), "cool\tguy")),
        (b":s 432  #momo :Erroneous", IrcMessage("432", ("#momo", "Erroneous"), (), "s")),
        (b":s MODE #foo +o foobar  ", IrcMessage("MODE", ("#foo", "+o", "foobar"), (), "s")),
        (b"privmsg #r hi", IrcMessage("PRIVMSG", ("#r", "hi"))),
        (b"  NICK   alice  ", IrcMessage("NICK", ("alice",))),
        (
            b"@a=b;c=32;k;rt=ql7 foo",
            IrcMessage("FOO", (), (("a", "b"), ("c", "32"), ("k", ""), ("rt", "ql7"))),
        ),
        (
            b"@a=b\\\\and\\nk;c=72\\s45;d=gh\\:764 foo",
            IrcMessage("FOO", (), (("a", "b\\and\nk"), ("c", "72 45"), ("d", "gh;764"))),
        ),
        (b"@tag1=value\\\\ntest COMMAND", IrcMessage("COMMAND", (), (("tag1", "value\\ntest"),))),
        (b"@tag1=value\\1 COMMAND", IrcMessage("COMMAND", (), (("tag1", "value1"),))),
        (b"@tag1=value1\\ COMMAND", IrcMessage("COMMAND", (), (("tag1", "value1"),))),
        (
            b"@t1=1;t2=3;t1=5;vendor.example/t2=8 C",
            IrcMessage("C", (), (("t2", "3"), ("t1", "5"), ("vendor.example/t2", "8"))),
        ),
        (
            b"@+example.com/foo=bar;+icon=x :irc.example.com NOTICE #c :m",
            IrcMessage(
                "NOTICE",
                ("#c", "m"),
                (("+example.com/foo", "bar"), ("+icon", "x")),
                "irc.example.com",
            ),
        ),
        (b"@a;;b; X", IrcMessage("X", (), (("a", ""), ("b", "")))),
        (b"PRIVMSG #r :caf\xe9", IrcMessage("PRIVMSG", ("#r", "caf\ufffd"))),
        (
            b"CMD " + b" ".join(b"p%d" % i for i in range(15)),
            IrcMessage("CMD", tuple(f"p{i}" for i in range(15))),
        ),
    ],
)
def test_parse(line: bytes, expected: IrcMessage) -> None:
    assert parse_message_untrusted(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"", "no command"),
        (b"   ", "no command"),
        (b"NICK a\x00b", "a NUL byte inside the message"),
        (b"NICK a\rb", "a CR or LF inside the message"),
        (b"NICK a\nb", "a CR or LF inside the message"),
        (b"@a=b", "tags without a command"),
        (b"@ NICK a", "an empty tag section"),
        (b"@; NICK a", "an empty tag section"),
        (b"@=v NICK a", "bad tag key ''"),
        (b"@a b=c NICK", "bad command 'b=c'"),
        (b"@k_y=1 NICK a", "bad tag key 'k_y'"),
        (b"@/k=1 NICK a", "bad tag key '/k'"),
        (b":src", "a source without a command"),
        (b":src   ", "a source without a command"),
        (b": NICK a", "an empty source"),
        (b"12 a", "bad command '12'"),
        (b"1234 a", "bad command '1234'"),
        (b"PRIV-MSG a", "bad command 'PRIV-MSG'"),
        (b"NICK\xe9 a", "bad command 'NICK\ufffd'"),
        (b"CMD " + b" ".join(b"p%d" % i for i in range(16)), "16 parameters: at most 15"),
        (b"CMD " + b" ".join(b"p%d" % i for i in range(15)) + b" :t", "16 parameters: at most 15"),
    ],
)
def test_parse_refuses(line: bytes, reason: str) -> None:
    with pytest.raises(IrcError) as caught:
        parse_message_untrusted(line)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


def test_a_message_knows_its_tags() -> None:
    msg = parse_message_untrusted(b"@time=x;bot :a PRIVMSG #r :hi")
    assert msg.tag("time") == "x"
    assert msg.tag("bot") == ""
    assert msg.tag("msgid") is None


# codec="utf-8": no lone surrogates, which render sends as "?".
_NO_LINE_END = st.characters(codec="utf-8", blacklist_characters="\r\n\x00")
_MIDDLE = st.text(
    st.characters(codec="utf-8", blacklist_characters=" \r\n\x00"), min_size=1
).filter(lambda p: p[0] != ":")
_TAG_KEY = st.from_regex(r"\+?([a-z0-9]+(\.[a-z0-9]+)*/)?[A-Za-z0-9\-]{1,8}", fullmatch=True)
_TAG_VALUE = st.text(st.characters(codec="utf-8", blacklist_characters="\x00"))


@st.composite
def _messages(draw: st.DrawFn) -> IrcMessage:
    command = draw(st.from_regex(r"[A-Z]{1,10}|[0-9]{3}", fullmatch=True))
    middle = draw(st.lists(_MIDDLE, max_size=MAX_PARAMS - 1))
    last = draw(st.lists(st.text(_NO_LINE_END), max_size=1))
    tags = draw(st.dictionaries(_TAG_KEY, _TAG_VALUE, max_size=4))
    source = draw(st.none() | _MIDDLE)
    return IrcMessage(command, (*middle, *last), tuple(tags.items()), source)


@given(_messages())
def test_render_and_parse_round_trip(msg: IrcMessage) -> None:
    line = render(msg.command, *msg.params, source=msg.source, tags=msg.tags)
    assert line.endswith(b"\r\n")
    assert line.count(b"\n") == 1
    assert parse_message_untrusted(line[:-2]) == msg


@given(_TAG_VALUE)
def test_tag_values_escape_and_unescape(value: str) -> None:
    escaped = escape_tag_value(value)
    assert not set(escaped) & set("; \r\n")
    assert unescape_tag_value(escaped) == value


# -- the reader -----------------------------------------------------------------------


def _message(line: bytes) -> IrcMessage:
    return parse_message_untrusted(line)


def test_the_reader_takes_split_feeds_bare_lf_and_skips_empty_lines() -> None:
    reader = IrcReader()
    data = b"NICK alice\r\n\r\n\nUSER a 0 * :A\nPING :x y\r\n"
    items = [item for byte in data for item in reader.feed(bytes([byte]))]
    assert items == [
        _message(b"NICK alice"),
        _message(b"USER a 0 * :A"),
        _message(b"PING :x y"),
    ]
    assert reader.buffered == 0
    assert reader.feed(data) == items  # the same whole


def test_a_lone_cr_is_no_line_end() -> None:
    reader = IrcReader()
    assert reader.feed(b"NICK a\rUSER b\r\nPING x\r\r\n") == [
        Malformed("a CR or LF inside the message"),
        Malformed("a CR or LF inside the message"),
    ]
    assert reader.feed(b"NICK a\r") == []
    assert reader.feed(b"\n") == [_message(b"NICK a")]


def test_a_malformed_line_is_told_and_the_next_one_read() -> None:
    reader = IrcReader()
    assert reader.feed(b"@=x NICK a\r\n:src\r\nNICK b\r\n") == [
        Malformed("bad tag key ''"),
        Malformed("a source without a command"),
        _message(b"NICK b"),
    ]


def test_512_bytes_with_crlf_are_a_message_and_513_are_refused_once() -> None:
    reader = IrcReader()
    fits = b"PRIVMSG #r :" + b"x" * (510 - 12)
    assert len(fits + b"\r\n") == 512
    too_long = fits + b"y"
    assert reader.feed(fits + b"\r\n") == [_message(fits)]
    assert reader.feed(too_long + b"\r\nNICK a\r\n") == [Overlong(511, False), _message(b"NICK a")]
    # A bare LF counts as the two bytes of CR LF: the limit is on the content.
    assert reader.feed(fits + b"\n") == [_message(fits)]
    assert reader.feed(too_long + b"\n") == [Overlong(511, False)]


def test_a_line_over_the_limit_is_refused_as_soon_as_it_is_known_and_then_skipped() -> None:
    reader = IrcReader()
    assert reader.feed(b"PRIVMSG #r :" + b"x" * 400) == []
    assert reader.feed(b"x" * 99) == []  # 511 bytes: the 512th may still be a CR
    assert reader.feed(b"x") == [Overlong(None, False)]
    assert reader.discarding
    assert reader.buffered == 0
    assert reader.feed(b"x" * 5000) == []
    assert reader.feed(b"xx\r\nNICK a\r\n") == [_message(b"NICK a")]  # skipping ended
    # The last CR of a line at the limit is waited for: it may be its CR LF.
    assert reader.feed(b"PRIVMSG #r :" + b"x" * 498 + b"\r") == []
    assert reader.feed(b"\n") == [_message(b"PRIVMSG #r :" + b"x" * 498)]


def test_the_tag_section_has_its_own_limit() -> None:
    reader = IrcReader()
    body = b"PRIVMSG #r :" + b"x" * (510 - 12)
    tags = b"@a=" + b"v" * (8191 - 4) + b" "
    assert len(tags) == 8191
    msg = IrcMessage("PRIVMSG", ("#r", "x" * 498), (("a", "v" * 8187),))
    assert reader.feed(tags + body + b"\r\n") == [msg]
    longer = b"@a=" + b"v" * (8191 - 3) + b" "
    assert reader.feed(longer + b"NICK a\r\n") == [Overlong(8198, True)]
    assert reader.feed(longer[:-1]) == [Overlong(None, True)]
    assert reader.feed(b" NICK a\r\nNICK b\r\n") == [_message(b"NICK b")]
    assert reader.feed(tags + body + b"y\r\n") == [Overlong(8191 + 511, False)]


@pytest.mark.parametrize("start", [b"PRIVMSG #r :", b"@", b"@a=b PRIVMSG #r :"])
def test_a_mebibyte_without_lf_is_never_held(start: bytes) -> None:
    reader = IrcReader()
    data = start + b"z" * (1 << 20)
    items = []
    for offset in range(0, len(data), 4096):
        items += reader.feed(data[offset : offset + 4096])
        assert reader.buffered < 9 * 1024
    assert len(items) == 1
    assert isinstance(items[0], Overlong)
    assert items[0].size is None
    assert reader.feed(b"z" * (1 << 20) + b"\r\nNICK a\r\n") == [_message(b"NICK a")]


def test_a_mebibyte_in_one_feed_is_not_copied_into_the_buffer() -> None:
    reader = IrcReader()
    assert reader.feed(b"PRIVMSG #r :" + b"z" * (1 << 20)) == [Overlong(None, False)]
    assert reader.buffered == 0
    assert reader.feed(b"\n@" + b"z" * (1 << 20) + b"\nNICK a\n") == [
        Overlong(1 << 20 | 1, True),
        _message(b"NICK a"),
    ]


def test_the_end_of_the_stream_inside_a_line() -> None:
    reader = IrcReader()
    assert reader.feed(b"NICK a\r\nQUIT :bye") == [_message(b"NICK a")]
    assert reader.feed_eof() == [Malformed("the stream ended inside a message")]
    assert reader.buffered == 0
    assert reader.feed_eof() == []
    assert reader.feed(b"\r") == []
    assert reader.feed_eof() == []  # only a CR: nothing was cut short


def test_reader_limits_must_be_sane() -> None:
    with pytest.raises(ValueError, match="max_line"):
        IrcReader(max_line=2)
    with pytest.raises(ValueError, match="max_tags"):
        IrcReader(max_tags=0)


# -- text -----------------------------------------------------------------------------


def test_split_text_prefers_a_space_in_the_last_quarter() -> None:
    assert split_text("", 10) == []
    assert split_text("short", 10) == ["short"]
    assert split_text("hello world again", 12) == ["hello world ", "again"]
    # No space in the last quarter: cut at the last character that fits.
    assert split_text("a bcdefghijklmnop", 8) == ["a bcdefg", "hijklmno", "p"]


def test_split_text_never_splits_a_character() -> None:
    text = "é" * 5 + "✓" * 3 + "😀" * 2  # 2, 3 and 4 bytes each
    pieces = split_text(text, 7)
    assert pieces == ["ééé", "éé✓", "✓✓", "😀", "😀"]
    assert all(len(piece.encode()) <= 7 for piece in pieces)
    assert "".join(pieces) == text


def test_split_text_needs_room_for_one_character() -> None:
    assert split_text("😀😀", 4) == ["😀", "😀"]
    with pytest.raises(ValueError, match="at least 4"):
        split_text("abc", 3)


@given(st.text(), st.integers(min_value=4, max_value=600))
def test_split_text_pieces_fit_and_give_the_text_back(text: str, room: int) -> None:
    pieces = split_text(text, room)
    assert "".join(pieces) == text
    assert all(piece for piece in pieces)
    assert all(len(piece.encode("utf-8", "surrogatepass")) <= room for piece in pieces)
    for piece, after in itertools.pairwise(pieces):
        size = len(piece.encode("utf-8", "surrogatepass"))
        next_size = len(after[0].encode("utf-8", "surrogatepass"))
        # A piece is cut after a space, or is as long as it can be.
        assert piece.endswith(" ") or size + next_size > room


def test_privmsg_room_and_split_text_fill_a_512_byte_line() -> None:
    source, target = "alice!chat@triosock", "#lobby"
    room = privmsg_room(source, target)
    assert room == 512 - len(b":alice!chat@triosock PRIVMSG #lobby :\r\n")
    assert privmsg_room(source, target, "NOTICE", tags_len=10) == room + 1 - 10
    text = "ünïcödé wörds " * 100
    lines = [render("PRIVMSG", target, p, source=source) for p in split_text(text, room)]
    assert all(len(line) <= 512 for line in lines)
    assert max(len(line) for line in lines) > 500


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x01ACTION waves\x01", ("ACTION", "waves")),
        ("\x01ACTION waves", ("ACTION", "waves")),  # no closing \x01: tolerated
        ("\x01action waves hello\x01", ("ACTION", "waves hello")),
        ("\x01VERSION\x01", ("VERSION", "")),
        ("\x01PING 1473523796 918320\x01", ("PING", "1473523796 918320")),
        ("\x01ACTION\x01", ("ACTION", "")),
        ("hello", None),
        ("", None),
        ("\x01", None),
        ("\x01\x01", None),
        ("\x01 x\x01", None),
    ],
)
def test_parse_ctcp(text: str, expected: tuple[str, str] | None) -> None:
    assert parse_ctcp(text) == expected


def test_ctcp() -> None:
    assert ctcp("ACTION", "waves") == "\x01ACTION waves\x01"
    assert ctcp("VERSION") == "\x01VERSION\x01"
    assert parse_ctcp(ctcp("PING", "1 2")) == ("PING", "1 2")
    for command, arg in [("", "x"), ("A B", ""), ("A", "x\x01"), ("A", "x\ny"), ("A\x00", "")]:
        with pytest.raises(ValueError):  # noqa: PT011
            ctcp(command, arg)


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("\x02bold\x02 \x1ditalic\x1d \x1funder\x1f \x1estrike\x1e \x11mono\x11", None),
        ("\x0304red\x03 \x034,12both\x03 \x0399def", "red both def"),
        ("\x033,", ","),  # a comma after a colour is text
        ("\x0312,text", ",text"),
        ("\x03,5", ",5"),  # no foreground: the comma and digits are text
        ("\x03123", "3"),  # two digits at most
        ("\x0312,345", "5"),
        ("\x04ff00ff,000000hex\x04 \x04ABCDEFx", "hex x"),
        ("\x04ff00fx", "ff00fx"),  # not six hex digits: no colour
        ("\x16rev\x0f reset", "rev reset"),
        ("plain text", "plain text"),
        ("\x07bell stays", "\x07bell stays"),
    ],
)
def test_strip_formatting(text: str, plain: str | None) -> None:
    if plain is None:
        plain = "bold italic under strike mono"
    assert strip_formatting(text) == plain
    assert has_formatting(text) == (text != plain)
    assert not has_formatting(strip_formatting(text))


# -- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chat", "irc"),
    [
        ("alice", "alice"),
        ("guest7", "guest7"),
        ("a_b-c", "a_b-c"),
        ("john.doe", "`john_doe"),
        ("j_doe.x", "`j|doe_x"),
        ("a-b.c", "`a^b_c"),
        ("127.0.0.1:5000", "`127_0_0_1-5000"),
        ("[2001:db8::1]:5000", "`[2001-db8--1]-5000"),
        ("[fe80::1%eth0]:53", "`[fe80--1\\eth0]-53"),
        ("`x", "``x"),
        ("a b", "`a{20}b"),
        ("{|}^\\", "{|}^\\"),
        ("x.{|}^\\`[]", "`x_{7b}{7c}{7d}{5e}{5c}`[]"),
        ("é", "`{e9}"),
        ("", "`"),
    ],
)
def test_nick_mapping_examples(chat: str, irc: str) -> None:
    assert to_irc_nick(chat) == irc
    assert from_irc_nick(irc) == chat
    assert nick_key(from_irc_nick(irc_lower(irc))) == nick_key(chat)


@pytest.mark.parametrize(
    "irc",
    [
        "alice",
        "john|away",
        "[bot]",
        "_x_",
        "`abc",
        "`{61}",
        "`{zz}",
        "`{",
        "`{}",
        "`a}",
        "`{110000}",
        "`a_{1234567}",
    ],
)
def test_a_nick_that_is_no_mapped_form_is_itself(irc: str) -> None:
    assert from_irc_nick(irc) == irc


def test_hex_digits_may_come_in_either_case() -> None:
    assert from_irc_nick("`a_{7B}") == "a.{"
    assert from_irc_nick("`JOHN_DOE") == "JOHN.DOE"


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("alice", True),
        ("[bot]", True),
        ("`x", True),
        ("a-1", True),
        ("x" * NICKLEN, True),
        ("x" * (NICKLEN + 1), False),
        ("1abc", False),
        ("-abc", False),
        ("a.b", False),
        ("a b", False),
        ("", False),
        ("é", False),
        ("#room", False),
    ],
)
def test_is_irc_nick(name: str, valid: bool) -> None:
    assert is_irc_nick(name) is valid


_CHAT_NICKS = st.from_regex(r"[A-Za-z][A-Za-z0-9_.\-]{0,23}", fullmatch=True)
_SCOPES = st.from_regex(r"[A-Za-z0-9._\-]{1,15}", fullmatch=True)


@st.composite
def _udp_names(draw: st.DrawFn) -> str:
    port = draw(st.integers(min_value=0, max_value=65535))
    address = draw(st.ip_addresses())
    if isinstance(address, ipaddress.IPv4Address):
        return f"{address}:{port}"
    scope = draw(st.none() | _SCOPES)
    host = f"{address.exploded if draw(st.booleans()) else address}"
    return f"[{host}%{scope}]:{port}" if scope else f"[{host}]:{port}"


_CHAT_NAMES = _CHAT_NICKS | _udp_names()


@given(_CHAT_NAMES)
def test_every_chat_name_maps_to_an_irc_nick_and_back(name: str) -> None:
    irc = to_irc_nick(name)
    assert is_irc_nick(irc)
    assert from_irc_nick(irc) == name
    assert from_irc_nick(irc_lower(irc)).casefold() == name.casefold()


@given(_CHAT_NICKS)
def test_every_valid_chat_nick_fits_the_usual_nicklen_and_is_itself_when_it_can_be(
    name: str,
) -> None:
    assert validate_nick(name) == name
    irc = to_irc_nick(name)
    assert len(irc) <= 30
    assert (irc == name) == ("." not in name)


@given(_CHAT_NAMES, _CHAT_NAMES)
def test_different_chat_names_never_meet_as_irc_nicks(a: str, b: str) -> None:
    if nick_key(a) != nick_key(b):
        assert irc_lower(to_irc_nick(a)) != irc_lower(to_irc_nick(b))


@given(st.text(), st.text())
def test_the_mapping_is_injective_and_reversible_on_any_text(a: str, b: str) -> None:
    assert from_irc_nick(to_irc_nick(a)) == a
    if a != b:
        assert to_irc_nick(a) != to_irc_nick(b)


@given(st.from_regex(r"#?[A-Za-z0-9_.\-]{1,32}", fullmatch=True))
def test_every_chat_room_is_an_irc_channel(name: str) -> None:
    room = validate_room(name)
    assert is_irc_channel(room)
    assert len(room) <= CHANNELLEN
    assert irc_lower(room) == room


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("#lobby", True),
        ("#a.b-c_d", True),
        ("#" + "x" * (CHANNELLEN - 1), True),
        ("#" + "x" * CHANNELLEN, False),
        ("#", False),
        ("lobby", False),
        ("&local", False),
        ("#a b", False),
        ("#a,b", False),
        ("#a:b", False),
        ("#a\x07", False),
    ],
)
def test_is_irc_channel(name: str, valid: bool) -> None:
    assert is_irc_channel(name) is valid


# -- numerics and the welcome ---------------------------------------------------------


def test_numeric() -> None:
    assert numeric("433", "*", "bob", "Nickname is already in use", server="irc.example") == (
        b":irc.example 433 * bob :Nickname is already in use\r\n"
    )
    assert numeric("ERR_NOMOTD", "bob", "MOTD File is missing", server="s") == (
        b":s 422 bob :MOTD File is missing\r\n"
    )
    with pytest.raises(ValueError, match="not a numeric"):
        numeric("RPL_NOPE", "bob", server="s")
    with pytest.raises(ValueError, match="not a numeric"):
        numeric("42", "bob", server="s")


def test_isupport_tokens() -> None:
    assert isupport_tokens(CASEMAPPING="ascii", NICKLEN=64, SAFELIST=None, EXCEPTS="") == [
        "CASEMAPPING=ascii",
        "NICKLEN=64",
        "SAFELIST",
        "EXCEPTS",
    ]
    assert isupport_tokens(NETWORK="my net\\x=y") == ["NETWORK=my\\x20net\\x5Cx\\x3Dy"]
    with pytest.raises(ValueError, match="upper-case"):
        isupport_tokens(nicklen=3)


def test_welcome() -> None:
    isupport = {"CASEMAPPING": "ascii", "CHANTYPES": "#", "NICKLEN": "64", "SAFELIST": None}
    assert welcome("irc.example", "alice", "TrioNet", "0.1", isupport, "today") == [
        b":irc.example 001 alice :Welcome to the TrioNet Network, alice\r\n",
        b":irc.example 002 alice :Your host is irc.example, running version 0.1\r\n",
        b":irc.example 003 alice :This server was created today\r\n",
        b":irc.example 004 alice irc.example 0.1 i bmnot bo\r\n",
        b":irc.example 005 alice CASEMAPPING=ascii CHANTYPES=# NICKLEN=64 SAFELIST"
        b" :are supported by this server\r\n",
    ]


def test_welcome_splits_005_by_count_and_by_length() -> None:
    many = {f"T{i}": None for i in range(30)}
    lines = welcome("s", "n", "net", "1", many, "now")[4:]
    assert [len(parse_message_untrusted(line[:-2]).params) - 2 for line in lines] == [13, 13, 4]
    long = {f"L{i}": "v" * 100 for i in range(10)}
    lines = welcome("s", "n", "net", "1", long, "now")[4:]
    assert all(len(line) <= 512 for line in lines)
    assert [len(parse_message_untrusted(line[:-2]).params) - 2 for line in lines] == [4, 4, 2]
    for line in lines:
        assert line.endswith(b" :are supported by this server\r\n")
    with pytest.raises(ValueError, match="cannot fit"):
        welcome("s", "n", "net", "1", {"X": "v" * 600}, "now")


# -- registration ---------------------------------------------------------------------

SERVER = "irc.example"
CAPS: dict[str, str | None] = {
    "server-time": None,
    "message-tags": None,
    "echo-message": None,
    "away-notify": None,
    "batch": None,
    "sasl": "PLAIN",
}


def _send(reg: Registration, line: bytes) -> list[RegistrationItem]:
    return reg.receive(parse_message_untrusted(line))


def _lines(items: Sequence[RegistrationItem]) -> list[bytes]:
    assert all(isinstance(item, Reply) for item in items), items
    return [item.data for item in items if isinstance(item, Reply)]


def _plain(authzid: str, authcid: str, password: str) -> bytes:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode())


def test_a_whole_registration_with_cap_302_and_sasl() -> None:
    reg = Registration(SERVER, CAPS)
    assert _lines(_send(reg, b"CAP LS 302")) == [
        b":irc.example CAP * LS"
        b" :server-time message-tags echo-message away-notify batch sasl=PLAIN\r\n"
    ]
    assert _lines(_send(reg, b"CAP REQ :server-time echo-message sasl")) == [
        b":irc.example CAP * ACK :server-time echo-message sasl\r\n"
    ]
    assert _send(reg, b"NICK alice") == []
    assert _send(reg, b"USER alice 0 * :Alice Liddell") == []  # waits for CAP END
    assert _lines(_send(reg, b"AUTHENTICATE PLAIN")) == [b"AUTHENTICATE +\r\n"]
    assert _send(reg, b"AUTHENTICATE " + _plain("", "alice", "sesame")) == [
        SaslPlain("", "alice", "sesame")
    ]
    assert _lines(reg.sasl_result(True, "alice", "alice")) == [
        b":irc.example 900 alice alice!alice@irc.example alice :You are now logged in as alice\r\n",
        b":irc.example 903 alice :SASL authentication successful\r\n",
    ]
    assert _send(reg, b"CAP END") == [
        Registered(
            "alice",
            "alice",
            "Alice Liddell",
            frozenset({"server-time", "echo-message", "sasl"}),
            "alice",
        )
    ]
    assert reg.registered
    assert reg.account == "alice"
    assert reg.cap_version == 302
    assert reg.lines == 7


def test_the_password_is_not_in_repr() -> None:
    plain = SaslPlain("", "alice", "sesame")
    assert "sesame" not in repr(plain)
    assert plain.password == "sesame"


def test_no_cap_registers_at_once() -> None:
    reg = Registration(SERVER, CAPS)
    assert _lines(_send(reg, b"PASS whatever")) == []  # ignored: accounts log in by SASL
    assert _send(reg, b"USER bob 0 * :Bob") == []
    assert _send(reg, b"NICK bob") == [Registered("bob", "bob", "Bob", frozenset())]


def test_cap_ls_without_302_has_no_values_and_cap_list_tells_the_enabled() -> None:
    reg = Registration(SERVER, {"batch": None, "sasl": "PLAIN"})
    assert _lines(_send(reg, b"CAP LS")) == [b":irc.example CAP * LS :batch sasl\r\n"]
    assert _lines(_send(reg, b"CAP LIST")) == [b":irc.example CAP * LIST :\r\n"]
    assert _lines(_send(reg, b"NICK bob")) == []
    assert _lines(_send(reg, b"cap req batch")) == [b":irc.example CAP bob ACK :batch\r\n"]
    assert _lines(_send(reg, b"CAP LIST")) == [b":irc.example CAP bob LIST :batch\r\n"]
    assert _lines(_send(reg, b"CAP REQ :-batch")) == [b":irc.example CAP bob ACK :-batch\r\n"]
    assert reg.caps == frozenset()
    assert reg.cap_version == 0


def test_cap_req_is_all_or_nothing() -> None:
    reg = Registration(SERVER, CAPS)
    assert _lines(_send(reg, b"CAP REQ :server-time bogus")) == [
        b":irc.example CAP * NAK :server-time bogus\r\n"
    ]
    assert reg.caps == frozenset()
    assert _lines(_send(reg, b"CAP REQ :sasl=PLAIN")) == [b":irc.example CAP * NAK :sasl=PLAIN\r\n"]
    assert _lines(_send(reg, b"CAP REQ :")) == [b":irc.example CAP * NAK :\r\n"]
    too_many = " ".join(["batch"] * (MAX_CAP_REQ + 1)).encode()
    assert _lines(_send(reg, b"CAP REQ :" + too_many))[0].startswith(b":irc.example CAP * NAK")
    assert reg.caps == frozenset()
    # A blind REQ also holds registration until CAP END.
    assert _send(reg, b"NICK bob") == []
    assert _send(reg, b"USER bob 0 * :Bob") == []
    assert _send(reg, b"CAP END") == [Registered("bob", "bob", "Bob", frozenset())]


def test_a_long_cap_ls_302_is_split_with_continuation_stars() -> None:
    caps: dict[str, str | None] = {f"example.org/cap-number-{i}": "v" * 20 for i in range(40)}
    reg = Registration(SERVER, caps)
    lines = _lines(_send(reg, b"CAP LS 302"))
    assert len(lines) > 1
    assert all(len(line) <= 512 for line in lines)
    params = [parse_message_untrusted(line[:-2]).params for line in lines]
    assert all(p[:3] == ("*", "LS", "*") for p in params[:-1])
    assert len(params[-1]) == 3
    assert " ".join(p[-1] for p in params).split() == [f"{k}={v}" for k, v in caps.items()]
    # Without 302 one line, names only (no client that old asks a server this big).
    assert len(_lines(_send(reg, b"CAP LS"))) == 1


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"CAP FOO", b":irc.example 410 * FOO :Invalid CAP command\r\n"),
        (b"CAP", b":irc.example 461 * CAP :Not enough parameters\r\n"),
        (b"JOIN #lobby", b":irc.example 451 * :You have not registered\r\n"),
        (b"PRIVMSG #lobby :hi", b":irc.example 451 * :You have not registered\r\n"),
        (b"USER bob 0 *", b":irc.example 461 * USER :Not enough parameters\r\n"),
        (b"USER :", b":irc.example 461 * USER :Not enough parameters\r\n"),
        (b"NICK", b":irc.example 431 * :No nickname given\r\n"),
        (b"NICK :", b":irc.example 431 * :No nickname given\r\n"),
        (b"NICK 1bob", b":irc.example 432 * 1bob :Erroneous nickname\r\n"),
        (b"NICK :a b", b":irc.example 432 * * :Erroneous nickname\r\n"),
        (b"NICK john.doe", b":irc.example 432 * john.doe :Erroneous nickname\r\n"),
        (b"PING :tok 1", b":irc.example PONG irc.example :tok 1\r\n"),
        (b"PING", b":irc.example 461 * PING :Not enough parameters\r\n"),
    ],
)
def test_the_answers_before_registration(line: bytes, reply: bytes) -> None:
    reg = Registration(SERVER, CAPS)
    assert _lines(_send(reg, line)) == [reply]
    assert not reg.registered


def test_quit_and_pong_before_registration() -> None:
    reg = Registration(SERVER, CAPS)
    assert _send(reg, b"PONG :x") == []
    assert _send(reg, b"QUIT :gone fishing") == [Quit("gone fishing")]
    assert _send(reg, b"QUIT") == [Quit("")]


def test_a_taken_nick_reopens_registration() -> None:
    reg = Registration(SERVER, CAPS)
    _send(reg, b"USER bob 0 * :Bob")
    assert _send(reg, b"NICK bob") == [Registered("bob", "bob", "Bob", frozenset())]
    assert _lines(reg.nick_taken("bob")) == [
        b":irc.example 433 * bob :Nickname is already in use\r\n"
    ]
    assert not reg.registered
    assert _send(reg, b"NICK bob_") == [Registered("bob_", "bob", "Bob", frozenset())]
    assert _lines(reg.nick_erroneous("bob_")) == [
        b":irc.example 432 * bob_ :Erroneous nickname\r\n"
    ]
    assert _send(reg, b"NICK bobby") == [Registered("bobby", "bob", "Bob", frozenset())]


def _sasl_ready() -> Registration:
    reg = Registration(SERVER, CAPS)
    _send(reg, b"CAP LS 302")
    _send(reg, b"CAP REQ sasl")
    _send(reg, b"NICK alice")
    _send(reg, b"USER alice 0 * :Alice")
    return reg


def test_sasl_abort_and_retry() -> None:
    reg = _sasl_ready()
    assert _lines(_send(reg, b"AUTHENTICATE PLAIN")) == [b"AUTHENTICATE +\r\n"]
    assert _lines(_send(reg, b"AUTHENTICATE *")) == [
        b":irc.example 906 alice :SASL authentication aborted\r\n"
    ]
    assert _lines(_send(reg, b"AUTHENTICATE plain")) == [b"AUTHENTICATE +\r\n"]
    assert _send(reg, b"AUTHENTICATE " + _plain("", "alice", "pw")) == [
        SaslPlain("", "alice", "pw")
    ]


def test_sasl_bad_base64_and_bad_payloads_fail() -> None:
    reg = _sasl_ready()
    fail = b":irc.example 904 alice :SASL authentication failed\r\n"
    for payload in [
        b"!!!not-base64!!!",
        b"YWxpY2U",  # no padding
        base64.b64encode(b"alice\0pw"),  # two parts
        base64.b64encode(b"\0\0pw"),  # no authcid
        base64.b64encode(b"\0alice\0\xff"),  # not UTF-8
    ]:
        assert _lines(_send(reg, b"AUTHENTICATE PLAIN")) == [b"AUTHENTICATE +\r\n"]
        assert _lines(_send(reg, b"AUTHENTICATE " + payload)) == [fail]


def test_sasl_other_mechanisms_are_listed_and_refused() -> None:
    reg = _sasl_ready()
    assert _lines(_send(reg, b"AUTHENTICATE EXTERNAL")) == [
        b":irc.example 908 alice PLAIN :are available SASL mechanisms\r\n",
        b":irc.example 904 alice :SASL authentication failed\r\n",
    ]


def test_sasl_chunks_of_400_bytes() -> None:
    reg = _sasl_ready()
    _send(reg, b"AUTHENTICATE PLAIN")
    password = "p" * 590
    payload = _plain("zid", "alice", password)
    chunks = [payload[i : i + 400] for i in range(0, len(payload), 400)]
    assert [len(c) for c in chunks] == [400, 400]
    assert _send(reg, b"AUTHENTICATE " + chunks[0]) == []
    assert _send(reg, b"AUTHENTICATE " + chunks[1]) == []  # exactly 400: "+" follows
    assert _send(reg, b"AUTHENTICATE +") == [SaslPlain("zid", "alice", password)]
    assert _lines(reg.sasl_result(False, None, "alice")) == [
        b":irc.example 904 alice :SASL authentication failed\r\n"
    ]
    # An empty response is "+" alone: no authcid, so it fails.
    _send(reg, b"AUTHENTICATE PLAIN")
    assert _lines(_send(reg, b"AUTHENTICATE +")) == [
        b":irc.example 904 alice :SASL authentication failed\r\n"
    ]


def test_sasl_bounds() -> None:
    reg = _sasl_ready()
    _send(reg, b"AUTHENTICATE PLAIN")
    assert _lines(_send(reg, b"AUTHENTICATE " + b"A" * 401)) == [
        b":irc.example 905 alice :SASL message too long\r\n"
    ]
    _send(reg, b"AUTHENTICATE PLAIN")
    for _ in range(MAX_SASL_BYTES // 400):
        assert _send(reg, b"AUTHENTICATE " + b"A" * 400) == []
    assert _lines(_send(reg, b"AUTHENTICATE " + b"A" * 400)) == [
        b":irc.example 904 alice :SASL authentication failed\r\n"
    ]


def test_sasl_needs_the_cap_and_a_verdict_before_the_next_message() -> None:
    reg = Registration(SERVER, CAPS)
    assert _lines(_send(reg, b"AUTHENTICATE PLAIN")) == [
        b":irc.example 904 * :SASL authentication failed\r\n"
    ]
    reg = _sasl_ready()
    _send(reg, b"AUTHENTICATE PLAIN")
    _send(reg, b"AUTHENTICATE " + _plain("", "alice", "pw"))
    with pytest.raises(RuntimeError, match="sasl_result"):
        _send(reg, b"CAP END")
    assert _lines(reg.sasl_result(True, "alice", "alice", mask="alice!a@host")) == [
        b":irc.example 900 alice alice!a@host alice :You are now logged in as alice\r\n",
        b":irc.example 903 alice :SASL authentication successful\r\n",
    ]
    with pytest.raises(RuntimeError, match="no SaslPlain"):
        reg.sasl_result(True, "alice", "alice")
    assert _lines(_send(reg, b"AUTHENTICATE PLAIN")) == [
        b":irc.example 907 alice :You have already authenticated using SASL\r\n"
    ]


def test_cap_end_during_sasl_aborts_it_and_registers() -> None:
    reg = _sasl_ready()
    _send(reg, b"AUTHENTICATE PLAIN")
    _send(reg, b"AUTHENTICATE " + b"A" * 400)
    assert _send(reg, b"CAP END") == [
        Reply(b":irc.example 906 alice :SASL authentication aborted\r\n"),
        Registered("alice", "alice", "Alice", frozenset({"sasl"})),
    ]


def test_after_registration_only_cap_user_pass_and_authenticate_are_taken() -> None:
    reg = Registration(SERVER, CAPS)
    _send(reg, b"NICK bob")
    _send(reg, b"USER bob 0 * :Bob")
    assert reg.registered
    assert _send(reg, b"CAP REQ :batch") == [
        Reply(b":irc.example CAP bob ACK :batch\r\n"),
        CapsChanged(frozenset({"batch"})),
    ]
    assert _send(reg, b"CAP REQ :batch") == [Reply(b":irc.example CAP bob ACK :batch\r\n")]
    assert _send(reg, b"CAP END") == []
    already = [b":irc.example 462 bob :You may not reregister\r\n"]
    assert _lines(_send(reg, b"USER x 0 * :X")) == already
    assert _lines(_send(reg, b"PASS x")) == already
    assert _lines(_send(reg, b"AUTHENTICATE PLAIN")) == already
    with pytest.raises(RuntimeError, match="PRIVMSG after registration"):
        _send(reg, b"PRIVMSG #lobby :hi")


def test_caps_offered_must_be_well_formed() -> None:
    offers: list[dict[str, str | None]] = [
        {"": None},
        {"a b": None},
        {"a=b": None},
        {"-a": None},
        {"a": "x y"},
        {"a": ""},
    ]
    for caps in offers:
        with pytest.raises(ValueError, match="bad"):
            Registration(SERVER, caps)


def test_formatting_is_carried_as_marks_and_shown_plain_to_the_others() -> None:
    from triosock._sansio.chat import FORMATTING_MARKS, neutralise, plain
    from triosock._sansio.irc import from_marks, to_marks

    said = "\x02bold\x02 \x0304,12red\x03 \x04ff0000,00ff00hex\x04 \x1di\x1d\x0f end"
    marked = to_marks(said)
    assert neutralise(marked) == marked  # the chat keeps them
    assert all(c not in marked for c in "\x02\x03\x04\x0f\x1d")
    assert from_marks(marked) == said
    assert plain(marked) == "bold red hex i end"
    assert plain("\ue0039x") == "x"  # a colour's one digit goes with it
    assert plain("no marks, ascii") == "no marks, ascii"
    assert set(FORMATTING_MARKS) == {
        chr(0xE000 + ord(c)) for c in "\x02\x03\x04\x0f\x11\x16\x1d\x1e\x1f"
    }
