"""SNTPv4 (RFC 4330, port 123): :class:`NTPPacket`, :func:`parse_ntp_packet_untrusted`,
:func:`sntp_reply` for a server, :func:`sntp_request` for a client, and the timestamp
conversions :func:`unix_to_ntp` / :func:`ntp_to_unix` (their eras: see the package).
"""

from __future__ import annotations

import dataclasses
import math
import struct

from ._common import EPOCH_DELTA, ERA, TimeFormatError, era_seconds, whole_seconds

__all__ = [
    "NTP_PACKET_SIZE",
    "NTPPacket",
    "ntp_to_unix",
    "parse_ntp_packet_untrusted",
    "sntp_reply",
    "sntp_request",
    "unix_to_ntp",
]

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
    seconds = whole_seconds(t, "the time")
    # t - floor(t) is exact in binary floating point, so no precision is lost before the
    # fraction is scaled.
    fraction = round((t - seconds) * 2**32)
    if fraction == 2**32:
        seconds += 1
        fraction = 0
    return ((seconds + EPOCH_DELTA) % ERA) << 32 | fraction


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
    return era_seconds(ts >> 32) + (ts & 0xFFFFFFFF) / 2**32


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
