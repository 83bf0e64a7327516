"""RFC 867, the daytime protocol (port 13): one human-readable ASCII line, in UTC and in
English whatever the server's time zone and locale.
"""

from __future__ import annotations

from ._common import MONTHS, WEEKDAYS, utc, whole_seconds

__all__ = ["format_daytime"]


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
    dt = utc(whole_seconds(now, "now"), "now")
    line = (
        f"{WEEKDAYS[dt.weekday()]}, {MONTHS[dt.month - 1]} {dt.day}, {dt.year} "
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}-UTC\r\n"
    )
    return line.encode("ascii")
