"""Message framing over a byte stream, sans-IO.

A framer turns an arbitrary split of a byte stream into whole messages and back:

* ``feed(data) -> list[bytes]`` returns every message that ``data`` completes, in order;
  the rest waits in an internal buffer.
* ``feed_eof() -> list[bytes]`` says the stream has ended and returns what the end
  completes (for lines: an unterminated last line). Feeding after EOF is an error.
* ``encode(message) -> bytes`` returns the bytes to write for one message.

Rules both framers keep:

* Input over the limit raises :class:`~triosock.MessageTooLargeError` (which names the
  limit and carries the complete messages that preceded the bad one in that call); the
  buffer never holds more than the limit (plus one byte for a pending CR), so a peer can
  not make us grow it without bound. After the error the framer is unusable: the stream
  has lost sync, and the connection should be closed.
* ``encode`` refuses what the receiving side would refuse; ``encode_many`` frames several
  messages into one write's worth of bytes (all or nothing: a bad message raises).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from .._errors import FramingError, MessageTooLargeError

__all__ = ["DEFAULT_MAX_MESSAGE", "Framer", "LengthPrefixFramer", "LineFramer"]

#: The default limit of both framers: 64 KiB.
DEFAULT_MAX_MESSAGE = 64 * 1024


class Framer(Protocol):
    """What a framed channel needs of a framer."""

    def feed(self, data: bytes) -> list[bytes]: ...

    def feed_eof(self) -> list[bytes]: ...

    def encode(self, message: bytes) -> bytes: ...

    def encode_many(self, messages: Iterable[bytes]) -> bytes:
        """The framed messages, concatenated: one write's worth."""
        ...


class _FramerState:
    """The state both framers share: the buffer, the limit, and the broken/ended flags."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"the maximum message size must be at least 1, not {max_size}")
        self.max_size = max_size
        self._buffer = bytearray()
        self._failed: FramingError | None = None
        self._eof = False

    @property
    def buffered(self) -> int:
        """How many bytes wait for the rest of their message."""
        return len(self._buffer)

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise FramingError(f"the framer failed earlier ({self._failed}) and lost sync")
        if self._eof:
            raise FramingError("data fed after feed_eof()")

    def _fail(self, size: int, messages: list[bytes]) -> MessageTooLargeError:
        self._buffer.clear()
        exc = MessageTooLargeError(self.max_size, size, messages)
        self._failed = exc
        return exc


class LineFramer(_FramerState):
    """Lines ended by LF or CRLF, each at most ``max_line_length`` bytes.

    Messages are the lines without their terminator (one CR before the LF is removed too,
    so ``nc`` and ``telnet`` users look the same). The limit counts the line's content,
    not its terminator.

    Args:
      max_line_length: the longest line accepted, in bytes.
    """

    def __init__(self, *, max_line_length: int = DEFAULT_MAX_MESSAGE) -> None:
        super().__init__(max_line_length)

    def feed(self, data: bytes) -> list[bytes]:
        if self._failed is not None or self._eof:
            self._check_usable()
        limit = self.max_size
        buffer = self._buffer
        newline = data.find(b"\n")
        if newline == len(data) - 1 and newline >= 0 and not buffer:
            # The common case (one whole line per read) without the general path's lists.
            line = data[:-2] if data.endswith(b"\r\n") else data[:-1]
            if len(line) > limit:
                raise self._fail(len(line), [])
            return [line]
        if newline < 0:
            # No line ends here: only grow the buffer if the line can still fit. The
            # limit + 1 allows for the CR of a CRLF that has not arrived whole yet.
            if len(buffer) + len(data) > limit + (data[-1:] == b"\r"):
                raise self._fail(len(buffer) + len(data), [])
            buffer += data
            return []
        if buffer:
            buffer += data[:newline]
            first = bytes(buffer)
            buffer.clear()
        else:
            first = data[:newline]
        lines = data[newline + 1 :].split(b"\n")
        lines[0:0] = [first]
        rest = lines.pop()
        messages: list[bytes] = []
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if len(line) > limit:
                raise self._fail(len(line), messages)
            messages.append(line)
        if len(rest) > limit + (rest[-1:] == b"\r"):
            raise self._fail(len(rest), messages)
        buffer += rest
        return messages

    def feed_eof(self) -> list[bytes]:
        self._check_usable()
        self._eof = True
        if not self._buffer:
            return []
        line = bytes(self._buffer)
        self._buffer.clear()
        if line[-1:] == b"\r":
            line = line[:-1]
        if len(line) > self.max_size:  # a pending CR that turned out not to be a CRLF
            raise self._fail(len(line), [])
        return [line]

    def encode(self, message: bytes) -> bytes:
        if b"\n" in message:
            raise FramingError("a line must not contain LF")
        if len(message) > self.max_size:
            raise MessageTooLargeError(self.max_size, len(message))
        return message + b"\n"

    def encode_many(self, messages: Iterable[bytes]) -> bytes:
        lines = list(messages)
        limit = self.max_size
        for message in lines:
            if b"\n" in message or len(message) > limit:
                self.encode(message)  # raises the error that message deserves
        if not lines:
            return b""
        lines.append(b"")
        return b"\n".join(lines)


class LengthPrefixFramer(_FramerState):
    """Messages preceded by their length as a 4-byte big-endian unsigned integer.

    Args:
      max_size: the largest payload accepted, in bytes (at most 2**32 - 1). A header
        announcing more fails at once, before any payload is buffered.
    """

    HEADER = 4

    def __init__(self, *, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        if max_size > 0xFFFFFFFF:
            raise ValueError("a 4-byte length prefix cannot announce more than 2**32 - 1 bytes")
        super().__init__(max_size)

    def feed(self, data: bytes) -> list[bytes]:
        self._check_usable()
        header = self.HEADER
        buffer = self._buffer
        messages: list[bytes] = []
        pos = 0
        end = len(data)
        if buffer:
            # Finish the message that is already under way, taking only what it needs.
            if len(buffer) < header:
                take = min(header - len(buffer), end)
                buffer += data[:take]
                pos = take
                if len(buffer) < header:
                    return messages
                self._check_size(int.from_bytes(buffer[:header], "big"), messages)
            size = int.from_bytes(buffer[:header], "big")
            take = min(header + size - len(buffer), end - pos)
            buffer += data[pos : pos + take]
            pos += take
            if len(buffer) < header + size:
                return messages
            messages.append(bytes(buffer[header:]))
            buffer.clear()
        while end - pos >= header:
            size = int.from_bytes(data[pos : pos + header], "big")
            self._check_size(size, messages)
            if end - pos - header < size:
                break
            messages.append(data[pos + header : pos + header + size])
            pos += header + size
        buffer += data[pos:]
        return messages

    def _check_size(self, size: int, messages: list[bytes]) -> None:
        if size > self.max_size:
            raise self._fail(size, messages)

    def feed_eof(self) -> list[bytes]:
        self._check_usable()
        self._eof = True
        if self._buffer:
            pending = len(self._buffer)
            self._buffer.clear()
            raise FramingError(f"the stream ended inside a message ({pending} bytes pending)")
        return []

    def encode(self, message: bytes) -> bytes:
        if len(message) > self.max_size:
            raise MessageTooLargeError(self.max_size, len(message))
        return len(message).to_bytes(self.HEADER, "big") + message

    def encode_many(self, messages: Iterable[bytes]) -> bytes:
        return b"".join([self.encode(message) for message in messages])
