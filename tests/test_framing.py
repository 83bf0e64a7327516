"""The sans-IO framers: splitting, limits, round trips."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triosock import FramingError, LengthPrefixFramer, LineFramer, MessageTooLargeError
from triosock._sansio.chat import LineReader, Overlong


def feed_in_pieces(
    framer: LineFramer | LengthPrefixFramer, data: bytes, cuts: list[int]
) -> list[bytes]:
    out: list[bytes] = []
    start = 0
    for cut in sorted(cuts):
        out += framer.feed(data[start:cut])
        start = cut
    out += framer.feed(data[start:])
    return out


def test_lines_lf_and_crlf() -> None:
    framer = LineFramer()
    assert framer.feed(b"one\r\ntwo\nthr") == [b"one", b"two"]
    assert framer.feed(b"ee\r") == []
    assert framer.feed(b"\n") == [b"three"]
    assert framer.feed(b"\n") == [b""]
    assert framer.feed_eof() == []


def test_unterminated_last_line_is_delivered_at_eof() -> None:
    framer = LineFramer()
    assert framer.feed(b"a\nlast") == [b"a"]
    assert framer.feed_eof() == [b"last"]
    with pytest.raises(FramingError):
        framer.feed(b"more")


def test_line_limit_names_the_limit_and_keeps_earlier_lines() -> None:
    framer = LineFramer(max_line_length=4)
    assert framer.feed(b"abcd\n") == [b"abcd"]
    with pytest.raises(MessageTooLargeError, match="limit of 4 bytes") as info:
        framer.feed(b"ok\nabcde\nlate\n")
    assert info.value.limit == 4
    assert info.value.size == 5
    assert info.value.messages == [b"ok"]
    # What followed the refused line in that call is kept: feed(b"") frames it.
    assert framer.feed(b"") == [b"late"]
    assert framer.feed(b"x\n") == [b"x"]


def test_an_overlong_line_is_refused_once_as_soon_as_it_passes_the_limit() -> None:
    framer = LineFramer(max_line_length=4)
    assert framer.feed(b"abc") == []
    with pytest.raises(MessageTooLargeError) as info:
        framer.feed(b"de")  # the fifth byte: refused now, before its end is known
    assert info.value.size == 5
    assert framer.buffered == 0
    # The rest of the refused line is dropped as it arrives, and says nothing more...
    assert framer.feed(b"f" * 100_000) == []
    assert framer.buffered == 0
    # ...up to its LF; the next line is a line again.
    assert framer.feed(b"ghi\nnext\nto") == [b"next"]
    assert framer.feed(b"o\n") == [b"too"]
    assert framer.feed_eof() == []


def test_a_refused_unterminated_last_line_says_nothing_more_at_eof() -> None:
    framer = LineFramer(max_line_length=4)
    with pytest.raises(MessageTooLargeError):
        framer.feed(b"ok\nabcdef")
    assert framer.feed(b"") == []
    assert framer.feed_eof() == []
    assert framer.feed_eof() == []  # the end said once is said


def test_line_buffer_never_exceeds_the_limit() -> None:
    framer = LineFramer(max_line_length=10)
    framer.feed(b"0123456789")
    assert framer.buffered == 10
    with pytest.raises(MessageTooLargeError):
        framer.feed(b"a")
    assert framer.buffered == 0


def test_a_huge_chunk_without_newline_is_refused_without_buffering() -> None:
    framer = LineFramer(max_line_length=64 * 1024)
    with pytest.raises(MessageTooLargeError):
        framer.feed(b"x" * (10 * 1024 * 1024))
    assert framer.buffered == 0


def test_crlf_split_at_the_limit() -> None:
    framer = LineFramer(max_line_length=3)
    assert framer.feed(b"abc\r") == []
    assert framer.feed(b"") == []  # nothing new (as after a refusal): the CR still waits
    assert framer.feed(b"\n") == [b"abc"]


def test_encode_refuses_what_the_peer_would_refuse() -> None:
    framer = LineFramer(max_line_length=3)
    assert framer.encode(b"abc") == b"abc\n"
    with pytest.raises(FramingError):
        framer.encode(b"a\nb")
    with pytest.raises(MessageTooLargeError):
        framer.encode(b"abcd")
    lp = LengthPrefixFramer(max_size=3)
    assert lp.encode(b"abc") == b"\x00\x00\x00\x03abc"
    with pytest.raises(MessageTooLargeError):
        lp.encode(b"abcd")


def test_length_prefix_refuses_an_oversized_header_at_once() -> None:
    framer = LengthPrefixFramer(max_size=100)
    assert framer.feed(b"\x00\x00\x00\x02hi\x00\x00") == [b"hi"]
    with pytest.raises(MessageTooLargeError) as info:
        framer.feed(b"\x10\x00")
    assert info.value.size == 4096  # the header 00 00 10 00, completed across two feeds
    assert framer.buffered == 0
    # The header said how long the payload is: it is skipped as it comes, unkept.
    assert framer.feed(b"y" * 4000) == []
    assert framer.buffered == 0
    assert framer.feed(b"y" * 96 + b"\x00\x00\x00\x02ok") == [b"ok"]


def test_length_prefix_keeps_what_followed_a_refused_message_in_the_same_call() -> None:
    framer = LengthPrefixFramer(max_size=3)
    data = b"\x00\x00\x00\x01a" + b"\x00\x00\x00\x05hello" + b"\x00\x00\x00\x02ok"
    with pytest.raises(MessageTooLargeError) as info:
        framer.feed(data)
    assert (info.value.size, info.value.messages) == (5, [b"a"])
    assert framer.feed(b"") == [b"ok"]
    assert framer.feed_eof() == []


def test_length_prefix_cut_short_inside_a_refused_message_ends_quietly() -> None:
    framer = LengthPrefixFramer(max_size=3)
    with pytest.raises(MessageTooLargeError):
        framer.feed(b"\x00\x00\x00\x09abc")
    assert framer.feed_eof() == []  # its refusal was said already


def test_length_prefix_truncated_at_eof() -> None:
    framer = LengthPrefixFramer()
    framer.feed(b"\x00\x00\x00\x05ab")
    with pytest.raises(FramingError, match="ended inside a message"):
        framer.feed_eof()


def test_bad_limits() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LineFramer(max_line_length=0)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        LengthPrefixFramer(max_size=2**32)


lines = st.lists(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").rstrip(b"\r")), max_size=20
)


@given(
    messages=lines,
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
    crlf=st.booleans(),
)
def test_lines_any_split_same_messages(messages: list[bytes], cuts: list[int], crlf: bool) -> None:
    ending = b"\r\n" if crlf else b"\n"
    data = b"".join(m + ending for m in messages)
    cuts = [c % (len(data) + 1) for c in cuts]
    assert feed_in_pieces(LineFramer(max_line_length=40), data, cuts) == messages


# up to 41 bytes against a limit of 40, CRs anywhere (a trailing one is kept before CRLF)
long_lines_with_crs = st.lists(
    st.binary(max_size=41).map(lambda b: b.replace(b"\n", b"")), max_size=20
)


@given(messages=long_lines_with_crs, crlf=st.booleans())
def test_one_line_per_read_is_the_same_as_any_split(messages: list[bytes], crlf: bool) -> None:
    # One whole line per read is what a request/reply peer sends: the framer's short
    # path for it must agree with the general one, limit and CR handling included.
    ending = b"\r\n" if crlf else b"\n"
    one_by_one, all_at_once = LineFramer(max_line_length=40), LineFramer(max_line_length=40)
    expected: list[bytes] | None
    try:
        expected = all_at_once.feed(b"".join(m + ending for m in messages))
    except MessageTooLargeError:
        expected = None
    got: list[bytes] | None
    try:
        got = [line for m in messages for line in one_by_one.feed(m + ending)]
    except MessageTooLargeError:
        got = None
    assert got == expected


def feed_like_a_channel(
    framer: LineFramer | LengthPrefixFramer, chunks: list[bytes]
) -> list[bytes | None]:
    """Feed ``chunks`` and then the end as a channel does: after each refusal (None in
    the result), go on with what the framer kept (``feed(b"")``, or ``feed_eof``)."""
    out: list[bytes | None] = []
    for chunk in [*chunks, None]:
        data = chunk
        while True:
            try:
                out += framer.feed_eof() if data is None else framer.feed(data)
            except MessageTooLargeError as exc:
                out += [*exc.messages, None]
                data = b"" if data is not None else None
                continue
            break
        # The most one message under way holds: a line and a CR waiting for its LF; a
        # payload and its header.
        slack = LengthPrefixFramer.HEADER if isinstance(framer, LengthPrefixFramer) else 1
        assert framer.buffered <= framer.max_size + slack
    return out


@given(
    lines=st.lists(
        st.tuples(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), st.booleans()),
        max_size=20,
    ),
    last=st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=8),
)
def test_any_split_gives_every_line_and_one_refusal_per_overlong_line(
    lines: list[tuple[bytes, bool]], last: bytes, cuts: list[int]
) -> None:
    # The model: a line is what stands before its LF, less one CR; over 12 bytes it is
    # refused (None), whatever the reads it came in, and the stream goes on after it.
    limit = 12
    raw = [content + (b"\r\n" if crlf else b"\n") for content, crlf in lines]
    data = b"".join(raw) + last
    expected: list[bytes | None] = []
    for line in [r[:-1] for r in raw] + ([last] if last else []):
        content = line.removesuffix(b"\r")
        expected.append(content if len(content) <= limit else None)
    points = sorted(c % (len(data) + 1) for c in cuts)
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert feed_like_a_channel(LineFramer(max_line_length=limit), chunks) == expected


@given(
    payloads=st.lists(st.binary(max_size=40), max_size=15),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=8),
)
def test_any_split_gives_every_payload_and_one_refusal_per_oversized_one(
    payloads: list[bytes], cuts: list[int]
) -> None:
    limit = 20
    data = b"".join(len(p).to_bytes(4, "big") + p for p in payloads)
    points = sorted(c % (len(data) + 1) for c in cuts)
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    expected = [p if len(p) <= limit else None for p in payloads]
    assert feed_like_a_channel(LengthPrefixFramer(max_size=limit), chunks) == expected


@given(messages=lines)
def test_lines_encode_then_feed_round_trips(messages: list[bytes]) -> None:
    framer = LineFramer()
    data = b"".join(framer.encode(m) for m in messages)
    assert LineFramer().feed(data) == messages


@given(
    messages=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
)
def test_length_prefix_any_split_round_trips(messages: list[bytes], cuts: list[int]) -> None:
    encoder = LengthPrefixFramer(max_size=300)
    data = b"".join(encoder.encode(m) for m in messages)
    cuts = [c % (len(data) + 1) for c in cuts]
    decoder = LengthPrefixFramer(max_size=300)
    assert feed_in_pieces(decoder, data, cuts) == messages
    assert decoder.feed_eof() == []


@given(
    data=st.binary(max_size=500), cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=5)
)
def test_arbitrary_bytes_never_overflow_the_buffer(data: bytes, cuts: list[int]) -> None:
    for framer in (LineFramer(max_line_length=16), LengthPrefixFramer(max_size=16)):
        with contextlib.suppress(FramingError):
            feed_in_pieces(framer, data, [c % (len(data) + 1) for c in cuts])
        assert framer.buffered <= 16 + 4


# -- encode_many: several messages in one write's worth of bytes

lines_maybe_with_cr = st.lists(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20
)
payloads = st.lists(st.binary(max_size=300), max_size=20)


@given(messages=lines_maybe_with_cr)
def test_line_encode_many_is_the_encodes_joined(messages: list[bytes]) -> None:
    framer = LineFramer(max_line_length=40)
    expected = b"".join(framer.encode(m) for m in messages)
    assert framer.encode_many(messages) == expected
    assert framer.encode_many(iter(messages)) == expected  # any iterable, read once


@given(messages=lines)
def test_line_encode_many_then_feed_round_trips(messages: list[bytes]) -> None:
    assert LineFramer().feed(LineFramer().encode_many(messages)) == messages


@given(messages=payloads)
def test_length_prefix_encode_many_is_the_encodes_joined_and_round_trips(
    messages: list[bytes],
) -> None:
    framer = LengthPrefixFramer(max_size=300)
    data = framer.encode_many(iter(messages))
    assert data == b"".join(framer.encode(m) for m in messages)
    decoder = LengthPrefixFramer(max_size=300)
    assert decoder.feed(data) == messages
    assert decoder.feed_eof() == []


@pytest.mark.parametrize("framer", [LineFramer(), LengthPrefixFramer()])
def test_encode_many_of_nothing_is_empty(framer: LineFramer | LengthPrefixFramer) -> None:
    assert framer.encode_many([]) == b""
    assert framer.encode_many(iter(())) == b""


@pytest.mark.parametrize(
    ("make", "bad"),
    [
        pytest.param(partial(LineFramer, max_line_length=3), b"a\nb", id="line-lf"),
        pytest.param(partial(LineFramer, max_line_length=3), b"abcd", id="line-long"),
        pytest.param(partial(LineFramer, max_line_length=3), b"abc\ndef", id="line-lf-long"),
        pytest.param(partial(LengthPrefixFramer, max_size=3), b"abcd", id="prefix-long"),
    ],
)
@pytest.mark.parametrize("position", [0, 1, 2])
def test_encode_many_refuses_what_encode_refuses_and_returns_nothing(
    make: Callable[[], LineFramer | LengthPrefixFramer], bad: bytes, position: int
) -> None:
    framer = make()
    messages = [b"ok", b"ok"]
    messages.insert(position, bad)
    with pytest.raises(FramingError) as expected:
        framer.encode(bad)
    with pytest.raises(FramingError) as got:
        framer.encode_many(messages)
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)
    # the framer is not left broken by the refusal
    assert framer.encode_many([b"ok"]) == framer.encode(b"ok")
    assert framer.feed(framer.encode(b"ok")) == [b"ok"]


@given(
    lines=st.lists(
        st.tuples(
            st.binary(max_size=30).filter(lambda b: not set(b) & set(b"\r\n\x00\xff")),
            st.booleans(),
        ),
        max_size=20,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=8),
)
def test_the_chats_line_reader_refuses_and_goes_on_by_the_same_rule(
    lines: list[tuple[bytes, bool]], cuts: list[int]
) -> None:
    # The chat reads nc and telnet users with its own reader (telnet's line ends and
    # commands are not a framer's), by the rule FramedChannel follows: a line over the
    # limit is refused whole, once, and the next line comes. Where both apply (LF and
    # CRLF ends, no telnet), they agree line for line; the reader names the whole size.
    limit = 12
    data = b"".join(content + (b"\r\n" if crlf else b"\n") for content, crlf in lines)
    points = sorted(c % (len(data) + 1) for c in cuts)
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    reader = LineReader(limit)
    read: list[bytes | None] = []
    for chunk in chunks:
        for item in reader.feed(chunk):
            assert isinstance(item, bytes | Overlong)
            read.append(item if isinstance(item, bytes) else None)
        assert reader.buffered <= limit
    assert reader.feed_eof() == []
    assert read == feed_like_a_channel(LineFramer(max_line_length=limit), chunks)
    sizes = [len(content) for content, _ in lines if len(content) > limit]
    assert [item.size for item in LineReader(limit).feed(data) if isinstance(item, Overlong)] == (
        sizes
    )


def test_the_refusal_says_at_least_when_the_end_has_not_come_and_exactly_otherwise() -> None:
    framer = LineFramer(max_line_length=4)
    with pytest.raises(MessageTooLargeError, match=r"^message of 6 bytes exceeds the limit"):
        framer.feed(b"123456\n")  # a whole line: its size
    with pytest.raises(MessageTooLargeError, match=r"^message of 7 bytes or more exceeds"):
        framer.feed(b"1234567")  # refused before its end came
    with pytest.raises(MessageTooLargeError, match=r"^message of 5 bytes exceeds the limit"):
        framer.encode(b"12345")  # a message to send: its size
    with pytest.raises(MessageTooLargeError, match=r"^message of 9 bytes exceeds the limit"):
        LengthPrefixFramer(max_size=4).feed(b"\x00\x00\x00\x09")  # its header says
