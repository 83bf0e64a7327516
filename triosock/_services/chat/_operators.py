"""Room operators: ``/claim``, ``/op``, ``/topic``, ``/kick``, ``/ban``, ``/mute``,
``/mode``, ``/kill``, carried out for the sessions (:class:`Operating`, a part of
``Sessions``). Who may do what is :mod:`triosock._sansio.rooms`'s to say.

* **Records** live in the account store (:meth:`~triosock._accounts.Accounts.get_room`),
  so they outlive their rooms and a restart (with ``--data``), and are shared by every
  server of a cluster (with ``--redis``). Each change reads the record, changes it and
  writes it back only if nobody changed it meanwhile (else it tries again): two
  operators acting at once never lose one's change. A server keeps the records of the
  rooms its users are in (:class:`RoomBook`); a change is told to every server on the
  hub's :data:`ORDERS` topic, the new record with it, and each keeps it (a change heard
  after a newer one is ignored). When the hub loses its broker, changes told meanwhile
  are lost: a server forgets every record when the broker is back, and reads again.
* **Actions on a user** (kick, ban, mute, kill) go to the server that holds the user's
  session, as an order on :data:`ORDERS`: that server knows the user's account or
  address (a ban or mute is written by account when the user is logged in, else by
  address), and moves the session out of the room (to :data:`DEFAULT_ROOM`; out of the
  chat when kicked from there) or ends it. A session detached for a resume (its
  connection lost, perhaps on purpose) is banned by its last address too, and a kick or
  ban ends it: no resume brings it back. A ban or mute of a registered nick nobody
  holds is written by account at once.
* **Every action is said** in its room as a line (``* alice kicked bob (flooding)``).
* **Enforced on every transport**: a banned user cannot enter the room (a session
  banned from :data:`DEFAULT_ROOM` ends as it arrives); a muted user's lines, or a
  member's in a moderated room, are refused with a notice (the session's
  ``silenced``, checked where lines are said, so it costs the hot path one test).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

import trio

from ..._accounts import Accounts
from ..._directory import Directory
from ..._hub import Hub
from ..._sansio import chat as proto
from ..._sansio import rooms as rules
from ..._sansio.rooms import RoomRecord
from ..._store import Store
from ._fanout import FanOut
from ._presence import publish
from ._resume import host_of
from ._user import LIVE, Connections, User

__all__ = ["ORDERS", "Operating", "RoomBook"]

LOGGER = logging.getLogger("triosock.chat")

#: The hub topic on which servers tell each other of operators' actions.
ORDERS: Final = "orders:rooms"
#: How many times a record change is tried when others keep changing it first.
_TRIES: Final = 20
#: The most rooms whose topic ``/rooms`` reads from the store (the others it knows).
_TOPICS_READ: Final = 100
_DONE: Final = {"kick": "kicked", "ban": "banned"}
_NOT_OPERATOR = "only operators of {room} may /{action} (see /help)"
_LOG_IN = "log in first (/login NICK PASSWORD): rooms know their operators by account"


class RoomBook:
    """The rooms' records, as this server last read or heard of them, with their
    versions (a change heard late, after a newer one, is ignored)."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts
        self._known: dict[str, tuple[RoomRecord, int]] = {}

    async def get(self, room: str) -> RoomRecord:
        """The record of ``room`` (an empty one for a room nobody claimed)."""
        known = self._known.get(room)
        if known is not None:
            await trio.lowlevel.checkpoint()
            return known[0]
        data, version = await self.accounts.get_room(room)
        record = self._decode(room, data)
        self.learn(room, record, version)
        return record

    def known(self, room: str) -> RoomRecord | None:
        """The record of ``room`` if this server has it, without asking the store."""
        known = self._known.get(room)
        return None if known is None else known[0]

    def learn(self, room: str, record: RoomRecord, version: int) -> None:
        """Keep ``record`` as ``room``'s, unless a newer version is known."""
        known = self._known.get(room)
        if known is None or known[1] < version:
            self._known[room] = (record, version)

    @staticmethod
    def _decode(room: str, data: bytes | None) -> RoomRecord:
        if data is None:
            return RoomRecord(room)
        try:
            return rules.decode_record_untrusted(data)
        except ValueError as exc:
            LOGGER.warning("the record of %s cannot be read (%s): taken as unclaimed", room, exc)
            return RoomRecord(room)

    async def change(
        self, room: str, change: Callable[[RoomRecord], RoomRecord | str]
    ) -> tuple[RoomRecord, int] | str:
        """Apply ``change`` to the stored record of ``room`` and write it back; the new
        record and its version, or what ``change`` refused with (a notice)."""
        for _ in range(_TRIES):
            data, version = await self.accounts.get_room(room)
            changed = change(self._decode(room, data))
            if isinstance(changed, str):
                return changed
            if await self.accounts.put_room(room, rules.encode_record(changed), version):
                self.learn(room, changed, version + 1)
                return changed, version + 1
        return f"{room} is being changed by others right now; try again"

    def forget(self) -> None:
        """Drop every record; each is read again when needed (changes may have been
        missed: the hub lost its broker for a while)."""
        self._known.clear()


