"""The seed tutorial's service, "strftime format in, formatted time out":
:func:`format_time_untrusted`, which never raises on what a peer sends and never answers
with much more than it was sent.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable

from ._common import MONTHS, WEEKDAYS, utc, whole_seconds

__all__ = ["DEFAULT_TIME_FORMAT", "format_time_untrusted"]

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
        unix = whole_seconds(now, "now")
        dt = utc(unix, "now")
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
    "a": lambda m: WEEKDAYS[m.dt.weekday()][:3],
    "A": lambda m: WEEKDAYS[m.dt.weekday()],
    "b": lambda m: MONTHS[m.dt.month - 1][:3],
    "h": lambda m: MONTHS[m.dt.month - 1][:3],
    "B": lambda m: MONTHS[m.dt.month - 1],
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
