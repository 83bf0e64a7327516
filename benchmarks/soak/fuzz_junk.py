"""The junk of the fuzz soak, pure: each generator takes a seeded ``random.Random`` and
returns one case, a kind (what it tries) and its bytes, so a run replays from its seed.

TCP cases are one connection's bytes; WebSocket cases carry the close code the server
must answer with (RFC 6455 section 7.4.1: 1002 protocol error, 1007 bad UTF-8 in text,
1009 too big), or ``None`` when any error code or a plain close will do.
"""

from __future__ import annotations

import base64
import os
import random
import struct

IAC, DONT, DO, WONT, WILL, SB, SE, AYT = 255, 254, 253, 252, 251, 250, 240, 246

#: The chat's and strftime's line limit (``--max-line-length`` default, STRFTIME_MAX_LINE).
MAX_LINE = 4096
#: The largest UDP payload over IPv4.
MAX_DATAGRAM = 65507

Case = tuple[str, bytes]


def random_bytes(rng: random.Random, most: int = 8192) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 2, rng.randint(0, 64), rng.randint(0, most)]))


def bad_utf8(rng: random.Random) -> bytes:
    pieces = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80", b"\xf4\x90"]
    return b"".join(rng.choice([*pieces, b"ok", "é".encode()]) for _ in range(rng.randint(1, 40)))


def telnet(rng: random.Random) -> bytes:
    """IAC sequences: negotiation, AYT, escaped 0xFF, subnegotiations cut short."""
    out = bytearray()
    for _ in range(rng.randint(1, 12)):
        pick = rng.randrange(7)
        if pick == 0:
            out += bytes([IAC, rng.choice([DO, DONT, WILL, WONT]), rng.randrange(256)])
        elif pick == 1:
            out += bytes([IAC, AYT])
        elif pick == 2:
            out += bytes([IAC, IAC]) + b"text"
        elif pick == 3:  # a subnegotiation never ended
            out += bytes([IAC, SB, rng.randrange(256)]) + rng.randbytes(rng.randint(0, 600))
        elif pick == 4:
            out += bytes([IAC, SB, 24, 0]) + b"xterm" + bytes([IAC, SE])
        elif pick == 5:
            out += bytes([IAC, rng.randrange(240, 256)])
        else:
            out += rng.choice([b"\r\n", b"\r\0", b"\r", b"\n", b"hello"])
    if rng.random() < 0.3:
        out += bytes([IAC])  # truncated at the end of the stream
    return bytes(out)


def line_junk(rng: random.Random) -> Case:
    """Near-valid line input, for the chat's TCP members and the strftime TCP service."""
    pick = rng.randrange(8)
    if pick == 0:
        return "random", random_bytes(rng)
    if pick == 1:
        return "overlong", b"x" * rng.randint(MAX_LINE + 1, 5 * MAX_LINE) + b"\n"
    if pick == 2:
        return "bad-utf8", bad_utf8(rng) + b"\n"
    if pick == 3:
        return "telnet", telnet(rng)
    if pick == 4:
        return "nul-cr", b"a\0b\rc\r\0d\r" + rng.randbytes(rng.randint(0, 32)) + b"\0\r"
    if pick == 5:
        cmd = rng.choice([b"/nick ", b"/join ", b"/msg ", b"/me ", b"/", b"/quit ", b"/who "])
        return "command", cmd + rng.choice([random_bytes(rng, 300), bad_utf8(rng)]) + b"\n"
    if pick == 6:
        return "many-lines", b"".join(random_bytes(rng, 200) + b"\n" for _ in range(50))
    return "mixed", b"".join(line_junk(rng)[1] for _ in range(3))


def irc_junk(rng: random.Random) -> Case:
    """Near-valid IRC input for the chat's IRC listener: line junk, IRC's own shapes
    (malformed prefixes and tags, NUL and CR inside, a line over 512 bytes, floods of
    NICK and JOIN, a CAP negotiation never ended), after a registration half the time."""
    pick = rng.randrange(6)
    if pick == 0:
        kind, payload = line_junk(rng)
    elif pick == 1:
        kind = "irc-overlong"
        payload = b"PRIVMSG #lobby :" + b"x" * rng.randint(600, 5 * MAX_LINE) + b"\r\n"
    elif pick == 2:
        kind = "irc-malformed"
        shapes = [b":", b":src", b"@", b"@=x PING a", b"@a=b", b" PING", b"PRIVMSG #lobby :a\0b"]
        payload = b"".join(rng.choice(shapes) + b"\r\n" for _ in range(rng.randint(1, 20)))
    elif pick == 3:
        kind = "irc-flood"
        verb = rng.choice([b"NICK n%d", b"JOIN #r%d", b"WHO #r%d", b"PRIVMSG #lobby :%d"])
        # within the rate limit's burst (100 lines): past it a flood is paced, at 50
        # lines a second, which the tests pin; here each case must end in seconds
        payload = b"".join(verb % i + b"\r\n" for i in range(rng.randint(20, 90)))
    elif pick == 4:
        kind = "irc-cap"
        payload = b"CAP LS 302\r\nCAP REQ :" + random_bytes(rng, 200) + b"\r\nNICK c\r\n"
    else:
        kind = "irc-sasl"
        payload = (
            b"CAP REQ :sasl\r\nAUTHENTICATE PLAIN\r\nAUTHENTICATE "
            + rng.choice([b"*", b"+", b"!!notbase64", b"A" * 400, random_bytes(rng, 100)])
            + b"\r\n"
        )
    if rng.random() < 0.5:
        nick = b"fz%d" % rng.randrange(10**6)
        payload = b"NICK " + nick + b"\r\nUSER f 0 * :f\r\n" + payload
    return kind, payload


