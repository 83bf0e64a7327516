"""Lines shown again from the history: what a user joining a room, or asking
``/history``, sees of what was said before.

:func:`recall` turns records of a room's history (:mod:`triosock._sansio.history`) into
what is shown: a :class:`~._events.RecallStart`, each line as a
:class:`~._events.Recalled` (with a :class:`~._events.DayChanged` where the UTC day
changes between two of them), and a :class:`~._events.RecallEnd`. A TCP user sees them
as notices around lines stamped with their time (see :mod:`._events`); a WebSocket
client as events with the history flag (see :mod:`._web`). Nothing is shown when there
is nothing to recall.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..history import Record
from ._errors import ChatError
from ._events import (
    Action,
    DayChanged,
    Direct,
    Message,
    Recalled,
    RecallEnd,
    RecallStart,
    Shown,
    day,
    decode_event_untrusted,
)

__all__ = ["recall"]


def recall(room: str, records: Iterable[Record], *, more: bool) -> list[Shown]:
    """What a user is shown of ``records`` of ``room`` (oldest first).

    Args:
      room: the room (or what the lines are, for direct messages).
      records: the records; what is not a recorded line (it cannot be decoded, or is no
        message, action or direct message) is left out.
      more: whether older records are kept than these.

    Returns:
      The start, the lines (and day changes), the end; nothing when no line is left.
    """
    said: list[Message | Action | Direct] = []
    for record in records:
        try:
            event = decode_event_untrusted(record.data)
        except ChatError:
            continue
        if isinstance(event, Message | Action | Direct):
            said.append(event)
    if not said:
        return []
    current = day(said[0].time)
    shown: list[Shown] = [RecallStart(room, len(said), current)]
    for event in said:
        today = day(event.time)
        if today != current:
            shown.append(DayChanged(today))
            current = today
        shown.append(Recalled(event))
    shown.append(RecallEnd(room, more))
    return shown
