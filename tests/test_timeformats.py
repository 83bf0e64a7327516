"""Tests of the sans-IO time formats: RFC 868, RFC 867 and SNTPv4 (the strftime service's
are in ``test_time_strftime.py``)."""

from __future__ import annotations

import ast
import calendar
import dataclasses
import math
import re
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import triosock._sansio.time
from triosock._errors import TriosockError
from triosock._sansio.time import (
    NTP_PACKET_SIZE,
    NTPPacket,
    TimeFormatError,
    decode_rfc868,
    encode_rfc868,
    format_daytime,
    ntp_to_unix,
    parse_ntp_packet_untrusted,
    sntp_reply,
    sntp_request,
    unix_to_ntp,
)

from .timetools import (
    EPOCH_DELTA,
    ERA0_START,
    ERA1_END,
    ERA1_START,
    MONDAY,
    YEAR_1,
    YEAR_10000,
    calendar_times,
    unix_times,
    utc,
)


def test_time_format_error_is_a_triosock_error() -> None:
    assert issubclass(TimeFormatError, TriosockError)


def test_the_time_formats_are_sans_io_one_module_a_protocol() -> None:
    package = Path(triosock._sansio.time.__file__).parent
    modules = sorted(path.name for path in package.glob("*.py"))
    assert modules == [
        "__init__.py",
        "_common.py",
        "_daytime.py",
        "_rfc868.py",
        "_sntp.py",
        "_strftime.py",
    ]
    for name in modules:
        tree = ast.parse((package / name).read_text())
        imported = {
            alias.name.partition(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        imported |= {
            (node.module or "").partition(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 0
        }
        assert not imported & {"trio", "anyio", "asyncio", "socket", "selectors"}, name


# --- RFC 868 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "wire"),
    [
        (0, b"\x83\xaa\x7e\x80"),  # 2208988800
        (0.999, b"\x83\xaa\x7e\x80"),  # fractions are dropped, not rounded
        (-0.5, b"\x83\xaa\x7e\x7f"),  # ... towards minus infinity
        (MONDAY, (MONDAY + EPOCH_DELTA).to_bytes(4, "big")),
        (ERA1_START - 1, b"\xff\xff\xff\xff"),
        (ERA1_START, b"\x00\x00\x00\x00"),  # the 2036 rollover
        (ERA1_START + 1, b"\x00\x00\x00\x01"),
        (-EPOCH_DELTA, b"\x00\x00\x00\x00"),  # 1900, era 0, looks the same on the wire
    ],
)
def test_encode_rfc868_vectors(now: float, wire: bytes) -> None:
    assert encode_rfc868(now) == wire


@pytest.mark.parametrize(
    ("wire", "now"),
    [
        (b"\x83\xaa\x7e\x80", 0.0),
        (b"\x80\x00\x00\x00", float(ERA0_START)),  # the first second of era 0 we accept
        (b"\xff\xff\xff\xff", float(ERA1_START - 1)),
        (b"\x00\x00\x00\x00", float(ERA1_START)),  # small counts are after 2036
        (b"\x7f\xff\xff\xff", float(ERA1_END - 1)),
    ],
)
def test_decode_rfc868_vectors(wire: bytes, now: float) -> None:
    assert decode_rfc868(wire) == now


@pytest.mark.parametrize("size", [0, 1, 3, 5, 8])
def test_decode_rfc868_wants_exactly_4_bytes(size: int) -> None:
    with pytest.raises(TimeFormatError, match="4 bytes"):
        decode_rfc868(b"\x83" * size)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_encode_rfc868_rejects_non_finite_times(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        encode_rfc868(bad)


@given(unix_times)
def test_rfc868_round_trip_within_the_two_eras(now: float) -> None:
    assert decode_rfc868(encode_rfc868(now)) == math.floor(now)


@given(st.binary(min_size=4, max_size=4))
def test_rfc868_round_trip_from_the_wire(wire: bytes) -> None:
    assert encode_rfc868(decode_rfc868(wire)) == wire


# --- RFC 867 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "line"),
    [
        (MONDAY, b"Monday, November 23, 2026 10:17:00-UTC\r\n"),
        (MONDAY + 0.999, b"Monday, November 23, 2026 10:17:00-UTC\r\n"),
        (0, b"Thursday, January 1, 1970 00:00:00-UTC\r\n"),
        (-1, b"Wednesday, December 31, 1969 23:59:59-UTC\r\n"),
        (utc(2000, 2, 29, 13, 5, 9), b"Tuesday, February 29, 2000 13:05:09-UTC\r\n"),
        (YEAR_10000 - 1, b"Friday, December 31, 9999 23:59:59-UTC\r\n"),
    ],
)
def test_format_daytime_vectors(now: float, line: bytes) -> None:
    assert format_daytime(now) == line


@pytest.mark.parametrize("bad", [math.nan, math.inf, YEAR_10000, YEAR_1 - 1, 1e300])
def test_format_daytime_rejects_unrepresentable_times(bad: float) -> None:
    with pytest.raises(ValueError, match="now"):
        format_daytime(bad)


DAYTIME = re.compile(rb"([A-Z][a-z]+), ([A-Z][a-z]+) (\d{1,2}), (\d+) (\d\d):(\d\d):(\d\d)-UTC\r\n")


@given(calendar_times)
def test_format_daytime_says_the_right_time(now: float) -> None:
    line = format_daytime(now)
    match = DAYTIME.fullmatch(line)
    assert match is not None, line
    weekday, month, day, year, hour, minute, second = (g.decode() for g in match.groups())
    expected = time.gmtime(math.floor(now))
    assert weekday == calendar.day_name[expected.tm_wday]
    assert month == calendar.month_name[expected.tm_mon]
    assert (int(year), int(day), int(hour), int(minute), int(second)) == (
        expected.tm_year,
        expected.tm_mday,
        expected.tm_hour,
        expected.tm_min,
        expected.tm_sec,
    )


# --- NTP timestamps ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unix", "ntp"),
    [
        (0.0, EPOCH_DELTA << 32),
        (0.5, EPOCH_DELTA << 32 | 2**31),
        (-0.25, (EPOCH_DELTA - 1) << 32 | 3 * 2**30),
        (1 - 2**-40, (EPOCH_DELTA + 1) << 32),  # the fraction rounds up into the seconds
        (float(ERA0_START), 2**31 << 32),
        (float(ERA1_START), 0),
        (ERA1_START + 2**-20, 2**12),
        (float(ERA1_START - 1), 0xFFFFFFFF << 32),
    ],
)
def test_unix_to_ntp_vectors(unix: float, ntp: int) -> None:
    assert unix_to_ntp(unix) == ntp


@pytest.mark.parametrize(
    ("ntp", "unix"),
    [
        (EPOCH_DELTA << 32, 0.0),
        (EPOCH_DELTA << 32 | 2**31, 0.5),
        (0, float(ERA1_START)),  # 0 is "unknown" in a packet, but the conversion is plain
        (2**31 << 32, float(ERA0_START)),
        (2**64 - 1, ERA1_START - 2**-32),
        ((2**31 - 1) << 32, float(ERA1_END - 1)),
    ],
)
def test_ntp_to_unix_vectors(ntp: int, unix: float) -> None:
    assert ntp_to_unix(ntp) == unix


@pytest.mark.parametrize("bad", [-1, 2**64])
def test_ntp_to_unix_rejects_what_is_not_64_bits(bad: int) -> None:
    with pytest.raises(ValueError, match="64-bit"):
        ntp_to_unix(bad)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_unix_to_ntp_rejects_non_finite_times(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        unix_to_ntp(bad)


@given(unix_times)
@example(ERA1_START - 1e-7)
@example(float(ERA1_START))
def test_ntp_timestamps_round_trip_within_a_microsecond(unix: float) -> None:
    ntp = unix_to_ntp(unix)
    assert 0 <= ntp < 2**64
    assert abs(ntp_to_unix(ntp) - unix) <= 1e-6


@given(st.integers(0, 2**64 - 1))
@example(2**64 - 1)
def test_ntp_timestamps_round_trip_from_the_wire(ntp: int) -> None:
    back = unix_to_ntp(ntp_to_unix(ntp))
    distance = (back - ntp) % 2**64
    assert min(distance, 2**64 - distance) <= 1e-6 * 2**32


# --- NTP packets -------------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i8 = st.integers(-128, 127)
packets = st.builds(
    NTPPacket,
    leap=st.integers(0, 3),
    version=st.integers(0, 7),
    mode=st.integers(0, 7),
    stratum=st.integers(0, 255),
    poll=i8,
    precision=i8,
    root_delay=u32,
    root_dispersion=u32,
    reference_id=st.binary(min_size=4, max_size=4),
    reference_ts=u64,
    originate_ts=u64,
    receive_ts=u64,
    transmit_ts=u64,
)


def make_packet(**changes: Any) -> NTPPacket:
    fields: dict[str, Any] = {
        "leap": 0,
        "version": 4,
        "mode": 3,
        "stratum": 0,
        "poll": 0,
        "precision": 0,
        "root_delay": 0,
        "root_dispersion": 0,
        "reference_id": b"\0\0\0\0",
        "reference_ts": 0,
        "originate_ts": 0,
        "receive_ts": 0,
        "transmit_ts": 0,
    }
    fields.update(changes)
    return NTPPacket(**fields)


def test_parse_ntp_packet_known_bytes() -> None:
    wire = (
        b"\xe4\x02\xfa\xec"  # LI 3, VN 4, mode 4; stratum 2; poll -6; precision -20
        b"\x00\x01\x80\x00"  # root delay 1.5 s
        b"\x00\x00\x00\x42"  # root dispersion
        b"GPS\x00"
        + bytes(range(1, 9))
        + bytes(range(11, 19))
        + bytes(range(21, 29))
        + bytes(range(31, 39))
    )
    packet = parse_ntp_packet_untrusted(wire)
    assert packet == NTPPacket(
        leap=3,
        version=4,
        mode=4,
        stratum=2,
        poll=-6,
        precision=-20,
        root_delay=0x18000,
        root_dispersion=0x42,
        reference_id=b"GPS\0",
        reference_ts=0x0102030405060708,
        originate_ts=0x0B0C0D0E0F101112,
        receive_ts=0x15161718191A1B1C,
        transmit_ts=0x1F20212223242526,
    )
    assert packet.to_bytes() == wire


@given(packets)
def test_ntp_packet_round_trip(packet: NTPPacket) -> None:
    wire = packet.to_bytes()
    assert len(wire) == NTP_PACKET_SIZE
    assert parse_ntp_packet_untrusted(wire) == packet


@given(st.binary(min_size=NTP_PACKET_SIZE, max_size=200))
def test_any_48_bytes_parse_and_rebuild_bit_exactly(wire: bytes) -> None:
    # Bytes after the header (extension fields, MAC) are ignored.
    assert parse_ntp_packet_untrusted(wire).to_bytes() == wire[:NTP_PACKET_SIZE]


@pytest.mark.parametrize("size", [0, 1, 47])
def test_parse_ntp_packet_too_short(size: int) -> None:
    with pytest.raises(TimeFormatError, match="48 bytes"):
        parse_ntp_packet_untrusted(bytes(size))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("leap", 4),
        ("leap", -1),
        ("version", 8),
        ("mode", 8),
        ("stratum", 256),
        ("poll", 128),
        ("poll", -129),
        ("precision", 128),
        ("root_delay", 2**32),
        ("root_dispersion", -1),
        ("reference_id", b"LOC"),
        ("reference_id", b"LOCAL"),
        ("reference_ts", 2**64),
        ("originate_ts", -1),
        ("receive_ts", 2**64),
        ("transmit_ts", -1),
    ],
)
def test_ntp_packet_rejects_out_of_range_fields(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        make_packet(**{field: value})


def test_ntp_packet_is_frozen_and_hashable() -> None:
    packet = make_packet(reference_id=bytearray(b"LOCL"))
    assert type(packet.reference_id) is bytes
    assert hash(packet) == hash(make_packet(reference_id=b"LOCL"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        packet.mode = 4  # type: ignore[misc]


# --- SNTP client and server --------------------------------------------------------------


def test_sntp_request() -> None:
    wire = sntp_request(MONDAY + 0.25)
    assert len(wire) == NTP_PACKET_SIZE
    assert wire[0] == 0x23  # LI 0, VN 4, mode 3
    assert wire[1:40] == bytes(39)
    assert wire[40:] == struct.pack("!Q", (MONDAY + EPOCH_DELTA) << 32 | 2**30)
    packet = parse_ntp_packet_untrusted(wire)
    assert (packet.leap, packet.version, packet.mode) == (0, 4, 3)
    assert packet.transmit_ts == unix_to_ntp(MONDAY + 0.25)


def reply_to(request: bytes, **options: Any) -> NTPPacket:
    kwargs: dict[str, Any] = {"receive_time": MONDAY + 0.75, "transmit_time": MONDAY + 0.8}
    kwargs.update(options)
    reply = sntp_reply(request, **kwargs)
    assert reply is not None
    assert len(reply) == NTP_PACKET_SIZE
    return parse_ntp_packet_untrusted(reply)


def test_sntp_reply_fields() -> None:
    request = make_packet(poll=6, transmit_ts=0x0123456789ABCDEF, stratum=3).to_bytes()
    reply = reply_to(request)
    assert reply == NTPPacket(
        leap=0,
        version=4,
        mode=4,
        stratum=1,
        poll=6,
        precision=-20,
        root_delay=0,
        root_dispersion=reply.root_dispersion,
        reference_id=b"LOCL",
        reference_ts=(MONDAY + EPOCH_DELTA) << 32,  # receive_time rounded down
        originate_ts=0x0123456789ABCDEF,
        receive_ts=unix_to_ntp(MONDAY + 0.75),
        transmit_ts=unix_to_ntp(MONDAY + 0.8),
    )
    assert 0 < reply.root_dispersion < 2**16  # positive, and well under a second


def test_sntp_reply_options() -> None:
    reply = reply_to(sntp_request(MONDAY), stratum=15, reference_id=b"GPS\0", precision=-6)
    assert (reply.stratum, reply.reference_id, reply.precision) == (15, b"GPS\0", -6)


def test_sntp_client_and_server_together() -> None:
    request = sntp_request(MONDAY)
    reply = reply_to(request, receive_time=MONDAY + 0.001, transmit_time=MONDAY + 0.002)
    assert reply.originate_ts == unix_to_ntp(MONDAY)
    # The client's offset and delay computation (RFC 4330 section 5), with no clock error.
    t1, t2, t3 = (
        ntp_to_unix(ts) for ts in (reply.originate_ts, reply.receive_ts, reply.transmit_ts)
    )
    t4 = MONDAY + 0.003
    assert abs(((t2 - t1) + (t3 - t4)) / 2) < 1e-6
    assert abs((t4 - t1) - (t3 - t2) - 0.002) < 1e-6


@given(
    transmit_ts=u64,
    version=st.integers(1, 4),
    poll=i8,
    extra=st.binary(max_size=64),
    receive_time=unix_times,
    delay=st.floats(0, 1),
)
def test_sntp_reply_echoes_the_request(
    transmit_ts: int, version: int, poll: int, extra: bytes, receive_time: float, delay: float
) -> None:
    request = make_packet(transmit_ts=transmit_ts, version=version, poll=poll).to_bytes() + extra
    reply = reply_to(request, receive_time=receive_time, transmit_time=receive_time + delay)
    assert reply.originate_ts == transmit_ts  # bit for bit
    assert (reply.leap, reply.version, reply.mode, reply.poll) == (0, version, 4, poll)
    assert reply.receive_ts == unix_to_ntp(receive_time)
    assert reply.transmit_ts == unix_to_ntp(receive_time + delay)
    assert reply.reference_ts == unix_to_ntp(math.floor(receive_time))


@pytest.mark.parametrize("mode", [0, 1, 2, 4, 5, 6, 7])
def test_sntp_reply_ignores_what_is_not_a_client_request(mode: int) -> None:
    request = make_packet(mode=mode, transmit_ts=12345).to_bytes()
    assert sntp_reply(request, receive_time=MONDAY, transmit_time=MONDAY) is None


@pytest.mark.parametrize("version", [0, 5, 6, 7])
def test_sntp_reply_ignores_unknown_versions(version: int) -> None:
    request = make_packet(version=version, transmit_ts=12345).to_bytes()
    assert sntp_reply(request, receive_time=MONDAY, transmit_time=MONDAY) is None


@pytest.mark.parametrize("size", [0, 1, 47])
def test_sntp_reply_ignores_short_requests(size: int) -> None:
    request = sntp_request(MONDAY)[:size]
    assert sntp_reply(request, receive_time=MONDAY, transmit_time=MONDAY) is None


@given(st.binary(max_size=100))
def test_sntp_reply_never_raises_nor_amplifies(request: bytes) -> None:
    reply = sntp_reply(request, receive_time=MONDAY, transmit_time=MONDAY)
    assert reply is None or len(reply) == NTP_PACKET_SIZE <= len(request)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stratum": 0}, "stratum"),
        ({"stratum": 16}, "stratum"),
        ({"reference_id": b"LOC"}, "reference_id"),
        ({"reference_id": b"LOCAL"}, "reference_id"),
        ({"precision": 128}, "precision"),
        ({"precision": -129}, "precision"),
        ({"receive_time": math.nan}, "finite"),
        ({"transmit_time": math.inf}, "finite"),
    ],
)
@pytest.mark.parametrize("request_bytes", [b"", b"junk", bytes(48)], ids=["empty", "junk", "zeros"])
def test_sntp_reply_rejects_bad_options_whatever_the_request(
    options: dict[str, Any], message: str, request_bytes: bytes
) -> None:
    kwargs: dict[str, Any] = {"receive_time": MONDAY, "transmit_time": MONDAY}
    kwargs.update(options)
    with pytest.raises(ValueError, match=message):
        sntp_reply(request_bytes, **kwargs)