class Operating:
    """What the sessions do for room operators; mixed into ``Sessions``."""

    users: dict[str, User]
    connections: Connections
    hub: Hub[bytes]
    store: Store
    directory: Directory
    accounts: Accounts
    book: RoomBook
    _fanout: FanOut
    #: The account keys of the server operators (``--oper``).
    opers: frozenset[str]

    async def _carry_out(self, user: User, effects: list[proto.Effect]) -> proto.Close | None:
        raise NotImplementedError  # pragma: no cover - Sessions has it

    # -- who someone is ------------------------------------------------------------------

    def _entries(self, user: User) -> frozenset[str]:
        return rules.entries_of(user.core.account, host_of(user.member.label))

    async def _rank(self, user: User, room: str) -> tuple[RoomRecord, int]:
        record = await self.book.get(room)
        return record, rules.rank(record, user.core.account, self.opers)

    async def operators_among(self, room: str, nicks: list[str]) -> frozenset[str]:
        """The nick keys of ``nicks`` that are ``room``'s operators (its founder, those
        it named, the server operators): a registered nick is held only by a session
        logged in to it, so a nick whose key is an operator's account is that operator."""
        record = await self.book.get(room)
        return frozenset(
            key
            for key in map(proto.nick_key, nicks)
            if rules.rank(record, key, self.opers) >= rules.OPERATOR
        )

    async def refused_entry(self, user: User, room: str) -> str | None:
        """Why ``user`` may not enter ``room`` (it is banned from it), or None."""
        record, rank = await self._rank(user, room)
        if rules.banned(record, self._entries(user), rank):
            return f"you are banned from {room}"
        return None

    async def entered(self, user: User) -> list[proto.Effect]:
        """``user`` is in its room now: whether it may speak there, and its topic."""
        core = user.core
        record, rank = await self._rank(user, core.room)
        core.silenced = rules.silenced(record, self._entries(user), rank)
        if not record.topic:
            return []
        return user.member.told_topic(record.room, record.topic, record.topic_by)

    async def room_topics(self, rooms: dict[str, int]) -> dict[str, str]:
        """The topics of ``rooms`` this server knows (reading at most a few more)."""
        topics: dict[str, str] = {}
        read = 0
        for room in rooms:
            record = self.book.known(room)
            if record is None and read < _TOPICS_READ:
                read += 1
                record = await self.book.get(room)
            if record is not None and record.topic:
                topics[room] = record.topic
        return topics

    # -- an operator's command -----------------------------------------------------------

    async def act(self, user: User, effect: proto.Act) -> list[proto.Effect]:
        """Carry out ``user``'s operator command; what its session is told."""
        core = user.core
        room, action, target, text = effect.room, effect.action, effect.target, effect.text
        record, rank = await self._rank(user, room)
        if action == "claim":
            return await self._claim(user, room)
        if action == "topic" and not text:
            return user.member.told_topic(room, record.topic, record.topic_by)
        if action == "mode" and not target:
            return user.member.told_mode(room, record.moderated)
        if action == "kill":
            if rank < rules.SERVER:
                return [proto.Tell("only server operators may /kill")]
        elif action in ("op", "deop") and rank < rules.FOUNDER:
            return [proto.Tell(f"only the founder of {room} names its operators")]
        elif rank < rules.OPERATOR:
            why = _NOT_OPERATOR.format(room=room, action=action)
            return [proto.Tell(why if core.account else f"{why}; {_LOG_IN}")]
        match action:
            case "bans":
                listed = [f"{label} ({entry})" for entry, label in record.bans]
                return [proto.Tell(f"bans of {room}: {', '.join(listed) or 'none'}")]
            case "topic":
                topic = "" if text == "-" else text
                return await self._record(
                    user,
                    room,
                    "topic",
                    "",
                    topic,
                    lambda r: replace(r, topic=topic, topic_by=core.nick),
                )
            case "mode":
                on = target == "+m"
                return await self._record(
                    user, room, "mode", target, "", lambda r: replace(r, moderated=on)
                )
            case "op" | "deop":
                return await self._op(user, room, action, target)
            case "unban" | "unmute":
                return await self._lift(user, room, action, target)
        return await self._sanction(user, record, rank, action, target, text)

    async def _claim(self, user: User, room: str) -> list[proto.Effect]:
        core = user.core
        key = core.account
        if key is None:
            return [proto.Tell(f"only registered users may claim a room; {_LOG_IN}")]

        def claim(record: RoomRecord) -> RoomRecord | str:
            if record.founder:
                return f"{room} is claimed already"
            return replace(record, founder=key)

        done = await self._record(user, room, "claim", "", "", claim)
        if room != core.room and not done:
            return [proto.Tell(f"you are the founder of {room} now")]
        return done

    async def _op(self, user: User, room: str, action: str, target: str) -> list[proto.Effect]:
        account = await self.accounts.get(proto.nick_key(target))
        if account is None:
            return [proto.Tell(f"{target} is not registered: operators are accounts")]
        key = account.key

        def op(record: RoomRecord) -> RoomRecord | str:
            if key == record.founder:
                return f"{account.nick} is the founder of {room}: always its operator"
            if action == "op":
                if len(record.operators) >= rules.MAX_ENTRIES:
                    return f"{room} has {rules.MAX_ENTRIES} operators: the most it may have"
                return replace(record, operators=record.operators | {key})
            if key not in record.operators:
                return f"{account.nick} is not an operator of {room}"
            return replace(record, operators=record.operators - {key})

        return await self._record(user, room, action, account.nick, "", op)

    async def _lift(self, user: User, room: str, action: str, target: str) -> list[proto.Effect]:
        which: rules.EntryList = "bans" if action == "unban" else "muted"

        def lift(record: RoomRecord) -> RoomRecord | str:
            changed, gone = record.without(which, target)
            if not gone:
                return f"{target} is not {'banned from' if which == 'bans' else 'muted in'} {room}"
            return changed

        return await self._record(user, room, action, target, "", lift)

    async def _sanction(
        self, user: User, record: RoomRecord, rank: int, action: str, target: str, text: str
    ) -> list[proto.Effect]:
        """``/kick``, ``/ban``, ``/mute``, ``/kill`` of the nick ``target``."""
        room = record.room
        found = await self.directory.lookup(target)
        account = await self.accounts.get(proto.nick_key(target))
        target_rank = rules.rank(record, account.key if account else None, self.opers)
        if not rules.may_act_on(rank, target_rank):
            return [proto.Tell(f"you cannot /{action} {target}: they outrank you in {room}")]
        if found is None:
            if account is None or action in ("kick", "kill"):
                return [proto.Tell(f"no user named {target} is here")]
            # a registered nick nobody holds: by its account, at once
            which: rules.EntryList = "bans" if action == "ban" else "muted"
            entry = f"account:{account.key}"

            def add(r: RoomRecord) -> RoomRecord | str:
                return r.with_entry(which, entry, account.nick) or f"{room}'s list is full"

            return await self._record(user, room, action, account.nick, text, add)
        if action == "kick" and found.room != room:
            return [proto.Tell(f"{found.nick} is not in {room}")]
        order: dict[str, str | int] = {
            "order": action,
            "room": room,
            "session": found.session,
            "by": user.core.nick,
            "text": text,
        }
        await self._order(order)
        return []

    async def _record(
        self,
        user: User,
        room: str,
        action: str,
        target: str,
        text: str,
        change: Callable[[RoomRecord], RoomRecord | str],
    ) -> list[proto.Effect]:
        """Change the record, say it in the room and tell every server; the refusal
        (a notice) if ``change`` refused."""
        changed = await self.book.change(room, change)
        if isinstance(changed, str):
            return [proto.Tell(changed)]
        said = " ".join(part for part in (user.core.nick, action, target, text) if part)
        LOGGER.info("%s: %s", room, said)
        await self._changed(room, *changed)
        await self._say(room, user.core.nick, action, target, text)
        return []

    async def _changed(self, room: str, record: RoomRecord, version: int) -> None:
        """The record of ``room`` changed: this server's users of the room follow it at
        once, and the other servers are told, the record with the order (before the room
        hears of it: they need not read it back to follow)."""
        await self._refresh(room)
        data = rules.encode_record(record).decode()
        await self._order({"order": "changed", "room": room, "record": data, "version": version})

    async def _refresh(self, room: str) -> None:
        for member in list(self.users.values()):
            if member.core.room == room and member.phase is LIVE:
                await self.entered(member)

    async def _say(self, room: str, by: str, action: str, target: str, text: str) -> None:
        event = proto.Moderation(room, by, action, target, text)
        await publish(self.hub, None, proto.room_topic(room), event, self.store)

    async def _order(self, order: dict[str, str | int]) -> None:
        data = json.dumps(order, separators=(",", ":"), sort_keys=True).encode()
        try:
            self.hub.publish_nowait(ORDERS, data)
        except trio.WouldBlock:
            await self.hub.publish(ORDERS, data)

    # -- orders from every server --------------------------------------------------------

    async def obey_forever(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Carry out the orders of every server (this one's too), until cancelled."""
        async with self.hub.subscribe(ORDERS, buffer=256, policy="block") as orders:
            task_status.started()
            async for data in orders:
                try:
                    order: Any = json.loads(data)
                    await self._obey(order)
                except (ValueError, KeyError, TypeError) as exc:
                    LOGGER.warning("an order that is none: %s", exc)
                except Exception as exc:  # the store failed: logged, the next goes on
                    LOGGER.warning("order %r: %s: %s", order, type(exc).__name__, exc)

    async def _obey(self, order: dict[str, Any]) -> None:
        room = order["room"]
        if order["order"] == "changed":
            record = rules.decode_record_untrusted(order["record"].encode())
            self.book.learn(room, record, int(order["version"]))
            await self._refresh(room)
            return
        session = order["session"]
        user = self.users.get(session)
        if user is not None and user.phase is LIVE:
            core, host = user.core, host_of(user.member.label)
        else:
            away = self._away(session)
            if away is None:
                return  # another server's, or gone
            (core, host), user = away, None
        action, by, text = order["order"], order["by"], order["text"]
        reason = f" ({text})" if text else ""
        if action in ("ban", "mute") and (core.account is not None or host):
            which: rules.EntryList = "bans" if action == "ban" else "muted"
            entry = rules.entry_for(core.account, host)
            nick = core.nick

            def add(r: RoomRecord) -> RoomRecord | str:
                return r.with_entry(which, entry, nick) or f"{room}'s list is full"

            changed = await self.book.change(room, add)
            if isinstance(changed, str):
                LOGGER.warning("%s: %s could not %s %s: %s", room, by, action, nick, changed)
                return
            await self._changed(room, *changed)
        LOGGER.info("%s: %s %s %s%s", room, by, action, core.nick, reason)
        await self._say(core.room if action == "kill" else room, by, action, core.nick, text)
        if action == "mute" or (action != "kill" and core.room != room):
            return
        if user is None:  # away: it ends, and its room is told it left
            await self._drop_away(session)
            return
        every = self.connections.of(user)  # (a session may have several)
        if action == "kill":
            for each in every:
                each.end("removed", f"disconnected by {by}{reason}")
            return
        done = _DONE[action]
        lobby = proto.DEFAULT_ROOM
        if room == lobby or await self.refused_entry(user, lobby) is not None:
            for each in every:
                each.end("removed", f"{done} from {room} by {by}{reason}")
            return
        for each in every:
            self._fanout.tell(each, f"{by} {done} you from {room}{reason}")
        await self._carry_out(user, [proto.Move(lobby)])

    def _away(self, session: str) -> tuple[proto.ChatSession, str] | None:
        """The state of ``session`` and its last address, if it is detached here."""
        return None  # (Sessions knows its detached sessions)

    async def _drop_away(self, session: str) -> None:
        """End ``session``, detached here, for good (its room is told it left)."""
        await trio.lowlevel.checkpoint()  # (Sessions knows its detached sessions)
