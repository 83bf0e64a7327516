"""The life of a chat session: serve a member, read it, carry out what it says, end it.

:meth:`Sessions.serve` runs one user over any member adapter: it registers the user
with the directory and subscribes it to its inbox and room (the fan-out feeds them), in
the order clients arrive; lets the member screen its client (``Member.screen``: one
that is no chat client is refused before the room hears of it); greets it and tells
its room it joined; then reads: the session's rules
(:class:`~triosock._sansio.chat.ChatSession`) turn each input item into effects, and
this module carries them out (``Publish`` on the hub, ``Tell`` after what is queued,
the directory's effects, ``Pause``, ``Close``). Then it
finishes the session as its end reason's record says (:mod:`._ending`) and tells the
room and the directory that the user left.

* **The sender is slowed, never the room.** Each item of a session's input spends a
  token of a rate limit (``rate`` lines per second, ``burst`` at once), refused or not:
  a line, a refused message, a telnet command that gets an answer; past it, the session
  stops reading until the next token, so a paste waits in the sender's own socket, not
  in the server, and a flood of refused input gets its answers at that pace.
  Subscriptions are bounded (``buffer`` events) and lossless: when one is full, only
  because the fan-out has not run yet, the publishing session waits for that pass. Its
  idle clock stops meanwhile: the server, not the user, is the one waiting.
* **Answers are bounded too.** Notices and telnet answers (``Reply``) are never
  dropped; a member that asks for them faster than it reads is disconnected once more
  than ``max_backlog`` bytes of them wait (looked at after each read, and after each
  item that was answered).
* **The goodbye follows the lines already queued.** ``/join``, ``/quit``, a stop or a
  disconnect never cuts a line.
* **Bursts of arrivals and departures are paced**: sessions begin, and end, at most
  :data:`SESSIONS_PER_BATCH` a scheduler batch.
* **Ghosts.** With a directory that has leases, users whose server stopped renewing
  them are reaped, and their rooms told they left. What such a directory changes of
  this server's users on its own (a nick gone to an earlier claim, users reaped while
  this server was cut off and now back) is carried out as it comes: the user is told
  and renamed, the room told they joined.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import Awaitable
from typing import Final, TypeVar

import trio

from ..._accounts import Accounts, Hasher, MemoryAccounts
from ..._directory import Adopted, Directory, HandedOver, NickLost, Repair, Returned
from ..._errors import DirectoryUnavailable
from ..._pacer import Pacer
from ..._sansio import chat as proto
from ..._sansio.accounts import FailedLogins, Registrations
from ..._store import Store
from ..._transport.outbox import OutboxStalled
from ._accounts import Accounting
from ._ending import Ending
from ._fanout import FanOut
from ._history import HistoryViews
from ._member import Member
from ._operators import Operating, RoomBook
from ._presence import NICK_LOST, Presence, publish
from ._reattach import Reattaching
from ._resume import Detached, Resumes, token_notice
from ._settings import ChatSettings
from ._user import LEFT, LIVE, Connections, User

__all__ = ["DIRECTORY_DOWN", "SESSIONS_PER_BATCH", "Sessions"]

LOGGER = logging.getLogger("triosock.chat")

#: Sessions that may begin, or end, in one scheduler batch; more wait for later batches
#: (a burst of a thousand ends would otherwise hold every room for 100-300 ms).
SESSIONS_PER_BATCH: Final = 16
#: What users are told when the directory cannot be reached.
DIRECTORY_DOWN: Final = "the chat's directory is unreachable right now; try again in a moment"

T = TypeVar("T")

_GONE = (OutboxStalled, trio.BrokenResourceError)


class Sessions(Operating, Accounting, Reattaching):
    """Every session of one chat server, from arrival to leaving.

    Args:
      directory: nicks, rooms and session ids.
      fanout: what feeds the members' outboxes (from its hub, where lines are published).
      presence: how joins and leaves reach the rooms.
      settings: each session's limits (line length, rate, burst), the bytes of answers
        that may wait for a member (``max_backlog``), the stall rule and goodbye
        deadline of the last writes (see :mod:`._ending`), and the earlier lines shown
        on joining a room (``history_on_join``).
      store: where the lines said are recorded, and read back.
      accounts: the registered nicks (in memory by default).
      hasher: what hashes passwords off the event loop.
      opers: the account keys of the server operators.

    Attributes:
      users: session id -> user, for the sessions running now.
      sessions_total, lines_received, paced: the counters of
        :class:`~._server.ChatStatistics`.
    """

    def __init__(
        self,
        directory: Directory,
        fanout: FanOut,
        presence: Presence,
        settings: ChatSettings,
        store: Store,
        accounts: Accounts | None = None,
        hasher: Hasher | None = None,
        opers: frozenset[str] = frozenset(),
    ) -> None:
        self.hub = fanout.hub
        self.accounts = accounts if accounts is not None else MemoryAccounts()
        self.hasher = hasher if hasher is not None else Hasher()
        self.failed_logins = FailedLogins()
        self.registrations = Registrations()
        self.book = RoomBook(self.accounts)
        self.opers = opers
        self.store = store
        self.views = HistoryViews(fanout, store, settings)
        self.resumes = Resumes(settings.resume_window, settings.max_detached, store)
        self.directory = directory
        self._fanout = fanout
        self._presence = presence
        self._settings = settings
        self._pacer = Pacer(SESSIONS_PER_BATCH)  # session starts and ends, a few a batch
        self.users: dict[str, User] = {}
        self.connections = Connections()
        self.sessions_total = 0
        self.lines_received = 0
        self.paced = 0

    # -- a session ---------------------------------------------------------------------

    async def serve(self, member: Member) -> None:
        """Run one user's session over ``member`` until it ends."""
        await self._pacer.turn()
        try:
            presence = await self.directory.register(member.kind, member.preferred_nick)
        except DirectoryUnavailable as exc:
            LOGGER.warning("refused %s %s: %s", member.kind, member.label, exc)
            member.outbox.put(member.renderer.notice(DIRECTORY_DOWN), 0)
            goodbye = self._settings.goodbye_timeout
            with trio.move_on_after(goodbye), contextlib.suppress(*_GONE):
                await member.outbox.flush(stall_timeout=goodbye)
                await member.linger()
            return
        core = self._new_core(presence, member)
        if member.account is not None and proto.nick_key(presence.nick) == member.account:
            core.account = member.account  # logged in before its session began (SASL)
            self.logins += 1
        user = User(member, core)
        self.users[core.session] = user
        fanout = self._fanout
        try:
            async with trio.open_nursery() as nursery:
                user.nursery = nursery
                nursery.start_soon(fanout.write_loop, user)
                # Its nick taken and its inbox subscribed in the order clients arrive, the
                # user is ARRIVING: its member may still find it is no chat client, before
                # anything is said to it or of it. Its room is subscribed when it begins
                # (Replay): a room waits for nobody still being screened.
                await fanout.subscribe(user, core.inbox)
                if await self._admit(user):
                    with user.scope, member.stop_scope():
                        await self._begin(user)
                        await self._read(user)
                # Stop the writer between two writes (it never tears one): from here on
                # the outbox is this task's.
                nursery.cancel_scope.cancel()
            await self._finish(user)
        finally:
            core = user.core  # another session's, after a resume
            # Cancelled from outside (idle timeout, UDP expiry, the end of the grace
            # period; the member says which), or done: first out of the hub, so that
            # nothing waits for this session any more (nor does it see its own leaving),
            # then the room is told.
            with trio.CancelScope(shield=True):
                detached = None
                if user.phase is not LEFT:  # not ended by _finish: a burst of these is paced too
                    await self._pacer.turn()
                    if user.member.detaches_when_cancelled():  # a UDP peer that expired
                        detached = self._detach(user, user.member.cancelled_by())
                for topic in list(user.subs):
                    await fanout.unsubscribe(user, topic)
                if detached is not None:
                    self.resumes.connection_over(detached)
                else:
                    with trio.move_on_after(1):
                        await self._leave(user)
            if self.users.get(core.session) is user:
                del self.users[core.session]

    async def _begin(self, user: User) -> None:
        """Greet a session that was let in and tell its room, unless its first line
        asks for a detached session back and gets it (then the room hears nothing of
        this connection's own session)."""
        if await self._reattach_keyed(user):
            return
        request = user.member.take_resume()
        refused = None
        if request is not None:
            refused = await self._reattach(user, request)
            if refused is None:
                return
        core, member = user.core, user.member
        wants = self.resumes.window and member.resume_key is None  # others resume by key
        token = self.resumes.issue(core.session) if wants else ""
        if token:
            await self._keep_token(core.session, token)
        banned = await self._store_answer(self.refused_entry(user, core.room))
        if banned is not None:
            user.end("removed", banned)
            return
        greeting = member.greeting(core.nick, core.room, token, self.store.epoch)
        if greeting:
            user.outbox.put(greeting, 0)
        effects = core.start(welcome=member.welcome)
        effects += await self._store_answer(self.entered(user)) or []
        effects += member.after_entering(core)
        if token and member.tells_token:
            told = proto.Tell(token_notice(token, self.resumes.window))
            effects.insert(1 if member.welcome else 0, told)
        if refused is not None:
            effects.append(proto.Tell(refused))
        await self._carry_out(user, effects)

    async def _admit(self, user: User) -> bool:
        """Let the member screen its client; whether the session begins (LIVE).

        A refused client's session ends for ``"refused"``: its member's answer is its
        farewell, and since it never began, the room is told nothing of its leaving.
        """
        member = user.member
        refused = await member.screen()
        if refused is not None:
            LOGGER.info("refused %s %s: %s", member.kind, member.label, refused)
            user.end("refused", refused)
            return False
        if not user.arrive():  # ended meanwhile (the server is stopping)
            return False
        self.sessions_total += 1
        LOGGER.info("%s joined (%s %s)", user.core.nick, member.kind, member.label)
        return True

    async def _read(self, user: User) -> None:
        """Carry out the member's input until it ends (or the session is ended)."""
        member, hub, store = user.member, self.hub, self.store
        handle, max_backlog = member.handle, self._settings.max_backlog
        while True:
            try:
                burst = await member.receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                user.end("broken", str(exc))  # for the log: a WebSocket's close code
                return
            if burst is None:
                user.end("eof")
                return
            self.lines_received += len(burst)
            self.resumes.confirm(user.core.session)  # it has its new token, if resumed
            self._bound_answers(user, max_backlog)
            for item in burst:
                effects = handle(user.core, item, trio.current_time())  # a resume changes it
                if len(effects) == 1 and type(effects[0]) is proto.Publish:  # a line said
                    await publish(hub, member, effects[0].topic, effects[0].event, store)
                elif effects:
                    close = await self._carry_out(user, effects)
                    if close is not None:
                        user.end(close.reason, close.detail)
                        return
                    self._bound_answers(user, max_backlog)  # a burst may be long, paced

    def _bound_answers(self, user: User, max_backlog: int) -> None:
        """Disconnect ``user`` once more than ``max_backlog`` bytes of answers wait for it.

        Notices and telnet answers are never dropped, whatever the policy: one that asks
        for them faster than it reads must not grow without end.
        """
        if user.outbox.control > max_backlog:
            self._fanout.disconnect(
                user,
                f"{user.outbox.control} bytes of answers to it were waiting, over the "
                f"limit of {max_backlog}",
            )

    async def _carry_out(self, user: User, effects: list[proto.Effect]) -> proto.Close | None:
        """Carry out ``effects`` in order; the one that closes the session, if any."""
        pending = deque(effects)
        while pending:
            effect = pending.popleft()
            answer: list[proto.Effect] = []
            match effect:
                case proto.Publish(topic, event):
                    await self._presence.announce(user.member, topic, event, user.core.inbox)
                case proto.Tell(text):
                    self._fanout.tell(user, text)
                case proto.Reply(data):
                    user.outbox.put(data, 0)  # never dropped: bounded by max_backlog
                case proto.Pause(seconds):
                    self.paced += 1
                    with user.member.hold_idle():  # slowed by us: not idle
                        await trio.sleep(seconds)
                case (
                    proto.Rename()
                    | proto.Move()
                    | proto.Lookup()
                    | proto.ListUsers()
                    | proto.ListRooms()
                ):
                    answer = await self._ask_directory(user, effect)
                case proto.Replay(room):
                    for each in self.connections.of(user):  # (each connection, held)
                        await self.views.replay(each, room)
                case proto.Recall(room, count):
                    await self.views.recall(user, room, count)
                case (
                    proto.CreateAccount() | proto.LogIn() | proto.ChangePassword() | proto.LogOut()
                ):
                    answer = await self.account_effect(user, effect)
                    if isinstance(effect, proto.LogIn | proto.LogOut):  # another rank now
                        await self._store_answer(self.entered(user))
                case proto.Act():
                    answer = await self._store_answer(self.act(user, effect)) or []
                case proto.Reattach(request):
                    refused = await self._reattach(user, request)
                    if refused is not None:
                        self._fanout.tell(user, refused)
                case proto.Close():
                    return effect
            pending.extendleft(reversed(answer))
        return None

    # -- the directory's effects -------------------------------------------------------

    async def _ask_directory(self, user: User, effect: proto.Effect) -> list[proto.Effect]:
        try:
            return await self._run_effect(user, effect)
        except DirectoryUnavailable as exc:
            LOGGER.warning("%s: %s", user.core.nick, exc)
            return [proto.Tell(DIRECTORY_DOWN)]

    async def _run_effect(self, user: User, effect: proto.Effect) -> list[proto.Effect]:
        """What asking the directory for ``effect`` answers (see :meth:`_carry_out`)."""
        core, directory = user.core, self.directory
        match effect:
            case proto.Rename(nick):
                refused = await self.may_take(user, nick)
                if refused is not None:
                    return [proto.Tell(refused)]
                return core.renamed(nick, await directory.rename(core.session, nick))
            case proto.Move(room):
                banned = await self._store_answer(self.refused_entry(user, room))
                if banned is not None:
                    return [proto.Tell(banned)]
                await self._move(user, room)
                effects = core.moved(room) + (await self._store_answer(self.entered(user)) or [])
                return effects + user.member.after_entering(core)
            case proto.Lookup(nick):
                target = await directory.lookup(nick)
                kept = await self.to_offline(user, effect) if target is None else None
                return kept if kept is not None else core.found(effect, target)
            case proto.ListUsers(room):
                nicks = await directory.nicks(room or None)  # "": everyone's
                away = self.resumes.away()
                if room and user.member.marks_operators:  # IRC's @ in NAMES and WHO
                    ops = await self._store_answer(self.operators_among(room, nicks))
                    return user.member.listed(core, room, nicks, away, ops or frozenset())
                return core.listed_users(room, nicks, away=away)
            case proto.ListRooms():
                rooms = await directory.rooms()
                topics = await self._store_answer(self.room_topics(rooms))
                return core.listed_rooms(rooms, topics or {})
        raise TypeError(f"not a directory effect: {effect!r}")

    def _detach(self, user: User, why: str | None = None) -> Detached | None:
        if not user.member.resumable:  # an IRC client's session ends with its connection
            return None
        if self.connections.others(user):  # it goes on on its other connections
            return None
        return super()._detach(user, why)

    def _away(self, session: str) -> tuple[proto.ChatSession, str] | None:
        detached = self.resumes.detached.get(session)
        return None if detached is None else (detached.core, detached.host)

    async def _drop_away(self, session: str) -> None:
        detached = self.resumes.take(session)
        if detached is not None:
            await self._expire(detached)

    async def _store_answer(self, asking: Awaitable[T]) -> T | None:
        """What ``asking`` answers; None (logged) when the store cannot be reached."""
        try:
            return await asking
        except Exception as exc:
            LOGGER.warning("rooms: %s: %s", type(exc).__name__, exc)
            return None

    async def _move(self, user: User, room: str) -> None:
        """Subscribe to ``room`` first (the user sees its own arrival, after the room's
        earlier lines: the subscription is held until they are shown, see
        :meth:`_replay`), then leave the old room's subscription with what it still
        holds delivered."""
        old, new = user.core.topic, proto.room_topic(room)
        if new == old:
            await self.directory.move(user.core.session, room)
            return
        every = self.connections.of(user)
        for each in every:
            await self._fanout.subscribe(each, new, held=True)
        try:
            await self.directory.move(user.core.session, room)
        except BaseException:
            for each in every:
                await self._fanout.unsubscribe(each, new)  # still in the old room
            raise
        for each in every:
            await self._fanout.unsubscribe(each, old)

    # -- the end -----------------------------------------------------------------------

    async def _finish(self, user: User) -> None:
        """The end of a session: what was queued, then the farewell, then the close, as
        the end reason's record says (see :mod:`._ending`)."""
        await self._pacer.turn()  # a thousand peers that close at once end a few a batch
        member = user.member
        idle = member.idled()
        if member.stopping:  # (each end below: unless ended already)
            user.end("stopping")
        elif idle is not None:  # the transport's idle timeout ended the input
            user.end("idle", idle)
        else:
            user.end("eof")
        ending = user.ending
        assert ending is not None
        for topic in list(user.subs):  # first, so that it does not see its own leaving
            await self._fanout.unsubscribe(user, topic)
        detached = self._detach(user) if ending.detaches else None
        if detached is None:
            await self._leave(user)
        try:
            await self._goodbye(user, ending)
        finally:
            if detached is not None:  # what it took is known now
                self.resumes.connection_over(detached)

    async def _goodbye(self, user: User, ending: Ending) -> None:
        """What was queued, then the farewell, then the close (see :meth:`_finish`)."""
        member, outbox = user.member, user.outbox
        if not ending.writes or outbox.error is not None:
            return
        stall_timeout, deadline = self._settings.stall_timeout, math.inf
        if ending.goodbye_deadline:
            stall_timeout, deadline = None, trio.current_time() + self._settings.goodbye_timeout
        if ending.drops_waiting:
            outbox.drop_waiting()  # what it could not take; the line under way is finished
        farewell = member.farewell(ending.reason, user.detail)
        if farewell:
            outbox.put(farewell)
        with trio.move_on_at(deadline), contextlib.suppress(*_GONE):
            await outbox.flush(stall_timeout=stall_timeout)
            await member.linger()

    async def _leave(self, user: User) -> None:
        """Tell the room and the directory that ``user`` is gone, once.

        The step to LEFT comes last: a leaving cut short by a cancellation (the end of
        the grace period during a stop) is done again by the session's ``finally``,
        shielded, so that the room is told and the log says why.
        """
        if user.phase is LEFT:
            return
        core = user.core
        if self.connections.others(user):  # the session goes on on its other connections
            self.connections.part(user, self.users)
            user.leave()
            LOGGER.info("%s: one of its connections closed (%s)", core.nick, user.member.label)
            return
        self.resumes.forget_token(core.session)
        mine = True
        try:
            mine = await self.directory.unregister(core.session)  # idempotent
        except DirectoryUnavailable as exc:  # nobody renews its lease: it runs out
            LOGGER.warning("%s left, but %s", core.nick, exc)
        if not mine and core.started:  # it resumed on another server: it goes on there
            user.leave()
            LOGGER.info("%s left here (its session resumed on another server)", core.nick)
            return
        self.store.forget(core.inbox)  # nobody will read it
        await self._presence.announce_all(user.member, core.leave())
        user.leave()
        if not core.started:  # never joined: nobody was told it came (see _admit)
            return
        ending = user.ending
        if ending is not None:
            why = ending.describe(user.detail)
        else:  # cancelled from outside: the member says by what
            cause = user.member.cancelled_by()
            why = "cancelled" if cause is None else f"cancelled: {cause}"
        LOGGER.info("%s left (%s)", core.nick, why)

    # -- every session -----------------------------------------------------------------

    def tell_everyone(self, text: str) -> None:
        """A notice to every LIVE user, after what is queued for each already."""
        for user in list(self.users.values()):
            if user.phase is LIVE:
                self._fanout.tell(user, text)

    def tell_history_reset(self, epoch: str, text: str) -> None:
        """Tell every LIVE user the history began again (its ids with it): the
        member's own frame (a WebSocket event), then the notice, before what its
        subscriptions hold (the new history's lines)."""
        for user in list(self.users.values()):
            if user.phase is LIVE:
                user.seen.clear()  # ids of the old history: they filter nothing now
                frame = user.member.history_reset(epoch)
                if frame:
                    user.outbox.put(frame, 0)
                user.outbox.put(user.renderer.notice(text), 0)

    def end_everyone(self) -> None:
        """End every session: the server is stopping (nobody feeds them any more)."""
        for user in list(self.users.values()):
            user.end("stopping")

    async def reap_forever(self, interval: float) -> None:
        """Tell the rooms of users whose server died (their leases ran out) they left."""
        while True:
            await trio.sleep(interval)
            try:
                ghosts = await self.directory.reap(adopt=bool(self.resumes.window))
            except DirectoryUnavailable:
                continue
            for ghost in ghosts:
                LOGGER.info("%s left (its server stopped renewing its lease)", ghost.nick)
                left = proto.Left(ghost.room, ghost.nick)
                with contextlib.suppress(trio.ClosedResourceError):
                    await self._presence.announce(None, proto.room_topic(ghost.room), left)

    async def repair_forever(self) -> None:
        """Carry out what the directory changes of this server's users on its own, as
        it changes it: a user whose nick went to an earlier claim is told why and
        renamed (its room sees the change); a user reaped while this server was cut
        off is announced again."""
        while True:
            await self._repair(await self.directory.repairs())

    async def _repair(self, repairs: list[Repair]) -> None:
        for repair in repairs:
            if isinstance(repair, HandedOver):
                await self.hand_over(repair.session)
                continue
            if isinstance(repair, Adopted):
                self.adopt(repair.presence, repair.digest)
                continue
            user = self.users.get(repair.session)
            if user is None or user.phase is LEFT:
                continue
            core = user.core
            match repair:
                case NickLost(_, nick, guest) if core.owns(nick):
                    LOGGER.info("%s is %s now: an earlier claim on the nick won", nick, guest)
                    effects = core.renamed(guest, True)
                    if user.phase is LIVE:
                        self._fanout.tell(user, NICK_LOST.format(nick=nick, guest=guest))
                        await self._carry_out(user, effects)
                case Returned(presence) if user.phase is LIVE:
                    joined = proto.Joined(presence.room, core.nick)
                    with contextlib.suppress(trio.ClosedResourceError):
                        await self._presence.announce(None, proto.room_topic(presence.room), joined)
