"""What reaches the rooms: an event put on the hub, and joins and leaves (presence),
counted in crowded rooms.

:func:`publish` is how every event reaches the hub: at once when every subscriber's
queue has room (no checkpoint, so a burst costs one pass), else waiting for the
fan-out's pass, with the user's idle clock stopped (the server keeps it waiting).

Presence. In a room of up to ``presence_limit`` members of this server, every join and
leave is a line to the room (``* bob joined #lobby``). In a more crowded room they are
counted instead, and the room gets one line every ``presence_interval`` seconds, while
anyone came or went: ``* 37 joined, 12 left #lobby`` (a :class:`~triosock._sansio.chat.
Crowd` event). A line per arrival costs the room a line per member, so n arrivals cost
n² lines: 1,000 silent connections would be a million lines in ``#lobby``. Whoever joins
a crowded room still sees its own join line, and ``/who`` lists everyone. Across servers
(a Redis hub) each server counts its own members and tells the room of its own users.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Final

import trio

from ..._hub import Hub
from ..._sansio import chat as proto
from ..._store import STORED, Store
from ._member import Member
from ._settings import ChatSettings

__all__ = ["NICK_LOST", "Presence", "publish"]

#: What a user whose nick went to an earlier claim is told (see ``Sessions.repair``).
NICK_LOST: Final = (
    "your nick {nick} went back to another server's user who had it before you (the "
    "chat's directory had lost them for a while: it restarted or they were cut off); "
    "you are now {guest}"
)


async def publish(
    hub: Hub[bytes],
    member: Member | None,
    topic: str,
    event: proto.Event,
    store: Store | None = None,
) -> None:
    """Put ``event`` on ``hub``'s ``topic``; a line said (a message, an action, a direct
    message) is first recorded in ``store``, which gives it its id and time.

    Args:
      hub: the hub.
      member: the user it is for (None: the server's own, such as a ghost's leaving),
        whose idle clock stops while it waits.
      topic: a room's topic, or an inbox.
      event: what to say.
      store: where lines said are recorded; None records nothing (no id, no time).

    Raises:
      trio.ClosedResourceError: the hub is closed.
    """
    if store is not None and store.delivers:
        # the broker gives lines said their ids where it publishes; everything else on
        # the topic goes the same way, so that it keeps its place among them
        store.deliver_nowait(topic, event)
        return  # no checkpoint, as below
    if store is not None and type(event) in _STORED:
        try:
            data = store.append_nowait(topic, event)  # type: ignore[arg-type]
        except trio.WouldBlock:
            data = await store.append(topic, event)  # type: ignore[arg-type]
    else:
        data = proto.encode_event(event)
    try:
        hub.publish_nowait(topic, data)  # no checkpoint: a burst costs one pass, not many
    except trio.WouldBlock:  # a queue is full: wait for the fan-out's pass
        # the server makes the user wait: not idle
        with member.hold_idle() if member is not None else contextlib.nullcontext():
            await hub.publish(topic, data)


_STORED = frozenset(STORED)


class Presence:
    """Joins and leaves, said in small rooms and counted in crowded ones.

    Args:
      hub: where rooms are (its subscriber counts say which rooms are crowded).
      store: where the lines said are recorded (None: nowhere).
      settings: ``presence_limit``, the most members (of this server) a room may have
        and still get a line per join and leave (None: a line each, always), and
        ``presence_interval``, the seconds between two counts of a crowded room's joins
        and leaves.
    """

    def __init__(self, hub: Hub[bytes], settings: ChatSettings, store: Store | None = None) -> None:
        self.hub = hub
        self.store = store
        self.limit = settings.presence_limit
        self.interval = settings.presence_interval
        # crowded rooms' joins and leaves since the last count, by topic
        self._crowds: dict[str, proto.Crowd] = {}
        self._crowds_waiting = trio.Event()

    async def announce(
        self, member: Member | None, topic: str, event: proto.Event, inbox: str | None = None
    ) -> None:
        """Publish ``event`` on ``topic``, but for a join or leave of a crowded room, which
        is counted (see :meth:`_counted`). Whoever joins a crowded room still sees its own
        join line, through its ``inbox`` (clients learn their room from it)."""
        if not self._counted(topic, event):
            await publish(self.hub, member, topic, event, self.store)
        elif inbox is not None and type(event) is proto.Joined:
            await publish(self.hub, member, inbox, event)

    async def announce_all(self, member: Member | None, effects: list[proto.Effect]) -> None:
        """:meth:`announce` each of ``effects`` (``Publish`` effects only: a leaving's, a
        rename's) for ``member`` (None: for the server, the session's connection being
        gone); a hub closed under it (the server stops) ends it quietly."""
        for effect in effects:
            assert isinstance(effect, proto.Publish)
            with contextlib.suppress(trio.ClosedResourceError):
                await self.announce(member, effect.topic, effect.event)

    def _counted(self, topic: str, event: proto.Event) -> bool:
        """Count a join or leave of a crowded room (True) rather than say it (False)."""
        if not isinstance(event, proto.Joined | proto.Left):
            return False
        if self.limit is None or self.hub.subscriber_count(topic) <= self.limit:
            return False
        crowd = self._crowds.get(topic)
        if crowd is None:
            crowd = self._crowds[topic] = proto.Crowd(event.room, 0, 0)
        if isinstance(event, proto.Joined):
            self._crowds[topic] = dataclasses.replace(crowd, joined=crowd.joined + 1)
        else:
            self._crowds[topic] = dataclasses.replace(crowd, left=crowd.left + 1)
        self._crowds_waiting.set()
        return True

    async def count_forever(self) -> None:
        """Every ``interval`` while crowded rooms see joins or leaves, tell each how many
        came and went."""
        while True:
            await self._crowds_waiting.wait()
            await trio.sleep(self.interval)
            crowds, self._crowds = self._crowds, {}
            self._crowds_waiting = trio.Event()
            for topic, crowd in crowds.items():
                with contextlib.suppress(trio.ClosedResourceError):
                    await publish(self.hub, None, topic, crowd)
