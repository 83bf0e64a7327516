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

One module a protocol: :mod:`._rfc868`, :mod:`._daytime`, :mod:`._sntp` and
:mod:`._strftime`; :mod:`._common` holds what they share (the error, the epoch and its
eras, UTC dates in English).
"""

from __future__ import annotations

from ._common import TimeFormatError
from ._daytime import format_daytime
from ._rfc868 import decode_rfc868, encode_rfc868
from ._sntp import (
    NTP_PACKET_SIZE,
    NTPPacket,
    ntp_to_unix,
    parse_ntp_packet_untrusted,
    sntp_reply,
    sntp_request,
    unix_to_ntp,
)
from ._strftime import DEFAULT_TIME_FORMAT, format_time_untrusted

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
