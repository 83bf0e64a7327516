"""IRC input, sans-IO: the bytes of a connection in, messages out, memory bounded.

:class:`IrcReader` cuts a byte stream into messages and parses each with
:func:`~._message.parse_message_untrusted`:

* **Line ends.** A message ends at LF; a CR just before the LF is part of the line end
  (CR LF, the protocol's), so a bare LF, which the modern document says servers SHOULD
  accept, ends a message too. A CR anywhere else is *not* a line end: the modern document
  lets a server take a lone CR for one, but no client in use sends it, and a CR that
  waits for the next read to learn whether an LF follows would make the cut depend on
  how the bytes arrived. A lone CR stays in its line, which is then :class:`Malformed`.
* **Empty lines** (nothing, or a lone CR, before the LF) are skipped silently, as the
  modern document says.
* **The limits.** A message has two parts, measured apart as message-tags does: the tag
  section (``@`` to the space after the tags, both counted) at most ``max_tags`` bytes,
  and the rest at most ``max_line`` bytes *including* the CR LF, which is counted as two
  bytes even when the client sent a bare LF (so the rest is at most ``max_line - 2``
  bytes of content, 510 by default, whatever the line end). A line over either limit
  gives one :class:`Overlong` and is then skipped up to its LF *without being held*:
  the reader never holds more than ``max_tags + max_line`` bytes, however long a line
  without LF goes on. The :class:`Overlong` comes as soon as the limit is passed, so a
  server can answer ``417 ERR_INPUTTOOLONG`` (which message-tags requires for long
  tags) without waiting for an LF that may never come.
* **Malformed** lines give :class:`Malformed` with the parser's reason, and the reader
  goes on with the next line.
* **The end.** The modern document says a message is processed only once its line end
  has come; a line cut short by the end of the stream gives :class:`Malformed`, never a
  message (it may be half of one: ``PRIVMSG #room :I lo``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ._message import IrcError, IrcMessage, parse_message_untrusted

__all__ = ["IrcReader", "Item", "Malformed", "Overlong"]


@dataclass(frozen=True, slots=True)
class Overlong:
    """A line over a limit was refused (see :mod:`._reader`).

    Attributes:
      size: the line's length in bytes without its line end, when its end was already in
        the bytes that showed it too long; None when the limit was passed before the end
        came (the rest of the line is skipped without being counted).
      tags: True if the tag section was over ``max_tags``, False if the rest of the line
        was over ``max_line``.
    """

    size: int | None
    tags: bool


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line that is no IRC message was skipped; ``reason`` says why (for a log line)."""

    reason: str


#: What the reader gives.
Item: TypeAlias = IrcMessage | Overlong | Malformed


class IrcReader:
    """Messages from an IRC byte stream, with hard limits (see the module docstring).

    Args:
      max_line: the longest message without its tags, in bytes, CR LF included (512).
      max_tags: the longest tag section, in bytes, ``@`` and the space after it included
        (8191, as the modern document asks a client to allow; a server that wants
        message-tags' client limit passes 4096).

    Raises:
      ValueError: if ``max_line`` is less than 3 or ``max_tags`` less than 3.
    """

    __slots__ = ("_buffer", "_discarding", "max_line", "max_tags")

    def __init__(self, max_line: int = 512, max_tags: int = 8191) -> None:
        if max_line < 3:
            raise ValueError(f"max_line must be at least 3 bytes, not {max_line}")
        if max_tags < 3:
            raise ValueError(f"max_tags must be at least 3 bytes, not {max_tags}")
        self.max_line = max_line
        self.max_tags = max_tags
        self._buffer = bytearray()  # the start of a line whose LF has not come
        self._discarding = False  # inside a line already refused: skip to its LF

    @property
    def buffered(self) -> int:
        """Bytes held: the start of the line under way (at most ``max_tags + max_line``)."""
        return len(self._buffer)

    @property
    def discarding(self) -> bool:
        """True while the rest of a refused line is skipped."""
        return self._discarding

    def feed(self, data: bytes) -> list[Item]:
        """Every message (or :class:`Overlong`, :class:`Malformed`) that ``data``
        completes, in order."""
        out: list[Item] = []
        start = 0
        end = data.find(b"\n")
        while end >= 0:
            if self._discarding:
                self._discarding = False
            elif self._buffer:
                line = bytes(self._buffer) + data[start:end]
                self._buffer = bytearray()
                self._complete(line, out)
            else:
                self._complete(data[start:end], out)
            start = end + 1
            end = data.find(b"\n", start)
        if start < len(data) and not self._discarding:
            self._hold(data, start, out)
        return out

    def feed_eof(self) -> list[Item]:
        """What the end of the stream completes: :class:`Malformed` for a line cut short
        (see the module docstring), else nothing. The reader is empty afterwards."""
        out: list[Item] = []
        if self._buffer.rstrip(b"\r"):
            out.append(Malformed("the stream ended inside a message"))
        self._buffer = bytearray()
        self._discarding = False
        return out

    def _over(self, line: bytes | bytearray, *, complete: bool) -> bool | None:
        """Which limit ``line`` passes: True for the tags, False for the rest, None for
        neither. An incomplete line may still end with a CR, the first byte of its CR LF,
        so it may hold one byte more than a complete one."""
        rest = len(line)
        if line[:1] == b"@":
            space = line.find(b" ")
            if space < 0:  # the tags go on: with their space, are they over already?
                return True if rest + 1 > self.max_tags else None
            if space + 1 > self.max_tags:
                return True
            rest -= space + 1
        return False if rest > self.max_line - (2 if complete else 1) else None

    def _complete(self, line: bytes, out: list[Item]) -> None:
        if line[-1:] == b"\r":
            line = line[:-1]
        if not line:
            return
        over = self._over(line, complete=True)
        if over is not None:
            out.append(Overlong(len(line), over))
            return
        try:
            out.append(parse_message_untrusted(line))
        except IrcError as exc:
            out.append(Malformed(exc.reason))

    def _hold(self, data: bytes, start: int, out: list[Item]) -> None:
        """Keep the start of a line whose LF has not come, or refuse it."""
        # Never take more than one byte past what any line may hold: that byte is enough
        # to tell which limit is passed, and a megabyte without LF is never copied.
        room = self.max_tags + self.max_line + 1 - len(self._buffer)
        self._buffer += data[start : start + room]
        over = self._over(self._buffer, complete=False)
        if over is not None:
            out.append(Overlong(None, over))
            self._buffer = bytearray()  # a new one: clear() could keep the old capacity
            self._discarding = True
