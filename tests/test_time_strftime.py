"""Tests of the sans-IO strftime service: a format in, the time formatted out, and never
much more than was sent."""

from __future__ import annotations

import locale
import math
import re
import sys
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from triosock._sansio.time import DEFAULT_TIME_FORMAT, format_time_untrusted

from .timetools import MONDAY, SUNDAY, YEAR_1, YEAR_10000, calendar_times, utc


@pytest.mark.parametrize(
    ("request_bytes", "reply"),
    [
        (b"", b"2026-11-23 10:17:00"),
        (b"\r\n", b"2026-11-23 10:17:00"),
        (b"\n", b"2026-11-23 10:17:00"),
        (b"%Y\r\n", b"2026"),
        (b"%Y\r\n\r\n", b"2026"),
        (b"%A %d %B", b"Monday 23 November"),
        (b"%c", b"Mon Nov 23 10:17:00 2026"),
        (b"%I:%M %p", b"10:17 AM"),
        (b"time: %T", b"time: 10:17:00"),
        (b"no directives", b"no directives"),
        (b"100%%", b"100%"),
        ("été %Y 時".encode(), "été 2026 時".encode()),
        (b"%H\t%M", b"10\t17"),
    ],
)
def test_format_time_vectors(request_bytes: bytes, reply: bytes) -> None:
    assert format_time_untrusted(request_bytes, MONDAY + 0.9) == reply


def test_default_format() -> None:
    assert format_time_untrusted(b"", MONDAY) == format_time_untrusted(
        DEFAULT_TIME_FORMAT.encode(), MONDAY
    )


@pytest.mark.parametrize(
    ("directive", "text"),
    [
        ("a", "Sun"),
        ("A", "Sunday"),
        ("b", "Jan"),
        ("B", "January"),
        ("c", "Sun Jan  3 05:06:07 2021"),
        ("C", "20"),
        ("d", "03"),
        ("D", "01/03/21"),
        ("e", " 3"),
        ("F", "2021-01-03"),
        ("g", "20"),
        ("G", "2020"),
        ("h", "Jan"),
        ("H", "05"),
        ("I", "05"),
        ("j", "003"),
        ("m", "01"),
        ("M", "06"),
        ("p", "AM"),
        ("r", "05:06:07 AM"),
        ("R", "05:06"),
        ("s", str(SUNDAY)),
        ("S", "07"),
        ("t", "\t"),
        ("T", "05:06:07"),
        ("u", "7"),
        ("U", "01"),
        ("V", "53"),
        ("w", "0"),
        ("W", "00"),
        ("x", "01/03/21"),
        ("X", "05:06:07"),
        ("y", "21"),
        ("Y", "2021"),
        ("z", "+0000"),
        ("Z", "UTC"),
        ("%", "%"),
    ],
)
def test_format_time_directives(directive: str, text: str) -> None:
    assert format_time_untrusted(f"%{directive}".encode(), SUNDAY) == text.encode()


@pytest.mark.parametrize(
    ("hour", "text"), [(0, "12 AM"), (1, "01 AM"), (11, "11 AM"), (12, "12 PM"), (13, "01 PM")]
)
def test_format_time_twelve_hour_clock(hour: int, text: str) -> None:
    assert format_time_untrusted(b"%I %p", utc(2021, 1, 3, hour, 0, 0)) == text.encode()


LONG = b"%Y" * 128  # 256 bytes


@pytest.mark.parametrize(
    ("request_bytes", "reply"),
    [
        (b"\xff%Y", b"error: format is not valid UTF-8"),
        (b"\xed\xa0\x80", b"error: format is not valid UTF-8"),  # a UTF-8 surrogate
        (b"%Y\0", b"error: format contains NUL"),
        (LONG + b"x", b"error: format longer than 256 bytes"),
        (LONG + b"x\r\n", b"error: format longer than 256 bytes"),
        (b"x" * 100_000, b"error: format longer than 256 bytes"),
        (b"%Y\n%m", b"error: format contains a control character"),
        (b"%Y\r%m", b"error: format contains a control character"),
        (b"\x1b[2J%Y", b"error: format contains a control character"),
        ("%Y\u0085".encode(), b"error: format contains a control character"),
        (b"%Y%", b"error: format ends with a lone %"),
        (b"%Q", b"error: unsupported directive %Q"),
        (b"%n", b"error: unsupported directive %n"),
        (b"%Ec", b"error: unsupported directive %E"),
        (b"%Od", b"error: unsupported directive %O"),
        (b"%-d", b"error: unsupported directive %-"),
        (b"%10000Y", b"error: unsupported directive %1"),
        ("%é".encode(), "error: unsupported directive %é".encode()),
        ("%\u200b".encode(), b"error: unsupported directive %U+200B"),
        (b"%c" * 10, b"error: reply longer than 80 bytes"),
        (b"%c" * 128, b"error: reply longer than 1024 bytes"),
    ],
)
def test_format_time_errors(request_bytes: bytes, reply: bytes) -> None:
    assert format_time_untrusted(request_bytes, MONDAY) == reply


