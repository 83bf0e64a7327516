"""What the time protocols share: the error for bytes that are no time message, the
1900 epoch of RFC 868 and NTP with its two eras (the package's docstring tells how a
32-bit count is read), whole seconds, and UTC dates in English.
"""

from __future__ import annotations

import datetime
import math

from ..._errors import TriosockError

__all__ = [
    "EPOCH_DELTA",
    "ERA",
    "MONTHS",
    "UNIX_EPOCH",
    "WEEKDAYS",
    "TimeFormatError",
    "era_seconds",
    "utc",
    "whole_seconds",
]


class TimeFormatError(TriosockError):
    """Bytes from the wire are not a valid time message (wrong length, too short)."""


#: Seconds from 1900-01-01 00:00 UTC (the NTP and RFC 868 epoch) to the Unix epoch.
EPOCH_DELTA = 2_208_988_800
ERA = 2**32
UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def whole_seconds(t: float, what: str) -> int:
    """``t`` rounded down to whole seconds; ValueError for NaN and infinities."""
    if not math.isfinite(t):
        raise ValueError(f"{what} must be a finite number of seconds, not {t!r}")
    return math.floor(t)


def era_seconds(count: int) -> int:
    """Unix seconds for a 32-bit count of seconds since 1900, by the RFC 4330 era rule."""
    if count < 2**31:
        count += ERA  # era 1: on or after 2036-02-07 06:28:16 UTC
    return count - EPOCH_DELTA


# Our own English names: time.strftime's %A and %B follow the process's LC_TIME locale.
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
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


def utc(seconds: int, what: str) -> datetime.datetime:
    """The UTC date and time of a whole number of Unix seconds (years 1 to 9999)."""
    try:
        return UNIX_EPOCH + datetime.timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{what} is outside the years 1 to 9999") from None
