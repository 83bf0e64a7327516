"""TCP input, sans-IO: lines as a user typed them, from nc, socat or a telnet client.

:class:`LineReader` turns the bytes of a TCP connection into lines:

* A line ends at LF, CR LF, CR NUL (telnet's end of line in character mode) or a CR
  alone; the terminator is not part of the line, and no empty line is made of the two
  bytes of one CR LF or CR NUL.
* Telnet commands (RFC 854) are taken out before anything else: ``IAC IAC`` is a
  literal 0xFF byte; option negotiation (``IAC WILL/WONT/DO/DONT x``) is answered
  by refusing every option (``DO x`` gets ``WONT x``, ``WILL x`` gets ``DONT x``;
  ``WONT``/``DONT`` need no answer, RFC 1143), which keeps a telnet client in its
  plain NVT mode: ``mode character`` falls back to sending whole lines, and the
  ``DO TIMING-MARK`` that telnet sends after Ctrl-C is answered, so its screen does
  not freeze waiting for one; subnegotiations (``IAC SB ... IAC SE``) are skipped, and
  since a server that agrees to no option never gets a real one, a subnegotiation also
  ends at a line end or after :data:`MAX_SUBNEGOTIATION` bytes (so that Latin-1 text
  with ``ÿú``, 0xFF 0xFA, costs at most the rest of its line);
  ``IAC EC`` (erase character) becomes DEL in the line, which the command parser
  applies as an erasure; ``IAC EL`` (erase line) and the abort commands ``IAC IP``,
  ``IAC AO`` and ``IAC BRK`` throw the line typed so far away; ``IAC AYT`` (are you
  there?) gives an :class:`AreYouThere` item; every other command is ignored. 0xFF
  followed by a byte that is no telnet command (below 240) is data, both bytes kept. The
  answers to send are taken with :meth:`LineReader.take_replies` (all of them, as bytes)
  or :meth:`LineReader.take_answers` (one :class:`Negotiation` each, so that a server
  charges each to its sender's rate limit, as a line). A client that is not
  telnet sends 0xFF only in text that is not UTF-8 (the parser replaces it anyway).
* **The limit.** A line longer than ``max_line_length`` bytes (terminator not counted)
  is refused whole: it gives an :class:`Overlong` item with its size, and the reader
  goes on with the next line. The buffer never holds more than the limit.
* **Not a chat client** (``refuse_http=True``). A first line that is an HTTP request
  line, ``METHOD SP target SP HTTP/x.y`` (RFC 9112: a token, visible ASCII, the
  version, then CR or LF), gives an :class:`HttpRequest` item and nothing more: the
  reader takes nothing after it. A web page can make a browser send a request to any
  port, its body written by the page (a cross-protocol attack); a chat port must never
  take that for a user's lines. The first line is screened as it arrives, byte class by
  byte class, so a target of any length is screened without being held, and the
  verdict comes at the latest with the line's end, before the line is an item: either
  an :class:`HttpRequest`, or the first line read as any other. Only the first line is
  screened (a request line always comes first), and a user whose first line has that
  shape (``GET / HTTP/1.1``) is taken for a browser. The same page can send a browser to
  ``https://`` on the port: a first byte 0x16, a TLS record's (a ClientHello, whose
  server name the page chooses), gives a :class:`TlsHello` item and nothing more; no
  one types Ctrl-V as their first character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["AreYouThere", "HttpRequest", "LineReader", "Negotiation", "Overlong", "TlsHello"]

IAC, DONT, DO, WONT, WILL, SB = 255, 254, 253, 252, 251, 250
SE, NOP, DM, BRK, IP, AO, AYT, EC, EL, GA = 240, 241, 242, 243, 244, 245, 246, 247, 248, 249
_CR, _LF, _NUL = 13, 10, 0

_DATA, _COMMAND, _OPTION, _SUB, _SUB_IAC = range(5)
# The first line's screen for an HTTP request line (see the module docstring).
_METHOD, _TARGET, _VERSION, _REFUSED = range(5, 9)
_SPECIAL = re.compile(rb"[\r\n\xff]")
_SUB_END = re.compile(rb"[\r\n\xff]")
_SP = 32
_TLS_HANDSHAKE = b"\x16"  # the content type of a TLS handshake record
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")  # RFC 9110's tchar
_VISIBLE = re.compile(rb"[\x21-\x7e]*")
_HTTP_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
#: The screen's rules, one row a word of the request line: the bytes the word is made
#: of, and the state after the space that ends it (None: the line must end after it).
_SCREEN: dict[int, tuple[re.Pattern[bytes], int | None]] = {
    _METHOD: (_TOKEN, _TARGET),
    _TARGET: (_VISIBLE, _VERSION),
    _VERSION: (_VISIBLE, None),
}
#: Enough of a word to tell an HTTP version (``HTTP/1.1``) from anything longer.
_WORD_KEPT = len(b"HTTP/1.1") + 1

#: The longest subnegotiation skipped before its bytes count as data again.
MAX_SUBNEGOTIATION = 256
_ANSWERS = {DO: WONT, WILL: DONT}


@dataclass(frozen=True, slots=True)
class Overlong:
    """A line longer than the limit was refused; ``size`` is its length in bytes."""

    size: int


@dataclass(frozen=True, slots=True)
class AreYouThere:
    """The telnet user sent ``IAC AYT``: show them the server is there."""


@dataclass(frozen=True, slots=True)
class Negotiation:
    """The telnet user asked for an option; ``answer`` (``IAC WONT x`` or ``IAC DONT x``)
    refuses it, to be sent."""

    answer: bytes


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """The first line was an HTTP request line: the client is not a chat client (see
    the module docstring). The reader takes nothing after it."""


@dataclass(frozen=True, slots=True)
class TlsHello:
    """The first byte began a TLS handshake (a browser sent to ``https://`` on the
    port): the client is not a chat client. The reader takes nothing after it."""


#: What the reader gives.
Item: TypeAlias = bytes | Overlong | AreYouThere | HttpRequest | TlsHello


class LineReader:
    """Lines from a TCP byte stream, telnet-aware, with a hard limit per line.

    Args:
      max_line_length: the longest line accepted, in bytes, at least 1.
      refuse_http: screen the first line for an HTTP request line (see the module
        docstring).
    """

    __slots__ = (
        "_after_cr",
        "_line",
        "_overlong",
        "_replies",
        "_state",
        "_sub_length",
        "_verb",
        "_word",
        "max_line_length",
    )

    def __init__(self, max_line_length: int, *, refuse_http: bool = False) -> None:
        if max_line_length < 1:
            raise ValueError(f"max_line_length must be at least 1 byte, not {max_line_length}")
        self.max_line_length = max_line_length
        self._line = bytearray()
        self._overlong: int | None = None  # size so far of a line being refused
        self._after_cr = False  # the last byte ended a line with CR: skip an LF or NUL
        # Not _DATA while the first line is screened: feed() takes its slow path, and
        # the fast path of every later line pays nothing for the screen.
        self._state = _METHOD if refuse_http else _DATA
        self._word = b""  # the start of the screened word
        self._verb = 0
        self._sub_length = 0
        self._replies = bytearray()

    @property
    def screening(self) -> bool:
        """True while the first line is screened and no verdict has come yet."""
        return _METHOD <= self._state <= _VERSION

    @property
    def refused(self) -> bool:
        """True once the first line was an HTTP request line, or the first byte began a
        TLS handshake."""
        return self._state == _REFUSED

    @property
    def buffered(self) -> int:
        """Bytes of the line under way (at most the limit)."""
        return len(self._line)

    def take_replies(self) -> bytes:
        """The telnet answers to send, in order; each is returned once."""
        replies = bytes(self._replies)
        self._replies.clear()
        return replies

    def take_answers(self) -> list[Negotiation]:
        """The telnet answers to send, one per option refused, in order; each is
        returned once (what :meth:`take_replies` would return, split)."""
        replies = self.take_replies()
        return [Negotiation(replies[i : i + 3]) for i in range(0, len(replies), 3)]

    def feed(self, data: bytes) -> list[Item]:
        """Every line (or :class:`Overlong`, :class:`AreYouThere`, :class:`HttpRequest`,
        :class:`TlsHello`) that ``data`` completes."""
        out: list[Item] = []
        if (
            self._state == _DATA
            and not self._after_cr
            and self._overlong is None
            and b"\r" not in data
            and b"\xff" not in data
        ):
            return self._feed_plain(data, out)
        position, end = 0, len(data)
        if self._state >= _METHOD:
            position = self._screen(data, out)
        while position < end:
            if self._state == _DATA:
                position = self._data(data, position, out)
            else:
                position = self._telnet(data, position, out)
        return out

    def _feed_plain(self, data: bytes, out: list[Item]) -> list[Item]:
        """The common case: LF-terminated lines, nothing for telnet."""
        lines = data.split(b"\n")
        rest = lines.pop()
        if lines:
            if self._line:
                lines[0] = bytes(self._line) + lines[0]
                self._line.clear()
            limit = self.max_line_length
            for line in lines:
                out.append(line if len(line) <= limit else Overlong(len(line)))
        self._append(rest)
        return out

    def _screen(self, data: bytes, out: list[Item]) -> int:
        """Screen the first line (see :data:`_SCREEN`); where ordinary reading goes on
        (the end of ``data`` when the screen took all of it, or refused the line)."""
        position, end = 0, len(data)
        if self._state == _METHOD and not self._line and data[:1] == _TLS_HANDSHAKE:
            out.append(TlsHello())
            self._state = _REFUSED
            return end
        while self._state != _REFUSED:
            chars, after = _SCREEN[self._state]
            match = chars.match(data, position)
            assert match is not None  # each pattern matches the empty string
            stop = match.end()
            if stop > position:
                word = data[position:stop]
                self._append(word)  # the line's bytes, should it be no request line
                self._word = (self._word + word)[:_WORD_KEPT]
            if stop == end:
                return end  # the word goes on in the next data
            byte = data[stop]
            if after is not None and byte == _SP and self._word:
                self._append(b" ")
                self._state, self._word = after, b""
                position = stop + 1
            elif after is None and byte in (_CR, _LF) and _HTTP_VERSION.fullmatch(self._word):
                out.append(HttpRequest())
                self._state = _REFUSED
                self._line.clear()
                self._overlong = None
            else:  # no request line: this byte and the rest are read as always
                self._state, self._word = _DATA, b""
                return stop
        return end

    def _data(self, data: bytes, position: int, out: list[Item]) -> int:
        if self._after_cr:
            self._after_cr = False
            if data[position] in (_LF, _NUL):  # the second byte of CR LF or CR NUL
                return position + 1
        match = _SPECIAL.search(data, position)
        stop = len(data) if match is None else match.start()
        if stop > position:
            self._append(data[position:stop])
        if match is None:
            return stop
        byte = data[stop]
        if byte == IAC:
            self._state = _COMMAND
        else:
            self._end_line(out)
            self._after_cr = byte == _CR
        return stop + 1

    def _telnet(self, data: bytes, position: int, out: list[Item]) -> int:
        state = self._state
        if state == _SUB:  # skip to the IAC that may end the subnegotiation
            match = _SUB_END.search(data, position)
            stop = len(data) if match is None else match.start()
            room = MAX_SUBNEGOTIATION - self._sub_length
            if stop - position > room:  # too long to be telnet's: data again
                self._state = _DATA
                return position + room
            self._sub_length += stop - position
            if match is None:
                return stop
            if data[stop] == IAC:
                self._state = _SUB_IAC
                return stop + 1
            self._state = _DATA  # a line end: no subnegotiation after all
            return stop
        byte = data[position]
        if state == _SUB_IAC:
            self._state = _DATA if byte == SE else _SUB
        elif state == _OPTION:
            self._state = _DATA
            answer = _ANSWERS.get(self._verb)
            if answer is not None:  # refused, every time it is asked (no loop: RFC 1143)
                self._replies += bytes((IAC, answer, byte))
        else:  # the byte after IAC
            self._state = _DATA
            if byte == IAC:
                self._append(b"\xff")
            elif byte in (WILL, WONT, DO, DONT):
                self._verb = byte
                self._state = _OPTION
            elif byte == SB:
                self._state = _SUB
                self._sub_length = 0
            elif byte == EC:
                self._append(b"\x7f")
            elif byte in (EL, IP, AO, BRK):
                self._line.clear()
                self._overlong = None
            elif byte == AYT:
                out.append(AreYouThere())
            elif byte < SE:  # no telnet command: 0xFF was data, and so is this byte
                self._append(b"\xff")
                return position
        return position + 1

    def _append(self, chunk: bytes) -> None:
        if self._overlong is not None:
            self._overlong += len(chunk)
        elif len(self._line) + len(chunk) > self.max_line_length:
            self._overlong = len(self._line) + len(chunk)
            self._line.clear()
        else:
            self._line += chunk

    def _end_line(self, out: list[Item]) -> None:
        if self._overlong is not None:
            out.append(Overlong(self._overlong))
            self._overlong = None
        else:
            out.append(bytes(self._line))
            self._line.clear()

    def feed_eof(self) -> list[Item]:
        """What the end of the stream completes: an unterminated last line, if any."""
        out: list[Item] = []
        if self._state == _REFUSED:
            return out
        if self._line or self._overlong is not None:
            self._end_line(out)
        self._state = _DATA
        return out
