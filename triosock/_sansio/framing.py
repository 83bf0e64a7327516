"""Message framing over a byte stream, sans-IO.

A framer turns an arbitrary split of a byte stream into whole messages and back:

* ``feed(data) -> list[bytes]`` returns every message that ``data`` completes, in order;
  the rest waits in an internal buffer.
* ``feed_eof() -> list[bytes]`` says the stream has ended and returns what the end
  completes (for lines: an unterminated last line); called again, it returns nothing
  more. Feeding data after EOF is an error.
* ``encode(message) -> bytes`` returns the bytes to write for one message.

Rules both framers keep:

* **A message over the limit is refused whole, and the stream goes on.** ``feed`` raises
  :class:`~triosock.MessageTooLargeError` once for it, as soon as it is known to be too
  long (for a line: when its bytes pass the limit, before its end arrives; for a
  length-prefixed message: at its header). The error names the limit and carries the
  complete messages that preceded the refused one in that call. The refused message's
  bytes are then skipped as they arrive, up to its end (the next LF; the announced
  length), without being kept: the buffer never holds more than the limit (plus one byte
  for a pending CR), however long the refused message. What followed it in the same call
  is kept: the next ``feed`` (``feed(b"")`` when there is nothing new) returns the
  messages it completes. So one refused message costs one error, never the connection.
* A stream that ends inside a length-prefixed message is a :class:`~triosock.FramingError`
  from ``feed_eof``.
* ``encode`` refuses what the receiving side would refuse: a message over the limit
  raises :class:`~triosock.MessageTooLargeError` (nothing is framed; the limit applies to
  sending too), a line containing LF a :class:`~triosock.FramingError`. ``encode_many``
  frames several messages into one write's worth of bytes (all or nothing: a bad
  message raises).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from .._errors import FramingError, MessageTooLargeError

__all__ = ["DEFAULT_MAX_MESSAGE", "Framer", "LengthPrefixFramer", "LineFramer"]

#: The default limit of both framers: 64 KiB.
DEFAULT_MAX_MESSAGE = 64 * 1024


class Framer(Protocol):
    """What a framed channel needs of a framer.

    ``feed(data)`` returns the messages ``data`` completes; ``feed_eof()`` what the end
    completes; ``encode(message)`` the bytes to write. A message over the limit is refused
    whole: ``feed`` raises :class:`~triosock.MessageTooLargeError` once, skips the
    message as it arrives without keeping it, and keeps what followed it in that call,
    which the next ``feed`` (``feed(b"")`` when there is nothing new) frames. ``encode``
    refuses what the other side would refuse.
    """

    def feed(self, data: bytes) -> list[bytes]:
        """Every message ``data`` completes, in order.

        Raises:
          MessageTooLargeError: a message is over the limit (once per refused message).
        """
        ...

    def feed_eof(self) -> list[bytes]:
        """What the end of the stream completes.

        Raises:
          FramingError: the stream ended inside a message.
        """
        ...

    def encode(self, message: bytes) -> bytes:
        """The bytes to write for ``message``.

        Raises:
          MessageTooLargeError: ``message`` is over the limit.
        """
        ...

    def encode_many(self, messages: Iterable[bytes]) -> bytes:
        """The framed messages, concatenated: one write's worth."""
        ...


