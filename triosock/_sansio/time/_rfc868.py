"""RFC 868, the time protocol (port 37): the time as a 32-bit count of seconds since
1900-01-01 00:00 UTC, 4 bytes big-endian, in both eras (see the package).
"""

from __future__ import annotations

from ._common import EPOCH_DELTA, ERA, TimeFormatError, era_seconds, whole_seconds

__all__ = ["decode_rfc868", "encode_rfc868"]


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
    count = (whole_seconds(now, "now") + EPOCH_DELTA) % ERA
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
    return float(era_seconds(int.from_bytes(data, "big")))