def datagram(rng: random.Random) -> bytes:
    """A datagram of random size up to the largest, the empty one included."""
    size = rng.choice(
        [0, 1, rng.randint(2, 48), rng.randint(0, 1500), rng.randint(0, MAX_DATAGRAM)]
    )
    if rng.random() < 0.02:
        size = MAX_DATAGRAM
    if rng.random() < 0.3 and size:
        return (bad_utf8(rng) + rng.randbytes(size))[:size]
    return rng.randbytes(size)


def sntp_packets(rng: random.Random) -> list[bytes]:
    """One packet of every length 0..100 with random fields; a third of those of 48 bytes
    or more look like client requests (mode 3, version 1..4)."""
    packets = []
    for length in range(101):
        data = bytearray(rng.randbytes(length))
        if length >= 48 and rng.random() < 0.33:
            data[0] = rng.randrange(4) << 6 | rng.randint(1, 4) << 3 | 3
        packets.append(bytes(data))
    return packets


def sntp_is_request(data: bytes) -> bool:
    """What the SNTP server documents it answers: at least 48 bytes, mode 3, version 1..4."""
    return len(data) >= 48 and data[0] & 7 == 3 and 1 <= data[0] >> 3 & 7 <= 4


# --- HTTP ----------------------------------------------------------------------------------

GOOD = b"GET / HTTP/1.1\r\nHost: fuzz\r\n\r\n"


def http_junk(rng: random.Random) -> Case:
    pick = rng.randrange(12)
    if pick == 0:
        return "random", random_bytes(rng) + b"\r\n\r\n"
    if pick == 1:
        line = rng.choice([
            b"GET\r\n", b"GET /\r\n", b"GET / HTTP/9.9\r\n", b"G@T / HTTP/1.1\r\n",
            b"GET  /  HTTP/1.1\r\n", b"GET / HTTP/1.1 extra\r\n", b" GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.\r\n", b"GET /\x00 HTTP/1.1\r\n", b"GET / http/1.1\r\n",
            b"\r\n\r\nGET / FTP/1.0\r\n", b"GET " + bad_utf8(rng) + b" HTTP/1.1\r\n",
        ])  # fmt: skip
        return "request-line", line + b"Host: fuzz\r\n\r\n"
    if pick == 2:
        header = rng.choice([
            b"NoColon\r\n", b"Bad Name: x\r\n", b"Name : x\r\n", b": empty\r\n",
            b"X: a\x00b\r\n", b" folded: x\r\n", b"X: \x7f\r\n", b"Host: a\r\nHost: b\r\n",
            b"Content-Length: -1\r\n", b"Content-Length: 1, 2\r\n", b"Content-Length: x\r\n",
            b"Transfer-Encoding: gzip\r\n",
        ])  # fmt: skip
        return "header", b"GET / HTTP/1.1\r\nHost: fuzz\r\n" + header + b"\r\n"
    if pick == 3:
        return "huge-header", GOOD[:-2] + b"X-Big: " + b"a" * rng.randint(
            17_000, 80_000
        ) + b"\r\n\r\n"
    if pick == 4:
        many = b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(rng.randint(600, 3000)))
        return "many-headers", GOOD[:-2] + many + b"\r\n"
    if pick == 5:
        target = b"/" + b"a" * rng.randint(8200, 15_000)  # over max_target, under the block's
        return "huge-target", b"GET " + target + b" HTTP/1.1\r\nHost: fuzz\r\n\r\n"
    if pick == 6:
        body = rng.choice([
            b"zz\r\nabc\r\n0\r\n\r\n", b"5\r\nab\r\n", b"-1\r\n", b"5;\x00\r\nhello\r\n0\r\n\r\n",
            b"ffffffffffffffffff\r\n", b"3\r\nabcde\r\n0\r\n\r\n", b"0\r\nTrailer\r\n\r\n",
            b"4\r\nabcd", rng.randbytes(rng.randint(0, 500)),
        ])  # fmt: skip
        head = b"POST /echo HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n"
        return "bad-chunked", head + body
    if pick == 7:
        head = b"POST /echo HTTP/1.1\r\nHost: fuzz\r\nContent-Length: %d\r\n"
        return "big-body", head % rng.randint(1_048_577, 10**12) + b"\r\n" + b"x" * 100
    if pick == 8:
        both = b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        return "cl-and-te", b"POST /echo HTTP/1.1\r\nHost: fuzz\r\n" + both
    if pick == 9:  # pipelined: good requests, then a broken one (the count says how many)
        good = rng.randint(1, 8)
        return f"pipelined:{good}", GOOD * good + http_junk_simple(rng)
    if pick == 10:
        return "http10-no-host", b"GET / HTTP/1.0\r\n" + bad_utf8(rng) + b"\r\n\r\n"
    return "no-host", b"GET / HTTP/1.1\r\n\r\n"


