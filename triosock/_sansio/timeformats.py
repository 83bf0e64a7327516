"""Time on the wire, sans-IO: RFC 868 time, RFC 867 daytime, SNTPv4, and a strftime service.

Every function takes the current time as an argument (``now``, ``receive_time``, ... in
Unix seconds, as :func:`time.time` returns it) and never reads a clock, so a service
decides when "now" is and the tests are exact. Nothing here imports trio or touches a
socket.

* RFC 868 (port 37): :func:`encode_rfc868` / :func:`decode_rfc868` -- the time as a
  32-bit count of seconds since 1900-01-01 00:00 UTC.
* RFC 867 (port 13): :func:`format_daytime` -- one human-readable ASCII line.
* SNTPv4 (RFC 4330, port 123): :class:`NTPPacket`, :func:`parse_ntp_packet_untrusted`,
  :func:`sntp_reply` for a server, :func:`sntp_request` for a client, and the timestamp
  conversions :func:`unix_to_ntp` / :func:`ntp_to_unix`.
* The seed tutorial's service, "strftime format in, formatted time out":
  :func:`format_time_untrusted`, which never raises on what a peer sends and never
  answers with much more than it was sent.

Two kinds of error: bytes from the wire that cannot be decoded raise
:class:`TimeFormatError`; a bad argument from our own code (a stratum of 16, a time that
is NaN) raises :class:`ValueError`.

The eras. RFC 868 and NTP count seconds since 1900 in 32 bits, which wraps on
2036-02-07 06:28:16 UTC. Encoders write the count modulo 2**32; decoders follow RFC 4330
section 3: a count with the high bit set is in era 0 (1968-01-20 .. 2036-02-07), a count
without it is in era 1 (2036-02-07 .. 2104-02-26). So every time from 1968 to 2104 makes
the round trip; earlier and later times come back shifted by 2**32 seconds.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import struct
from collections.abc import Callable

from .._errors import TriosockError

__all__ = [
    "DEFAULT_TIME_FORMAT",
    "NTP_PACKET_SIZE",
    "NTPPacket",
    "TimeFormatError",
    "decode_rfc868",
    "encode_rfc868",
    "format_daytime",
    "format_time_untrusted",
    "ntp_to_unix",
    "parse_ntp_packet_untrusted",
    "sntp_reply",
    "sntp_request",
    "unix_to_ntp",
]


class TimeFormatError(TriosockError):
    """Bytes from the wire are not a valid time message (wrong length, too short)."""


#: Seconds from 1900-01-01 00:00 UTC (the NTP and RFC 868 epoch) to the Unix epoch.
_EPOCH_DELTA = 2_208_988_800
_ERA = 2**32
_UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _whole_seconds(t: float, what: str) -> int:
    """``t`` rounded down to whole seconds; ValueError for NaN and infinities."""
    if not math.isfinite(t):
        raise ValueError(f"{what} must be a finite number of seconds, not {t!r}")
    return math.floor(t)


def _era_seconds(count: int) -> int:
    """Unix seconds for a 32-bit count of seconds since 1900, by the RFC 4330 era rule."""
    if count < 2**31:
        count += _ERA  # era 1: on or after 2036-02-07 06:28:16 UTC
    return count - _EPOCH_DELTA


# --- RFC 868 -----------------------------------------------------------------------------


def encode_rfc868(now: float) -> bytes:
    """The RFC 868 time protocol's answer: whole seconds since 1900, 4 bytes big-endian.

    Fractions of a second are dropped (rounded down). The count wraps modulo 2**32, so on
    2036-02-07 06:28:16 UTC it starts again at 0; :func:`decode_rfc868` reads such small
    counts as the era after 2036.

    Args:
      now: the time to send, in Unix seconds.

    Returns:
      4 bytes.

    Raises:
      ValueError: if ``now`` is NaN or infinite.
    """
    count = (_whole_seconds(now, "now") + _EPOCH_DELTA) % _ERA
    return count.to_bytes(4, "big")


def decode_rfc868(data: bytes) -> float:
    """Read an RFC 868 time answer.

    A count below 2**31 is taken to be in era 1 (2036-02-07 to 2104-02-26), a count at or
    above it in era 0 (1968-01-20 to 2036-02-07): the rule RFC 4330 section 3 gives for
    NTP timestamps. Nothing on the wire says which era is meant, and a server set to a
    time before 1968 is much less likely than one running after 2036.

    Args:
      data: the bytes the server sent, all of them.

    Returns:
      The time in Unix seconds (always a whole number).

    Raises:
      TimeFormatError: unless ``data`` is exactly 4 bytes long.
    """
    if len(data) != 4:
        raise TimeFormatError(f"an RFC 868 time is 4 bytes, not {len(data)}")
    return float(_era_seconds(int.from_bytes(data, "big")))


# --- RFC 867 -----------------------------------------------------------------------------

# Our own English names: time.strftime's %A and %B follow the process's LC_TIME locale.
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _utc(seconds: int, what: str) -> datetime.datetime:
    """The UTC date and time of a whole number of Unix seconds (years 1 to 9999)."""
    try:
        return _UNIX_EPOCH + datetime.timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{what} is outside the years 1 to 9999") from None


def format_daytime(now: float) -> bytes:
    """The RFC 867 daytime answer: the date and time in UTC as one ASCII line.

    RFC 867 leaves the syntax open; this is the shape of its own example, ``Weekday,
    Month Day, Year Time-Zone``, always in UTC and always in English (never the server's
    locale), for example::

        Monday, November 23, 2026 10:17:00-UTC\\r\\n

    The day of the month has no leading zero; hours, minutes and seconds are two digits,
    on a 24-hour clock; fractions of a second are dropped.

    Args:
      now: the time to send, in Unix seconds.

    Returns:
      ASCII bytes ending with CRLF.

    Raises:
      ValueError: if ``now`` is NaN, infinite, or outside the years 1 to 9999.
    """
    dt = _utc(_whole_seconds(now, "now"), "now")
    line = (
        f"{_WEEKDAYS[dt.weekday()]}, {_MONTHS[dt.month - 1]} {dt.day}, {dt.year} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}-UTC\r\n"
    )
    return line.encode("ascii")


# --- SNTPv4 (RFC 4330) -------------------------------------------------------------------

#: The size of an NTP packet without extension fields or MAC.
NTP_PACKET_SIZE = 48

# LI/VN/mode, stratum, poll, precision, root delay, root dispersion, reference id, then
# the reference, originate, receive and transmit timestamps.
_NTP_HEADER = struct.Struct("!BBbbII4sQQQQ")
assert _NTP_HEADER.size == NTP_PACKET_SIZE

_MODE_CLIENT = 3
_MODE_SERVER = 4

# Our root dispersion, in NTP short format (2**-16 s units): about 1 ms. A stratum-1
# server on its own clock cannot know its error; RFC 4330 only asks for a small positive
# number, and clients discard servers whose root distance (delay / 2 + dispersion) is over
# a second or so (RFC 5905's MAXDIST is 1.5 s).
_ROOT_DISPERSION = 66


def unix_to_ntp(t: float) -> int:
    """An NTP timestamp for a Unix time.

    Args:
      t: Unix seconds.

    Returns:
      The 64-bit NTP timestamp: seconds since 1900 in the high 32 bits (modulo 2**32, so
      times from 2036-02-07 on wrap into era 1), the fraction of a second in units of
      2**-32 s in the low 32 bits, rounded to the nearest unit.

    Raises:
      ValueError: if ``t`` is NaN or infinite.
    """
    seconds = _whole_seconds(t, "the time")
    # t - floor(t) is exact in binary floating point, so no precision is lost before the
    # fraction is scaled.
    fraction = round((t - seconds) * 2**32)
    if fraction == 2**32:
        seconds += 1
        fraction = 0
    return ((seconds + _EPOCH_DELTA) % _ERA) << 32 | fraction


def ntp_to_unix(ts: int) -> float:
    """The Unix time of an NTP timestamp.

    The era is chosen as for :func:`decode_rfc868`: a seconds field below 2**31 is taken
    to be after 2036. Note that RFC 4330 gives the timestamp 0 the meaning "not known"
    (a client that never set a field); that check is the caller's, since here 0 is simply
    2036-02-07 06:28:16 UTC.

    Args:
      ts: a 64-bit NTP timestamp (seconds << 32 | fraction).

    Returns:
      Unix seconds, to within the resolution of a float (under a microsecond until 2104).

    Raises:
      ValueError: if ``ts`` does not fit in 64 unsigned bits.
    """
    if not 0 <= ts < 2**64:
        raise ValueError(f"an NTP timestamp is a 64-bit unsigned integer, not {ts}")
    # One rounding only: the integer part is exact, and so is fraction / 2**32.
    return _era_seconds(ts >> 32) + (ts & 0xFFFFFFFF) / 2**32


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, not {value}")


@dataclasses.dataclass(frozen=True, slots=True)
class NTPPacket:
    """The 48-byte header of an NTP packet (RFC 4330 section 4), field by field.

    Values are what the wire carries, not interpreted: the four timestamps stay 64-bit
    NTP integers (seconds since 1900 << 32 | fraction), so that a server can copy a
    client's transmit timestamp into its reply bit for bit (convert with
    :func:`ntp_to_unix`); ``root_delay`` and ``root_dispersion`` stay 32-bit unsigned
    integers in units of 2**-16 seconds (RFC 4330 calls the root delay signed; RFC 5905
    and every server in practice send it non-negative).

    Attributes:
      leap: the leap indicator, 0 to 3 (3 means "clock not synchronized").
      version: the NTP version, 0 to 7.
      mode: 0 to 7; 3 is a client request, 4 a server reply.
      stratum: 0 to 255; 1 is a primary server, 0 "unspecified" or a kiss-o'-death.
      poll: the poll interval as a signed power of two seconds, -128 to 127.
      precision: the clock precision as a signed power of two seconds, -128 to 127.
      root_delay: the round trip to the reference clock, 2**-16 s units.
      root_dispersion: the error relative to the reference clock, 2**-16 s units.
      reference_id: 4 bytes; for stratum 1 an ASCII clock name such as ``b"GPS\\0"``.
      reference_ts: when the clock was last set or corrected.
      originate_ts: in a reply, the request's transmit timestamp.
      receive_ts: when the request reached the server.
      transmit_ts: when the packet left its sender.

    Raises:
      ValueError: on construction, if a field is out of its range.
    """

    leap: int
    version: int
    mode: int
    stratum: int
    poll: int
    precision: int
    root_delay: int
    root_dispersion: int
    reference_id: bytes
    reference_ts: int
    originate_ts: int
    receive_ts: int
    transmit_ts: int

    def __post_init__(self) -> None:
        _check_range("leap", self.leap, 0, 3)
        _check_range("version", self.version, 0, 7)
        _check_range("mode", self.mode, 0, 7)
        _check_range("stratum", self.stratum, 0, 255)
        _check_range("poll", self.poll, -128, 127)
        _check_range("precision", self.precision, -128, 127)
        _check_range("root_delay", self.root_delay, 0, 2**32 - 1)
        _check_range("root_dispersion", self.root_dispersion, 0, 2**32 - 1)
        if len(self.reference_id) != 4:
            raise ValueError(f"reference_id must be 4 bytes, not {len(self.reference_id)}")
        # A bytearray would compare equal but make the frozen record mutable and unhashable.
        object.__setattr__(self, "reference_id", bytes(self.reference_id))
        for name in ("reference_ts", "originate_ts", "receive_ts", "transmit_ts"):
            _check_range(name, getattr(self, name), 0, 2**64 - 1)

    def to_bytes(self) -> bytes:
        """The packet as 48 bytes, ready to send (no extension fields, no MAC)."""
        return _NTP_HEADER.pack(
            self.leap << 6 | self.version << 3 | self.mode,
            self.stratum,
            self.poll,
            self.precision,
            self.root_delay,
            self.root_dispersion,
            self.reference_id,
            self.reference_ts,
            self.originate_ts,
            self.receive_ts,
            self.transmit_ts,
        )


def parse_ntp_packet_untrusted(data: bytes) -> NTPPacket:
    """Read the header of an NTP packet that came from the network.

    Every 48-byte string is a well-formed header, so only the length is checked; whether
    the values make sense (mode, version, zero timestamps) is the caller's question.

    Args:
      data: one datagram. Bytes after the first 48 (extension fields, a MAC) are ignored.

    Returns:
      The header's fields.

    Raises:
      TimeFormatError: if ``data`` is shorter than 48 bytes.
    """
    if len(data) < NTP_PACKET_SIZE:
        raise TimeFormatError(f"an NTP packet is at least {NTP_PACKET_SIZE} bytes, not {len(data)}")
    first, *fields = _NTP_HEADER.unpack_from(data)
    # The struct's fields after the first octet are in the dataclass's order.
    return NTPPacket(first >> 6, first >> 3 & 7, first & 7, *fields)


def sntp_reply(
    request: bytes,
    *,
    receive_time: float,
    transmit_time: float,
    stratum: int = 1,
    reference_id: bytes = b"LOCL",
    precision: int = -20,
) -> bytes | None:
    """A unicast SNTP server's reply to one datagram (RFC 4330 section 5).

    Only client requests are answered: the datagram must be at least 48 bytes, mode 3,
    version 1 to 4. Anything else (a reply, a broadcast, a control message, junk) gets
    ``None`` and should be dropped without an answer, so that two servers can not be set
    ping-ponging and a forged source address gains an attacker nothing: the reply is never
    larger than the request.

    The reply has leap indicator 0, the request's version, mode 4, the given stratum,
    precision and reference id, the request's poll, root delay 0 and a root dispersion of
    about a millisecond. Its reference timestamp is ``receive_time`` rounded down to the
    second: the server claims its clock was good as of the start of the current second,
    which is true of a clock kept by the operating system and keeps the field from
    leaking finer timing than the other fields already do. The originate timestamp is the
    request's transmit timestamp, bit for bit, which is how the client matches the reply
    to its request.

    Args:
      request: the datagram as received.
      receive_time: when it arrived, in Unix seconds; take it as early as possible.
      transmit_time: when the reply leaves, in Unix seconds; take it as late as possible.
      stratum: 1 (a primary server) to 15.
      reference_id: 4 bytes naming the reference clock.
      precision: the server clock's precision as a power of two seconds (-20 is about a
        microsecond).

    Returns:
      The 48-byte reply, or ``None`` if the request must be ignored.

    Raises:
      ValueError: if ``stratum``, ``reference_id`` or ``precision`` is out of range, or a
        time is NaN or infinite (checked whatever the request).
    """
    _check_range("stratum", stratum, 1, 15)
    _check_range("precision", precision, -128, 127)
    if len(reference_id) != 4:
        raise ValueError(f"reference_id must be 4 bytes, not {len(reference_id)}")
    receive_ts = unix_to_ntp(receive_time)
    transmit_ts = unix_to_ntp(transmit_time)
    reference_ts = unix_to_ntp(math.floor(receive_time))

    if len(request) < NTP_PACKET_SIZE:
        return None
    query = parse_ntp_packet_untrusted(request)
    if query.mode != _MODE_CLIENT or not 1 <= query.version <= 4:
        return None
    reply = NTPPacket(
        leap=0,
        version=query.version,
        mode=_MODE_SERVER,
        stratum=stratum,
        poll=query.poll,
        precision=precision,
        root_delay=0,
        root_dispersion=_ROOT_DISPERSION,
        reference_id=reference_id,
        reference_ts=reference_ts,
        originate_ts=query.transmit_ts,
        receive_ts=receive_ts,
        transmit_ts=transmit_ts,
    )
    return reply.to_bytes()


def sntp_request(transmit_time: float) -> bytes:
    """An SNTPv4 client request (mode 3, version 4), as RFC 4330 section 5 describes it.

    Every field is zero except the first octet and the transmit timestamp, which the
    server will copy into its reply's originate timestamp; keep ``unix_to_ntp(
    transmit_time)`` to match the reply to the request.

    Args:
      transmit_time: when the request is sent, in Unix seconds.

    Returns:
      48 bytes.

    Raises:
      ValueError: if ``transmit_time`` is NaN or infinite.
    """
    return NTPPacket(
        leap=0,
        version=4,
        mode=_MODE_CLIENT,
        stratum=0,
        poll=0,
        precision=0,
        root_delay=0,
        root_dispersion=0,
        reference_id=bytes(4),
        reference_ts=0,
        originate_ts=0,
        receive_ts=0,
        transmit_ts=unix_to_ntp(transmit_time),
    ).to_bytes()


# --- The strftime service ----------------------------------------------------------------

#: What an empty request asks for.
DEFAULT_TIME_FORMAT = "%Y-%m-%d %X"

# A peer's format never reaches time.strftime. The platform's strftime passes unknown
# directives through on one system, raises on another, and reads the process's locale;
# glibc adds flags and widths (%-d, %_5Y, %10000Y) that can make a reply of any size.
# Instead, the POSIX directives are rendered here, the way the C locale renders them, so
# the reply is the same everywhere and each directive's output has a known small size.
# Not supported: the E and O modifiers, flags and widths, and %n (a reply is one line).


@dataclasses.dataclass(frozen=True, slots=True)
class _Moment:
    """The calendar fields of one UTC second that the directives need."""

    unix: int
    dt: datetime.datetime
    iso_year: int
    iso_week: int

    @classmethod
    def at(cls, now: float) -> _Moment:
        unix = _whole_seconds(now, "now")
        dt = _utc(unix, "now")
        iso_year, iso_week, _ = dt.isocalendar()
        return cls(unix, dt, iso_year, iso_week)

    @property
    def yday0(self) -> int:
        """Days since 1 January, 0 to 365."""
        return self.dt.timetuple().tm_yday - 1


def _week_of_year(m: _Moment, first_weekday: int) -> int:
    """%U (weeks start on Sunday, 6) and %W (on Monday, 0): week 1 starts on the first one."""
    days_into_week = (m.dt.weekday() - first_weekday) % 7
    return (m.yday0 + 7 - days_into_week) // 7


_Render = Callable[[_Moment], str]

_SIMPLE: dict[str, _Render] = {
    "a": lambda m: _WEEKDAYS[m.dt.weekday()][:3],
    "A": lambda m: _WEEKDAYS[m.dt.weekday()],
    "b": lambda m: _MONTHS[m.dt.month - 1][:3],
    "h": lambda m: _MONTHS[m.dt.month - 1][:3],
    "B": lambda m: _MONTHS[m.dt.month - 1],
    "C": lambda m: f"{m.dt.year // 100:02d}",
    "d": lambda m: f"{m.dt.day:02d}",
    "e": lambda m: f"{m.dt.day:2d}",
    "g": lambda m: f"{m.iso_year % 100:02d}",
    "G": lambda m: f"{m.iso_year:04d}",
    "H": lambda m: f"{m.dt.hour:02d}",
    "I": lambda m: f"{m.dt.hour % 12 or 12:02d}",
    "j": lambda m: f"{m.yday0 + 1:03d}",
    "m": lambda m: f"{m.dt.month:02d}",
    "M": lambda m: f"{m.dt.minute:02d}",
    "p": lambda m: "AM" if m.dt.hour < 12 else "PM",
    "s": lambda m: str(m.unix),
    "S": lambda m: f"{m.dt.second:02d}",
    "t": lambda m: "\t",
    "u": lambda m: str(m.dt.isoweekday()),
    "U": lambda m: f"{_week_of_year(m, 6):02d}",
    "V": lambda m: f"{m.iso_week:02d}",
    "w": lambda m: str(m.dt.isoweekday() % 7),
    "W": lambda m: f"{_week_of_year(m, 0):02d}",
    "y": lambda m: f"{m.dt.year % 100:02d}",
    "Y": lambda m: f"{m.dt.year:04d}",
    "z": lambda m: "+0000",
    "Z": lambda m: "UTC",
    "%": lambda m: "%",
}

# Directives that stand for a sequence of others, as the C locale defines them.
_COMPOUND = {
    "c": "%a %b %e %H:%M:%S %Y",
    "D": "%m/%d/%y",
    "F": "%Y-%m-%d",
    "r": "%I:%M:%S %p",
    "R": "%H:%M",
    "T": "%H:%M:%S",
    "x": "%m/%d/%y",
    "X": "%H:%M:%S",
}

# C0 and C1 control characters other than TAB: they have no business in a one-line reply.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _expand(fmt: str, moment: _Moment) -> str:
    """Render a format known to hold only supported directives."""
    return re.sub("%(.)", lambda match: _SIMPLE[match[1]](moment), fmt)


class _Refusal(Exception):
    """A request the strftime service answers with an error reply."""


def _render(fmt: str, moment: _Moment, bound: int) -> bytes:
    """``fmt`` formatted at ``moment``, as UTF-8; _Refusal if it exceeds ``bound`` bytes."""
    too_long = f"reply longer than {bound} bytes"
    out = bytearray()
    pos = 0
    while (percent := fmt.find("%", pos)) >= 0:
        out += fmt[pos:percent].encode("utf-8")
        if percent + 1 == len(fmt):
            raise _Refusal("format ends with a lone %")
        code = fmt[percent + 1]
        if code in _SIMPLE:
            out += _SIMPLE[code](moment).encode("ascii")
        elif code in _COMPOUND:
            out += _expand(_COMPOUND[code], moment).encode("ascii")
        else:
            shown = code if code.isprintable() else f"U+{ord(code):04X}"
            raise _Refusal(f"unsupported directive %{shown}")
        # Stop as soon as the bound is passed: a long max_request must not buy a long job.
        if len(out) > bound:
            raise _Refusal(too_long)
        pos = percent + 2
    out += fmt[pos:].encode("utf-8")
    if len(out) > bound:
        raise _Refusal(too_long)
    return bytes(out)


def format_time_untrusted(request: bytes, now: float, *, max_request: int = 256) -> bytes:
    """The seed tutorial's time service: a strftime format in, the time formatted out.

    The request is a format in UTF-8; trailing CR and LF are removed, and an empty format
    means :data:`DEFAULT_TIME_FORMAT` (``%Y-%m-%d %X``). The time is always UTC and the
    names always English, whatever the server's time zone and locale.

    Supported directives, rendered as C's strftime renders them in the C locale: ``%a %A
    %b %B %c %C %d %D %e %F %g %G %h %H %I %j %m %M %p %r %R %s %S %t %T %u %U %V %w %W
    %x %X %y %Y %z %Z %%`` (``%z`` is ``+0000``, ``%Z`` is ``UTC``, ``%s`` is Unix
    seconds). The E and O modifiers, glibc's flags and field widths, and ``%n`` are
    refused.

    Nothing a peer sends makes this raise. A bad request gets a reply that starts with
    ``error: ``, such as ``error: format is not valid UTF-8``, ``error: format longer
    than 256 bytes``, ``error: format contains NUL``, ``error: format contains a control
    character``, ``error: unsupported directive %Q``, ``error: format ends with a lone
    %`` or ``error: reply longer than 64 bytes``.

    No amplification: a reply (an error too) is never longer than ``max(64, 4 *
    len(request))`` bytes, counting the request as received, terminator included. A
    format that would expand past that (``%c`` turns 2 bytes into 24) gets an error
    instead, so a forged source address can not turn this into a traffic multiplier.

    The reply has no line terminator and never contains CR or LF, so it can be framed as
    one line.

    Args:
      request: the format as received.
      now: the time to format, in Unix seconds; fractions of a second are dropped.
      max_request: the longest format accepted, in bytes, not counting trailing CR/LF.

    Returns:
      The formatted time, or an error reply, as UTF-8.

    Raises:
      ValueError: only for our own bad arguments: ``now`` NaN, infinite or outside the
        years 1 to 9999, or ``max_request`` below 1.
    """
    if max_request < 1:
        raise ValueError(f"max_request must be at least 1, not {max_request}")
    moment = _Moment.at(now)
    bound = max(64, 4 * len(request))
    try:
        fmt = _check_request(request, max_request)
        reply = _render(fmt or DEFAULT_TIME_FORMAT, moment, bound)
    except _Refusal as exc:
        reply = f"error: {exc}".encode()
        if len(reply) > bound:  # only for an absurd max_request in the message
            reply = b"error: bad request"
    return reply


def _check_request(request: bytes, max_request: int) -> str:
    """The format in ``request``, without its line terminator; _Refusal if it is bad."""
    too_long = _Refusal(f"format longer than {max_request} bytes")
    # Measure before stripping, so a huge request costs no copy. Two bytes of slack allow
    # for a CRLF.
    if len(request) > max_request + 2:
        raise too_long
    data = bytes(request).rstrip(b"\r\n")
    if len(data) > max_request:
        raise too_long
    if b"\0" in data:
        raise _Refusal("format contains NUL")
    try:
        fmt = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refusal("format is not valid UTF-8") from None
    if _CONTROL.search(fmt):
        raise _Refusal("format contains a control character")
    return fmt
