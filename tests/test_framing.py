"""The sans-IO framers: splitting, limits, round trips."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triosock import FramingError, LengthPrefixFramer, LineFramer, MessageTooLargeError


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
        framer.feed(b"ok\nabcde\nlater\n")
    assert info.value.limit == 4
    assert info.value.messages == [b"ok"]
    with pytest.raises(FramingError, match="lost sync"):
        framer.feed(b"x\n")


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
