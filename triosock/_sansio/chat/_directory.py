"""The directory's rules, sans-IO: who owns which nick, and who is in which room.

:class:`DirectoryState` is plain state. The in-process directory
(:class:`triosock.chat.InProcessDirectory`) is this state behind the async directory
interface; a broker-backed directory keeps the same rules with the broker's atomic
operations.

Rules:

* Every session has an id, unique across processes and machines: the directory's
  ``origin`` (random, made once per directory) and a counter, ``"3f9c2a7d01b4e658.17"``.
  A session's inbox topic is ``inbox:<id>``.
* A nick has at most one owner. Nicks are compared by :func:`~._names.nick_key` (case
  folded). Taking a nick is check-and-set in one step (:meth:`DirectoryState.rename`):
  of two sessions asking for the same nick, exactly one gets it.
* A new session gets the nick it asks for when nobody owns it (a UDP peer asks for its
  address), else the first free ``guestN`` (N counts up per directory and skips nicks
  that are taken).
* A session is in exactly one room. A room exists while someone is in it.
* Leaving (:meth:`DirectoryState.unregister`) frees the nick at once.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass

from ._names import DEFAULT_ROOM, default_nick, nick_key

__all__ = ["DirectoryState", "Presence", "inbox_topic", "room_topic"]


def room_topic(room: str) -> str:
    """The hub topic of a room: ``room:#lobby``."""
    return f"room:{room}"


def inbox_topic(session: str) -> str:
    """The hub topic of one session's direct messages: ``inbox:<session id>``."""
    return f"inbox:{session}"


@dataclass(frozen=True, slots=True)
class Presence:
    """What the directory knows of one session.

    Attributes:
      session: the session id.
      nick: the nick it owns.
      room: the room it is in.
      kind: its transport (``"tcp"``, ``"udp"``, ``"ws"``), for listings and logs.
    """

    session: str
    nick: str
    room: str
    kind: str

    @property
    def inbox(self) -> str:
        """The topic that reaches this session alone."""
        return inbox_topic(self.session)


class DirectoryState:
    """Sessions, nicks and rooms of one directory, with the rules above.

    Args:
      origin: the prefix of every session id; a random 64-bit hex string by default.
    """

    __slots__ = ("_by_nick", "_guests", "_ids", "_rooms", "_sessions", "origin")

    def __init__(self, origin: str | None = None) -> None:
        self.origin = origin if origin is not None else secrets.token_hex(8)
        self._ids = itertools.count(1)
        self._guests = itertools.count(1)
        self._sessions: dict[str, Presence] = {}
        self._by_nick: dict[str, str] = {}  # nick_key -> session id
        self._rooms: dict[str, dict[str, None]] = {}  # room -> session ids, in arrival order

    def register(self, kind: str, nick: str | None = None, room: str = DEFAULT_ROOM) -> Presence:
        """Add a session in ``room``, owning ``nick`` if it is free, else a guest nick."""
        session = f"{self.origin}.{next(self._ids)}"
        if nick is None or nick_key(nick) in self._by_nick:
            nick = self._free_guest_nick()
        presence = Presence(session, nick, room, kind)
        self._sessions[session] = presence
        self._by_nick[nick_key(nick)] = session
        self._rooms.setdefault(room, {})[session] = None
        return presence

    def _free_guest_nick(self) -> str:
        while True:
            nick = default_nick(next(self._guests))
            if nick_key(nick) not in self._by_nick:
                return nick

    def get(self, session: str) -> Presence | None:
        """The presence of ``session``, or None when it is not registered."""
        return self._sessions.get(session)

    def rename(self, session: str, nick: str) -> bool:
        """Give ``session`` the nick ``nick`` unless another session owns it.

        Returns True when the session owns ``nick`` now (also when it did already, say
        in another case), False when somebody else does.

        Raises:
          KeyError: ``session`` is not registered.
        """
        presence = self._sessions[session]
        owner = self._by_nick.get(nick_key(nick))
        if owner is not None and owner != session:
            return False
        del self._by_nick[nick_key(presence.nick)]
        self._by_nick[nick_key(nick)] = session
        self._sessions[session] = Presence(session, nick, presence.room, presence.kind)
        return True

    def move(self, session: str, room: str) -> Presence:
        """Put ``session`` in ``room`` (and out of its old room); return its new presence.

        Raises:
          KeyError: ``session`` is not registered.
        """
        presence = self._sessions[session]
        self._leave_room(session, presence.room)
        self._rooms.setdefault(room, {})[session] = None
        moved = Presence(session, presence.nick, room, presence.kind)
        self._sessions[session] = moved
        return moved

    def unregister(self, session: str) -> Presence | None:
        """Remove ``session``, freeing its nick; return what it was (None if unknown)."""
        presence = self._sessions.pop(session, None)
        if presence is None:
            return None
        if self._by_nick.get(nick_key(presence.nick)) == session:
            del self._by_nick[nick_key(presence.nick)]
        self._leave_room(session, presence.room)
        return presence

    def _leave_room(self, session: str, room: str) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.pop(session, None)
            if not members:
                del self._rooms[room]

    def lookup(self, nick: str) -> Presence | None:
        """The session owning ``nick`` (compared case-insensitively), or None."""
        session = self._by_nick.get(nick_key(nick))
        return None if session is None else self._sessions[session]

    def nicks(self, room: str | None = None) -> list[str]:
        """The nicks present (in ``room``, if given), sorted."""
        if room is None:
            return sorted(p.nick for p in self._sessions.values())
        return sorted(self._sessions[s].nick for s in self._rooms.get(room, ()))

    def rooms(self) -> dict[str, int]:
        """Room name -> number of sessions in it, for rooms with anyone in them, sorted."""
        return {room: len(members) for room, members in sorted(self._rooms.items())}

    def __len__(self) -> int:
        return len(self._sessions)