def http_junk_simple(rng: random.Random) -> bytes:
    return rng.choice(
        [b"GET / HTTP/9.9\r\n\r\n", b"NoColon\r\n\r\n", rng.randbytes(40) + b"\r\n\r\n"]
    )


# --- WebSocket -----------------------------------------------------------------------------


def ws_key() -> bytes:
    return base64.b64encode(os.urandom(16))


def handshake(path: bytes = b"/ws", extra: bytes = b"", key: bytes | None = None) -> bytes:
    return (
        b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + (key or ws_key()) + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


def bad_handshake(rng: random.Random) -> Case:
    """A handshake the server must refuse with a 4xx (or by closing)."""
    up = b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    pick = rng.randrange(9)
    if pick == 0:
        return "hs-no-key", b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n" + up + b"\r\n"
    if pick == 1:
        return "hs-bad-key", handshake(key=b"not base64!")
    if pick == 2:
        return "hs-version", handshake().replace(b"Version: 13", b"Version: 8")
    if pick == 3:
        return "hs-no-upgrade", handshake().replace(b"Upgrade: websocket\r\n", b"")
    if pick == 4:
        return "hs-post", b"POST" + handshake()[3:]
    if pick == 5:
        return "hs-origin", handshake(extra=b"Origin: http://evil.example\r\n")
    if pick == 6:
        return "hs-huge", handshake(extra=b"X-Big: " + b"a" * rng.randint(20_000, 70_000) + b"\r\n")
    if pick == 7:
        return "hs-random", random_bytes(rng) + b"\r\n\r\n"
    return "hs-http09", b"GET /ws\r\n\r\n"


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """A client frame, right or wrong as asked (``length`` claims a length of its own)."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(8, struct.pack("!H", code) + reason)


def bad_frames(rng: random.Random) -> tuple[str, bytes, int | None]:
    """Frames after a valid handshake, and the close code they must get."""
    text = b'{"type": "line", "text": "hi"}'
    pick = rng.randrange(13)
    if pick == 0:
        return "ws-opcode", frame(rng.choice([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]), b"x"), 1002
    if pick == 1:
        return "ws-unmasked", frame(1, text, masked=False), 1002
    if pick == 2:
        return "ws-oversize", frame(2, b"", length=rng.choice([1 << 32, 1 << 40, 1 << 62])), 1009
    if pick == 3:
        return "ws-bad-utf8", frame(1, bad_utf8(rng) + b"\xff"), 1007
    if pick == 4:
        return "ws-fragmented-ping", frame(9, b"p", fin=False), 1002
    if pick == 5:
        return "ws-long-ping", frame(9, b"p" * 200), 1002
    if pick == 6:
        return "ws-rsv", frame(1, text, rsv=rng.randint(1, 7)), 1002
    if pick == 7:
        return "ws-lone-continuation", frame(0, b"more"), 1002
    if pick == 8:
        return "ws-interleaved", frame(1, b"par", fin=False) + frame(1, b"tial"), 1002
    if pick == 9:
        return "ws-bad-close-code", close_frame(rng.choice([0, 999, 1005, 1006, 1015, 2999])), 1002
    if pick == 10:
        return "ws-bad-close-reason", close_frame(1000, b"\xff\xfe"), 1007
    if pick == 11:  # valid frames of junk chat text, then a clean close: 1000 back
        junk = rng.randbytes(rng.randint(0, 200)).decode("latin-1").encode()
        return "ws-junk-text-then-close", frame(1, junk) + close_frame(1000), 1000
    return "ws-random", rng.randbytes(rng.randint(1, 300)), None
