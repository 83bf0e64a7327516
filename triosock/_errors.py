"""triosock's own exception types.

Everything raised by triosock at the IO edge is either one of trio's stream errors
(:class:`trio.BrokenResourceError`, :class:`trio.ClosedResourceError`,
:class:`trio.BusyResourceError`) or one of the classes below; a raw :class:`OSError`
never reaches a user.

This module imports nothing from trio, so that the sans-IO cores can use it.
"""

from __future__ import annotations


class TriosockError(Exception):
    """Base class of every exception triosock defines."""


class DirectoryUnavailable(TriosockError):
    """A broker-backed directory cannot reach its broker now (the chat tells the user and
    goes on)."""


class FramingError(TriosockError):
    """The bytes on the wire (or a message to encode) break the framing rules."""


class MessageTooLargeError(FramingError):
    """A message is longer than the framer's limit.

    Attributes:
      limit: the configured maximum, in bytes.
      size: how large the offending message is (or, when ``exact`` is false, at least
        was seen to be: a message refused before its end arrived).
      messages: for a framer's caller: the complete messages that preceded the refused
        one in the same ``feed()`` call, to deliver before it. A
        :class:`~triosock.FramedChannel` delivers them itself and raises the error
        with none.
    """

    def __init__(
        self, limit: int, size: int, messages: list[bytes] | None = None, *, exact: bool = False
    ) -> None:
        least = "" if exact else " or more"
        super().__init__(f"message of {size} bytes{least} exceeds the limit of {limit} bytes")
        self.limit = limit
        self.size = size
        self.messages: list[bytes] = messages if messages is not None else []


class BindError(TriosockError):
    """A server could not listen on the address it was given.

    Wraps the :class:`OSError` (available as ``__cause__``) with a one-line message that
    names the address, e.g. ``cannot listen on 127.0.0.1:7: permission denied``.
    """


class ConnectError(TriosockError):
    """A client could not reach its peer (refused, unreachable, unknown host)."""


def describe_oserror(exc: OSError) -> str:
    """A short, lower-case reason for an OSError, without errno numbers."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return reason[:1].lower() + reason[1:]
