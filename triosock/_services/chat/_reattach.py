"""The service's side of a resume: detaching a session, taking it back on a new
connection, and ending it when its window runs out (the rules are told in
:mod:`._resume`).

:class:`Reattaching` is a part of :class:`~._sessions.Sessions` (its base), kept apart
for size: it works on the same users, directory, store and fan-out.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TypeVar

import trio

from ..._accounts import Accounts
from ..._directory import Directory
from ..._errors import DirectoryUnavailable
from ..._pacer import Pacer
from ..._sansio import chat as proto
from ..._store import Store
from ._fanout import FanOut
from ._history import HISTORY_UNREADABLE, HistoryViews
from ._member import Member
from ._presence import Presence
from ._resume import MAX_CATCH_UP, Detached, Resumes, host_of, token_notice
from ._settings import ChatSettings
from ._user import LEFT, User

__all__ = ["Reattaching"]

LOGGER = logging.getLogger("triosock.chat")


T = TypeVar("T")


class Reattaching:
    """Detaching, resuming and expiring sessions (a base of ``Sessions``)."""

    users: dict[str, User]
    directory: Directory
    store: Store
    resumes: Resumes
    views: HistoryViews
    _fanout: FanOut
    _presence: Presence
    _settings: ChatSettings
    _pacer: Pacer
    accounts: Accounts

    async def _store_answer(self, asking: Awaitable[T]) -> T | None:
        raise NotImplementedError  # pragma: no cover - Sessions has it

    async def entered(self, user: User) -> list[proto.Effect]:
        raise NotImplementedError  # pragma: no cover - Operating has it (before us)

    def _detach(self, user: User, why: str | None = None) -> Detached | None:
        """Keep ``user``'s session for a resume, if the server has a window and the
        session had begun (and the server is not stopping); None: it ends. ``why``: what
        ended it, when no end reason was given (cancelled from outside)."""
        resumes, ending = self.resumes, user.ending
        if not resumes.window or not user.core.started:
            return None
        if user.member.stopping or user.phase is LEFT:
            return None
        if why is None:
            if ending is None:
                return None
            why = ending.describe(user.detail)
        detached = resumes.detach(user, why)
        user.leave()  # nobody is told: it is away, not gone
        LOGGER.info(
            "%s detached (%s); its session waits %g s for a resume",
            user.core.nick,
            why,
            resumes.window,
        )
        return detached

    async def _reattach(self, user: User, request: proto.ResumeRequest) -> str | None:
        """Make ``user``'s connection the session ``request`` asks for; None when it
        did, else why not (a notice for the user)."""
        resumes, member = self.resumes, user.member
        if not resumes.window:
            return "this server keeps no session for a resume (--resume-window 0)"
        why = proto.check_token_untrusted(request.token)
        if why is not None:
            resumes.refused += 1
            return f"resume refused: {why}"
        session = resumes.owner(request.token)
        if session is None and (detached := await self._take_over(request.token)) is not None:
            await self._drop_own(user)
            await self._take_back(user, detached, request)
            return None
        if session is None:
            resumes.refused += 1
            if request.epoch is not None and request.epoch != self.store.epoch:
                # a token of the server before its restart (every page of it comes back
                # at once): no guess, so not slowed
                await trio.lowlevel.checkpoint()
                return (
                    "resume refused: the server restarted and kept neither the sessions nor "
                    "the history (its epoch changed): what was said while you were away is "
                    "lost; you are a new session"
                )
            delay = resumes.wrong.wrong(host_of(member.label), trio.current_time())
            with member.hold_idle():  # slowed by us: not idle
                await trio.sleep(delay)
            return (
                "resume refused: no session has that token (a session waits "
                f"{resumes.window:g} s after its connection is lost; /quit ends it)"
            )
        if session == user.core.session:
            return "this is that session already"
        try:
            own = await self.directory.take_own(session)
        except DirectoryUnavailable as exc:  # this server's word, then
            LOGGER.warning("a resume could not ask the directory: %s", exc)
            own = True
        if not own:
            return "resume refused: that session was resumed on another server"
        detached = await self._take_detached(session)
        if detached is None:
            return "resume refused: that session has just ended"
        await self._drop_own(user)
        await self._take_back(user, detached, request)
        return None

    async def _take_over(self, token: str) -> Detached | None:
        """The session of another server with this token, taken over (the directory
        shares sessions across servers), as a detached session of this one; None when
        no other server has it."""
        try:
            presence = await self.directory.take_session(proto.token_digest(token))
        except DirectoryUnavailable as exc:
            LOGGER.warning("a resume could not ask the directory: %s", exc)
            return None
        if presence is None:
            return None
        mine = await self._take_detached(presence.session)  # (it knew another token)
        if mine is not None:
            return mine
        now = trio.current_time()
        core = self._core(presence)
        detached = Detached(now, core.session, core, now, "resumed here", remote=True)
        detached.gone.set()
        return detached

    async def _logged_in_as_nick(self, core: proto.ChatSession) -> None:
        """A session that another server ran holds a registered nick only if it is
        logged in to it (a registered nick is taken only by a login, and given up by a
        logout): it is logged in here too."""
        key = proto.nick_key(core.nick)
        if await self._store_answer(self.accounts.get(key)) is not None:
            core.account = key

    def _new_core(
        self, presence: proto.Presence, member: Member | None = None
    ) -> proto.ChatSession:
        """A session's state, under this server's limits (with the rules of ``member``'s
        transport, if given)."""
        settings = self._settings
        new = proto.ChatSession if member is None else member.new_session
        return new(
            presence,
            max_line_length=settings.max_line_length,
            rate=settings.rate,
            burst=settings.burst,
            now=trio.current_time(),
        )

    def _core(self, presence: proto.Presence) -> proto.ChatSession:
        """The state of a session that began on another server (its room has it)."""
        core = self._new_core(presence)
        core.started = True
        return core

    async def _keep_token(self, session: str, token: str) -> None:
        """Let other servers take ``session`` by ``token`` (when the directory is shared)."""
        try:
            await self.directory.keep_token(session, proto.token_digest(token))
        except DirectoryUnavailable as exc:  # it resumes here only, then
            LOGGER.debug("the token of %s is not shared: %s", session, exc)

    async def _reattach_keyed(self, user: User) -> bool:
        """A member that resumes by its key (a UDP peer, by its validated address) gets
        back its detached session, if it has one; whether it did."""
        session = self.resumes.keyed(user.member.resume_key)
        detached = None if session is None else self.resumes.take(session)
        if detached is None:
            return False
        await self._drop_own(user)
        await self._take_back(user, detached, proto.ResumeRequest(""))
        return True

    async def _drop_own(self, user: User) -> None:
        """The connection's own session goes, its connection staying: unannounced if
        its room was never told of it."""
        core = user.core
        for topic in list(user.subs):
            await self._fanout.unsubscribe(user, topic)
        self.store.forget(core.inbox)
        self.resumes.forget_token(core.session)
        if self.users.get(core.session) is user:
            del self.users[core.session]
        try:
            await self.directory.unregister(core.session)
        except DirectoryUnavailable as exc:  # its lease runs out
            LOGGER.warning("%s left, but %s", core.nick, exc)
        if core.started:
            await self._presence.announce_all(user.member, core.leave())
            LOGGER.info("%s left (its connection took back another session)", core.nick)

    async def _take_back(
        self, user: User, detached: Detached, request: proto.ResumeRequest
    ) -> None:
        """``detached`` goes on on ``user``'s connection: a new token, what it missed,
        then its live lines."""
        resumes, member, fanout = self.resumes, user.member, self._fanout
        away = trio.current_time() - detached.since
        core = user.core = detached.core
        if detached.remote:  # begun on another server: logged in if its nick is an account
            await self._logged_in_as_nick(core)
        self.users[core.session] = user
        token = resumes.issue(core.session, keep_previous=True)
        if member.resume_key is None:
            await self._keep_token(core.session, token)
        await fanout.subscribe(user, core.inbox, held=True)  # what comes meanwhile waits
        await fanout.subscribe(user, core.topic, held=True)
        limit = member.catch_up_limit or MAX_CATCH_UP
        budget = self._settings.max_backlog // 2  # shown at once, like any earlier lines
        try:
            told, shown, shown_ids = await resumes.missed(detached, request, limit, budget, user)
        except Exception as exc:  # the store's client's errors (a broker away)
            LOGGER.warning("could not read what %s missed: %r", core.nick, exc)
            told, shown, shown_ids = [HISTORY_UNREADABLE], [], {}
        greeting = member.greeting(core.nick, core.room, token, self.store.epoch)
        if greeting:
            user.outbox.put(greeting, 0)
        lines = sum(isinstance(event, proto.Recalled) for event in shown)
        fanout.tell(
            user,
            f"welcome back, {core.nick}: you were away {away:.0f} s; "
            f"{lines} line{'' if lines == 1 else 's'} came meanwhile",
        )
        for text in told:
            fanout.tell(user, text)
        if member.tells_token:
            fanout.tell(user, token_notice(token, resumes.window))
        elif member.resume_key is not None:  # it resumes by its key: no token at all
            resumes.forget_token(core.session)
        self.views.show(user, shown, shown_ids)
        for topic in (core.inbox, core.topic):
            fanout.release(user, topic, shown_ids.get(topic))
        resumes.resumed += 1
        await self._store_answer(self.entered(user))  # (its rank, in its room, here)
        LOGGER.info(
            "%s resumed (%s %s) after %.0f s away", core.nick, member.kind, member.label, away
        )

    # -- the end of the window -----------------------------------------------------------

    async def expire_forever(self) -> None:
        """End each detached session whose window runs out (its room sees it leave)."""
        while True:
            await self.resumes.wait_due()
            for detached in self.resumes.due():
                await self._pacer.turn()
                await self._expire(detached)

    async def hand_over(self, session: str) -> None:
        """``session`` resumed on another server: it goes from here without a word (its
        room still has it); a connection still attached to it here is told and closed."""
        attached = session in self.users
        if await self._take_detached(session) is not None or attached:
            LOGGER.info("session %s resumed on another server", session)
        self.resumes.forget_token(session)

    async def _take_detached(self, session: str) -> Detached | None:
        """``session`` out of the detached ones, if it is here; a connection still
        attached to it here is told why (``moved``) and closed first."""
        resumes = self.resumes
        other = self.users.get(session)
        if other is not None and session not in resumes.detached:
            other.end("moved")
            with trio.move_on_after(self._settings.goodbye_timeout + 1):
                await resumes.wait_detached(session)
        return resumes.take(session)

    def adopt(self, presence: proto.Presence, digest: bytes) -> None:
        """A dead server's session, in this server's care: it waits for its resume."""
        if not self.resumes.window:
            return
        self.resumes.adopt(self._core(presence), digest, "its server died")
        LOGGER.info(
            "%s detached (its server died); its session waits %g s for a resume here",
            presence.nick,
            self.resumes.window,
        )

    async def expire_all(self) -> None:
        """End every detached session now (the server stops)."""
        for session in list(self.resumes.detached):
            detached = self.resumes.take(session)
            if detached is not None:
                await self._expire(detached)

    async def _expire(self, detached: Detached) -> None:
        core = detached.core
        self.resumes.forget_token(core.session)
        try:
            if not await self.directory.unregister(core.session):
                return  # another server took it (a resume there): it goes on there
        except DirectoryUnavailable as exc:  # its lease runs out
            LOGGER.warning("%s left, but %s", core.nick, exc)
        self.store.forget(core.inbox)
        await self._presence.announce_all(None, core.leave())
        LOGGER.info(
            "%s left (%s, then no resume within %g s)",
            core.nick,
            detached.why,
            self.resumes.window,
        )
