"""What a user is shown of what was said before: a room's earlier lines on entering it,
``/history N``, and (for :mod:`._resume`) what a resumed session missed.

Every line said in a room (and every direct message, in the recipient's inbox) is
recorded in the chat's store when it is published (see :func:`~._presence.publish`),
which gives it its id and time. On entering a room a user's subscription to it is
*held* (:meth:`~._fanout.FanOut.subscribe`): what the room says meanwhile waits in it.
Then :meth:`HistoryViews.replay` reads the room's last ``history_on_join`` lines, puts
them into the user's outbox (between the notices of a recall, see
:func:`~triosock._sansio.chat.recall`) and releases the subscription, leaving out the
live lines up to the newest id just shown: the earlier lines, then the live ones,
nothing missing, nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from ..._sansio import chat as proto
from ..._sansio.history import Page, Record
from ..._store import Store
from ._fanout import FanOut
from ._settings import ChatSettings
from ._user import User

#: What a user is told when the history cannot be read (a broker away).
HISTORY_UNREADABLE: Final = "the history cannot be read right now: earlier lines are not shown"

__all__ = ["HISTORY_UNREADABLE", "HistoryViews"]

LOGGER = logging.getLogger("triosock.chat")


def within(
    records: Sequence[Record], budget: int, user: User | None = None
) -> tuple[Sequence[Record], int]:
    """The newest of ``records`` that fit in ``budget`` bytes (the newest one at least),
    as ``user`` would be sent them (as stored, without a user), and how many older ones
    were left out."""
    size, start = 0, len(records)
    while start > 0:
        cost = _cost(records[start - 1], user)
        if start < len(records) and size + cost > budget:
            break
        start -= 1
        size += cost
    return records[start:], start


def _cost(record: Record, user: User | None) -> int:
    """The bytes ``record`` costs ``user``'s outbox as an earlier line."""
    if user is None:
        return len(record.data)
    try:
        event = proto.decode_event_untrusted(record.data)
    except proto.ChatError:
        return 0
    if not isinstance(event, proto.Message | proto.Action | proto.Direct):
        return 0
    return len(user.renderer.frame(proto.Recalled(event), user.core.nick))


class HistoryViews:
    """Earlier lines, shown to one user at a time.

    Args:
      fanout: what feeds the members' outboxes (and holds their new subscriptions).
      store: where the lines said are recorded.
      settings: ``history_on_join``, the earlier lines shown on entering a room.
    """

    def __init__(self, fanout: FanOut, store: Store, settings: ChatSettings) -> None:
        self._fanout = fanout
        self.store = store
        self.on_join = settings.history_on_join
        #: The most bytes of earlier lines shown at once: half what may wait for a
        #: member's socket, so that showing them never disconnects a member that reads.
        self.budget = settings.max_backlog // 2

    async def replay(self, user: User, room: str) -> None:
        """``user`` is entering ``room``: subscribe it (held), show it the room's last
        lines (at most ``history_on_join``), then feed it the room's live lines, leaving
        out those it was just shown (see ``FanOut.release``). The held subscription
        fills while the history is read (publishers to the room wait if it is full):
        the session must publish nothing to the room before this is done."""
        topic, seen = proto.room_topic(room), None
        if topic not in user.subs:  # on arrival; a move subscribed already
            await self._fanout.subscribe(user, topic, held=True)
        page = await self._last(user, topic, self.on_join) if topic in user.held else None
        if page is not None:
            records, left_out = within(page.records, self.budget, user)
            if records:
                seen = page.newest
                more = page.more or left_out > 0
                self.show(user, proto.recall(room, records, more=more), {topic: seen})
            else:  # a resume starts after what was said before it came, not from 0
                user.mark(topic, 0, page.last)
        self._fanout.release(user, topic, seen)

    async def _last(self, user: User, topic: str, count: int) -> Page | None:
        """The store's last ``count`` lines of ``topic``; None, ``user`` told why, when
        the store cannot be read (a broker away)."""
        try:
            return await self.store.last(topic, count)
        except Exception as exc:  # the store's client's errors
            LOGGER.warning("could not read the history of %s: %r", topic, exc)
            self._fanout.tell(user, HISTORY_UNREADABLE)
            return None

    async def recall(self, user: User, room: str, count: int) -> None:
        """Show ``user`` the last ``count`` lines of ``room`` again (``/history``)."""
        if not self.store.per_key:
            self._fanout.tell(user, "this server keeps no history (--history 0)")
            return
        page = await self._last(user, proto.room_topic(room), count)
        if page is None:
            return
        records, left_out = within(page.records, self.budget, user)
        shown = proto.recall(room, records, more=page.more or left_out > 0)
        if not shown:
            self._fanout.tell(user, f"nothing was said in {room} yet")
            return
        if left_out:
            self._fanout.tell(
                user,
                f"/history shows the {len(records)} newest of those {len(page.records)} "
                f"lines: the rest would be more than {self.budget} bytes at once",
            )
        self.show(user, shown)

    def show(
        self, user: User, shown: list[proto.Shown], newest: dict[str, int] | None = None
    ) -> None:
        """Put ``shown`` into ``user``'s outbox, after what is queued for it already;
        ``newest``: topic -> the newest id among them (what a resume starts after, once
        they are written)."""
        self._fanout.collect(user)
        renderer, nick, outbox = user.renderer, user.core.nick, user.outbox
        frames = [frame for event in shown if (frame := renderer.frame(event, nick))]
        if renderer.joinable:
            if frames:
                outbox.put(renderer.join(frames), len(frames))
        else:
            for frame in frames:
                outbox.put(frame)
        user.mark("", len(frames))  # counted, so that a resume knows what was written
        for topic, line_id in (newest or {}).items():
            user.mark(topic, 0, line_id)
        self._fanout.bound(user)  # asked for faster than it reads: the backlog rule