class _FramerState(Framer):
    """The state both framers share: the buffer, the limit, the bytes kept after a
    refusal, and the end."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"the maximum message size must be at least 1, not {max_size}")
        self.max_size = max_size
        self._buffer = bytearray()
        # What followed a refused message in the call that refused it: the call's data and
        # where it starts (kept as it came: many refusals in one read copy nothing).
        self._rest = b""
        self._rest_at = 0
        self._eof = False
        # Anything but the common case (a rest kept, the end said, a refused line being
        # skipped): one test on the hot path instead of three.
        self._unusual = False

    @property
    def buffered(self) -> int:
        """How many bytes wait for the rest of their message (or to be framed again,
        after a refusal)."""
        return len(self._buffer) + len(self._rest) - self._rest_at

    def _take(self, data: bytes) -> tuple[bytes, int]:
        """What to frame now and where it starts: ``data`` after what a refusal kept.

        Raises:
          FramingError: the end of the stream was said already.
        """
        if self._eof:
            raise FramingError("data fed after feed_eof()")
        rest, at = self._rest, self._rest_at
        self._rest, self._rest_at = b"", 0
        self._unusual = False  # a subclass sets it again if it still skips
        if at < len(rest):
            return (rest[at:] + data, 0) if data else (rest, at)
        return data, 0

    def _end_rest(self) -> list[bytes] | None:
        """At the end of the stream: the messages what a refusal kept completes (None
        when the end was said already). A refusal among them keeps the rest again."""
        if self._eof:
            return None
        messages = self.feed(b"") if self._rest_at < len(self._rest) else []
        self._eof = self._unusual = True
        return messages

    def _refuse(
        self,
        size: int,
        messages: list[bytes],
        data: bytes = b"",
        at: int = 0,
        *,
        exact: bool = True,
    ) -> MessageTooLargeError:
        """The error for a refused message of ``size`` bytes (``exact``: not only at
        least that many); what followed it (``data`` from ``at``) is kept for the next
        call."""
        self._rest, self._rest_at = data, at
        if at < len(data):
            self._unusual = True
        return MessageTooLargeError(self.max_size, size, messages, exact=exact)


class LineFramer(_FramerState):
    """Lines ended by LF or CRLF, each at most ``max_line_length`` bytes.

    Messages are the lines without their terminator (one CR before the LF is removed too,
    so ``nc`` and ``telnet`` users look the same). The limit counts the line's content,
    not its terminator. A longer line is refused (see :class:`Framer`) and the next
    line is framed as usual.

    Args:
      max_line_length: the longest line accepted, in bytes.
    """

    def __init__(self, *, max_line_length: int = DEFAULT_MAX_MESSAGE) -> None:
        super().__init__(max_line_length)
        self._skipping = False  # inside a refused line: drop bytes up to its LF

    def feed(self, data: bytes) -> list[bytes]:
        position = 0  # where the bytes to frame start in data (after a refusal: further)
        if self._unusual:
            data, position = self._take(data)
            if self._skipping:
                newline = data.find(b"\n", position)
                if newline < 0:
                    self._unusual = True
                    return []  # still inside the refused line: nothing is kept
                self._skipping = False
                position = newline + 1
        limit = self.max_size
        buffer = self._buffer
        newline = data.find(b"\n", position)
        if newline == len(data) - 1 and newline >= 0 and not buffer and not position:
            # The common case (one whole line per read) without the general path's lists.
            line = data[:-2] if data.endswith(b"\r\n") else data[:-1]
            if len(line) > limit:
                raise self._refuse(len(line), [])
            return [line]
        if newline < 0:
            # No line ends here: only grow the buffer if the line can still fit. The
            # limit + 1 allows for the CR of a CRLF that has not arrived whole yet.
            size = len(buffer) + len(data) - position
            last = data[-1:] if len(data) > position else buffer[-1:]  # (nothing new: b"")
            if size > limit + (last == b"\r"):
                buffer.clear()
                self._skipping = self._unusual = True
                raise self._refuse(size, [], exact=False)
            buffer += data[position:] if position else data
            return []
        if buffer:
            buffer += data[position:newline]
            first = bytes(buffer)
            buffer.clear()
        else:
            first = data[position:newline]
        messages: list[bytes] = []
        start, line = newline + 1, first
        while True:
            if line[-1:] == b"\r":
                line = line[:-1]
            if len(line) > limit:
                raise self._refuse(len(line), messages, data, start)
            messages.append(line)
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            line, start = data[start:newline], newline + 1
        rest = len(data) - start  # (when there is any, its last byte is data's)
        if rest > limit + (data[-1:] == b"\r"):
            self._skipping = self._unusual = True
            raise self._refuse(rest, messages, exact=False)
        if rest:
            buffer += data[start:]
        return messages

    def feed_eof(self) -> list[bytes]:
        messages = self._end_rest()
        if messages is None:
            return []
        self._skipping = False  # a refused last line was said already
        if not self._buffer:
            return messages
        line = bytes(self._buffer)
        self._buffer.clear()
        if line[-1:] == b"\r":
            line = line[:-1]
        if len(line) > self.max_size:  # a pending CR that turned out not to be a CRLF
            raise self._refuse(len(line), messages)
        return [*messages, line]

    def encode(self, message: bytes) -> bytes:
        if b"\n" in message:
            raise FramingError("a line must not contain LF")
        if len(message) > self.max_size:
            raise MessageTooLargeError(self.max_size, len(message), exact=True)
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
        announcing more is refused at once, before any payload is buffered; the payload
        is then skipped as it arrives (the header says how long it is), and the message
        after it is framed as usual.
    """

    HEADER = 4

    def __init__(self, *, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        if max_size > 0xFFFFFFFF:
            raise ValueError("a 4-byte length prefix cannot announce more than 2**32 - 1 bytes")
        super().__init__(max_size)
        self._skip = 0  # payload bytes of a refused message still to drop

    def feed(self, data: bytes) -> list[bytes]:
        data, pos = self._take(data)
        end = len(data)
        if self._skip:
            dropped = min(self._skip, end - pos)
            self._skip -= dropped
            pos += dropped
        header = self.HEADER
        buffer = self._buffer
        messages: list[bytes] = []
        if buffer:
            # Finish the message that is already under way, taking only what it needs.
            if len(buffer) < header:
                take = min(header - len(buffer), end - pos)
                buffer += data[pos : pos + take]
                pos += take
                if len(buffer) < header:
                    return messages
                size = int.from_bytes(buffer[:header], "big")
                if size > self.max_size:
                    buffer.clear()
                    raise self._skip_refused(size, messages, data, pos)
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
            if size > self.max_size:
                raise self._skip_refused(size, messages, data, pos + header)
            if end - pos - header < size:
                break
            messages.append(data[pos + header : pos + header + size])
            pos += header + size
        buffer += data[pos:]
        return messages

    def _skip_refused(
        self, size: int, messages: list[bytes], data: bytes, at: int
    ) -> MessageTooLargeError:
        """Refuse a message whose header announced ``size`` bytes: drop its payload from
        ``data`` (where its header ended, ``at``) and from what comes later."""
        dropped = min(size, len(data) - at)
        self._skip = size - dropped
        return self._refuse(size, messages, data, at + dropped)

    def feed_eof(self) -> list[bytes]:
        messages = self._end_rest()
        if messages is None:
            return []
        self._skip = 0  # a refused message cut short was said already
        if self._buffer:
            pending = len(self._buffer)
            self._buffer.clear()
            raise FramingError(f"the stream ended inside a message ({pending} bytes pending)")
        return messages

    def encode(self, message: bytes) -> bytes:
        if len(message) > self.max_size:
            raise MessageTooLargeError(self.max_size, len(message), exact=True)
        return len(message).to_bytes(self.HEADER, "big") + message

    def encode_many(self, messages: Iterable[bytes]) -> bytes:
        return b"".join([self.encode(message) for message in messages])
