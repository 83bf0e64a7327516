"""Room operators, sans-IO: who may do what in a room, and the record that says so.

A room's **record** (:class:`RoomRecord`) is kept in a store (:mod:`triosock._rooms`) and
outlives the room's members: its founder, its operators, its bans and mutes, its topic
and whether it is moderated. These functions say what an action does to a record and who
may take it; they never do IO.

**Ranks.** Who someone is in a room is a rank (:func:`rank`), from the account they are
logged in to (a guest has none)::

    SERVER    3   a server operator (``--oper``): acts in every room, may /kill
    FOUNDER   2   the account that /claim-ed the room
    OPERATOR  1   an account the founder named (/op)
    MEMBER    0   everyone else, guests included

* ``/claim`` makes a logged-in user the founder of a room nobody claimed yet.
* ``/op`` and ``/deop`` are the founder's (and a server operator's), and name registered
  accounts; the founder is always an operator and cannot be deopped.
* ``/topic TEXT``, ``/mode +m|-m``, ``/kick``, ``/ban``, ``/unban``, ``/bans``,
  ``/mute`` and ``/unmute`` are every operator's (rank 1 and more); ``/kill`` is a
  server operator's only.
* **One acts only on a lower rank**: an operator cannot kick, ban or mute another
  operator or the founder (:func:`may_act_on`).
* **Bans and mutes** are by account for a user logged in to one (``account:<key>``),
  else by address (``address:<host>``), so that a guest cannot come back under another
  nick, nor a banned account as a guest from the same address. They apply to rank 0
  only: an operator is never locked out of their own room by their address.
* A **moderated** room (``+m``) lets only operators speak; a muted user's lines to the
  room are refused with a notice (direct messages still go).

Limits, so that a record stays small whatever operators do: :data:`MAX_TOPIC`
characters of topic, :data:`MAX_ENTRIES` bans, mutes and operators each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, TypeAlias

__all__ = [
    "FOUNDER",
    "MAX_ENTRIES",
    "MAX_TOPIC",
    "MEMBER",
    "OPERATOR",
    "SERVER",
    "Entries",
    "RoomRecord",
    "banned",
    "decode_record_untrusted",
    "encode_record",
    "entries_of",
    "entry_for",
    "may_act_on",
    "rank",
    "silenced",
]

SERVER: Final = 3
FOUNDER: Final = 2
OPERATOR: Final = 1
MEMBER: Final = 0
#: The longest topic, in characters; the most bans, mutes and operators of one room.
MAX_TOPIC: Final = 300
MAX_ENTRIES: Final = 500

#: Who a ban or mute is of, and who it was (``(("account:bob", "bob"), ...)``): the
#: entry (``account:<key>`` or ``address:<host>``) and the nick it was given for.
Entries: TypeAlias = tuple[tuple[str, str], ...]
#: The lists of a record that hold entries.
EntryList: TypeAlias = Literal["bans", "muted"]


@dataclass(frozen=True, slots=True)
class RoomRecord:
    """What the store keeps of a room.

    Attributes:
      room: the room (``#dev``).
      founder: the founder's account key, ``""`` while nobody claimed the room.
      operators: the account keys the founder made operators.
      bans, muted: :data:`Entries`.
      topic: the topic (``""`` for none) and ``topic_by``, the nick that set it.
      moderated: only operators speak (``+m``).
    """

    room: str
    founder: str = ""
    operators: frozenset[str] = frozenset()
    bans: Entries = ()
    muted: Entries = ()
    topic: str = ""
    topic_by: str = ""
    moderated: bool = False

    def listed(self, which: EntryList) -> Entries:
        """The entries of ``which``."""
        return self.bans if which == "bans" else self.muted

    def _with(self, which: EntryList, entries: Entries) -> RoomRecord:
        return replace(self, bans=entries) if which == "bans" else replace(self, muted=entries)

    def with_entry(self, which: EntryList, entry: str, label: str) -> RoomRecord | None:
        """The record with ``entry`` in ``which`` (its label replaced if it was there),
        or None when the list is full."""
        kept = tuple((e, n) for e, n in self.listed(which) if e != entry)
        if len(kept) >= MAX_ENTRIES:
            return None
        return self._with(which, (*kept, (entry, label)))

    def without(self, which: EntryList, name: str) -> tuple[RoomRecord, list[str]]:
        """The record without the entries of ``which`` given for the nick ``name`` (case
        folded), or that are ``name`` (an entry, or its address or account alone); and
        the labels of those removed."""
        key = name.casefold()

        def matches(entry: str, label: str) -> bool:
            return label.casefold() == key or name in (entry, entry.partition(":")[2])

        listed = self.listed(which)
        gone = [label for entry, label in listed if matches(entry, label)]
        kept = tuple(pair for pair in listed if not matches(*pair))
        return self._with(which, kept), gone

    def holds(self, which: EntryList, entries: frozenset[str]) -> str | None:
        """The label of the first entry of ``which`` among ``entries``, or None."""
        for entry, label in self.listed(which):
            if entry in entries:
                return label
        return None


def entries_of(account: str | None, host: str) -> frozenset[str]:
    """The entries a user matches: their account's, if logged in, and their address's."""
    found = {f"address:{host}"}
    if account is not None:
        found.add(f"account:{account}")
    return frozenset(found)


def entry_for(account: str | None, host: str) -> str:
    """The entry a ban or mute of this user is written as: by account when logged in."""
    return f"account:{account}" if account is not None else f"address:{host}"


def rank(record: RoomRecord, account: str | None, opers: frozenset[str]) -> int:
    """The rank of a user logged in to ``account`` (None: a guest) in the room."""
    if account is None:
        return MEMBER
    if account in opers:
        return SERVER
    if account == record.founder:
        return FOUNDER
    if account in record.operators:
        return OPERATOR
    return MEMBER


def may_act_on(actor: int, target: int) -> bool:
    """Whether rank ``actor`` may kick, ban or mute rank ``target``: only lower ranks."""
    return actor >= OPERATOR and actor > target


def silenced(record: RoomRecord, entries: frozenset[str], rank_: int) -> str | None:
    """Why a user may not speak in the room (a notice), or None when they may."""
    if rank_ >= OPERATOR:
        return None
    if record.holds("muted", entries) is not None:
        return f"you are muted in {record.room}: your lines to it are not said"
    if record.moderated:
        return f"{record.room} is moderated (+m): only its operators speak"
    return None


def banned(record: RoomRecord, entries: frozenset[str], rank_: int) -> bool:
    """Whether a user of ``entries`` and ``rank_`` is banned from the room."""
    return rank_ < OPERATOR and record.holds("bans", entries) is not None


# -- the record's encoding --------------------------------------------------------------


def encode_record(record: RoomRecord) -> bytes:
    """The record as the store keeps it: compact JSON."""
    obj = {
        "room": record.room,
        "founder": record.founder,
        "operators": sorted(record.operators),
        "bans": [list(pair) for pair in record.bans],
        "muted": [list(pair) for pair in record.muted],
        "topic": record.topic,
        "topic_by": record.topic_by,
        "moderated": record.moderated,
    }
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), sort_keys=True).encode()


def decode_record_untrusted(data: bytes) -> RoomRecord:
    """A record :func:`encode_record` made, read back from a store.

    Raises:
      ValueError: ``data`` is no record (and only ValueError, for any input).
    """
    try:
        obj: Any = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"a room record is JSON: {exc}") from None
    try:
        strings = ("room", "founder", "topic", "topic_by")
        if not isinstance(obj, dict) or not all(isinstance(obj[k], str) for k in strings):
            raise ValueError("a room record is an object of strings")
        operators = obj["operators"]
        if not isinstance(operators, list) or not all(isinstance(o, str) for o in operators):
            raise ValueError("a room record's operators are strings")
        if not isinstance(obj["moderated"], bool):
            raise ValueError("a room record's moderated is true or false")
        return RoomRecord(
            obj["room"],
            obj["founder"],
            frozenset(operators),
            _entries(obj["bans"]),
            _entries(obj["muted"]),
            obj["topic"],
            obj["topic_by"],
            obj["moderated"],
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"a room record misses {exc}") from None


def _entries(value: Any) -> Entries:
    if not isinstance(value, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)
        for pair in value
    ):
        raise ValueError("a room record's bans and mutes are [entry, nick] pairs")
    return tuple((entry, label) for entry, label in value)