def test_format_time_length_limit_does_not_count_the_terminator() -> None:
    assert format_time_untrusted(LONG + b"\r\n", MONDAY) == b"2026" * 128


def test_format_time_max_request() -> None:
    assert format_time_untrusted(b"%Y%m\r\n", MONDAY, max_request=4) == b"202611"
    assert (
        format_time_untrusted(b"%Y%m%d", MONDAY, max_request=4)
        == b"error: format longer than 4 bytes"
    )
    huge = format_time_untrusted(b"x" * 100, MONDAY, max_request=10**80)
    assert huge == b"x" * 100
    assert format_time_untrusted(b"\xff", MONDAY, max_request=10**80) == (
        b"error: format is not valid UTF-8"
    )


@pytest.mark.parametrize(
    ("now", "max_request", "message"),
    [
        (math.nan, 256, "finite"),
        (math.inf, 256, "finite"),
        (YEAR_10000, 256, "years"),
        (YEAR_1 - 1, 256, "years"),
        (MONDAY, 0, "max_request"),
    ],
)
def test_format_time_rejects_bad_arguments(now: float, max_request: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_time_untrusted(b"%Y", now, max_request=max_request)


def check_reply(request: bytes, reply: bytes) -> None:
    assert len(reply) <= max(64, 4 * len(request))
    assert b"\r" not in reply
    assert b"\n" not in reply
    reply.decode("utf-8")


@given(st.binary(max_size=400), calendar_times)
@example(b"%c" * 16, MONDAY)
@example(b"%c" * 1000, MONDAY)
def test_format_time_never_raises_nor_amplifies(request: bytes, now: float) -> None:
    check_reply(request, format_time_untrusted(request, now))


SUPPORTED = "aAbBcCdDeFgGhHIjmMprRsStTuUVwWxXyYzZ%"
formats = st.lists(
    st.one_of(
        st.sampled_from(SUPPORTED).map(lambda code: "%" + code),
        st.text(st.characters(codec="utf-8", exclude_characters="%", exclude_categories=["Cc"])),
    ),
    max_size=40,
).map("".join)


@given(formats, calendar_times, st.sampled_from([b"", b"\n", b"\r\n"]))
def test_format_time_supported_formats(fmt: str, now: float, terminator: bytes) -> None:
    request = fmt.encode() + terminator
    reply = format_time_untrusted(request, now, max_request=10_000)
    check_reply(request, reply)
    if reply.startswith(b"error: "):
        # Only the size of the expansion can fail a format of supported directives and text.
        assert reply == f"error: reply longer than {max(64, 4 * len(request))} bytes".encode()
    else:
        # The text around the directives comes back unchanged and in order.
        pieces = re.split("%.", fmt or DEFAULT_TIME_FORMAT, flags=re.DOTALL)
        pattern = ".*?".join(re.escape(piece) for piece in pieces)
        assert re.fullmatch(pattern, reply.decode(), flags=re.DOTALL)


# Compare with the C library where its output is known to be the C locale's and our own:
# glibc, LC_TIME "C", years of four digits. %s (local time in glibc), %Z ("GMT" from
# gmtime) and %z are ours alone.
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or locale.setlocale(locale.LC_TIME) != "C",
    reason="needs glibc's strftime in the C locale",
)
@given(
    st.lists(
        st.sampled_from(SUPPORTED.replace("s", "").replace("Z", "").replace("z", "")), min_size=1
    ),
    st.floats(min_value=utc(1001, 1, 1, 0, 0, 0), max_value=YEAR_10000 - 1),
)
def test_format_time_agrees_with_the_c_library(codes: list[str], now: float) -> None:
    fmt = " ".join("%" + code for code in codes)
    expected = time.strftime(fmt, time.gmtime(math.floor(now))).encode()
    reply = format_time_untrusted(fmt.encode(), now, max_request=1000)
    bound = max(64, 4 * len(fmt))
    if len(expected) > bound:
        assert reply == f"error: reply longer than {bound} bytes".encode()
    else:
        assert reply == expected
