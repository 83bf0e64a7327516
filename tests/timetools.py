"""What the tests of the time formats share: the eras' bounds, dates, and times for
hypothesis to draw."""

from __future__ import annotations

import calendar

from hypothesis import strategies as st

EPOCH_DELTA = 2_208_988_800  # 1900-01-01 to 1970-01-01, in seconds
ERA0_START = 2**31 - EPOCH_DELTA  # 1968-01-20 03:14:08 UTC
ERA1_START = 2**32 - EPOCH_DELTA  # 2036-02-07 06:28:16 UTC
ERA1_END = 2**32 + 2**31 - EPOCH_DELTA  # 2104-02-26 09:42:24 UTC
YEAR_1 = calendar.timegm((1, 1, 1, 0, 0, 0))
YEAR_10000 = calendar.timegm((9999, 12, 31, 23, 59, 59)) + 1


def utc(*fields: int) -> int:
    """Unix seconds of a UTC date and time: utc(2026, 11, 23, 10, 17, 0)."""
    return calendar.timegm((*fields, 0, 0, 0)[:6])


MONDAY = utc(2026, 11, 23, 10, 17, 0)
SUNDAY = utc(2021, 1, 3, 5, 6, 7)  # in ISO week 53 of 2020, %U week 1, %W week 0

unix_times = st.floats(min_value=ERA0_START, max_value=ERA1_END - 1)
calendar_times = st.floats(min_value=YEAR_1, max_value=YEAR_10000 - 1)
