"""The chat's error type, apart so that every module of the chat core can raise it."""

from __future__ import annotations

from ..._errors import TriosockError

__all__ = ["ChatError"]


class ChatError(TriosockError):
    """A chat name is invalid, or an encoded event cannot be decoded.

    The message is meant for the user (for names) and never echoes control characters.
    """
