"""Registered nicks: ``/register``, ``/login`` (``/identify``), ``/password``, ``/logout``,
carried out for the sessions (:class:`Accounting`, a part of ``Sessions``).

* **A registered nick is its owner's.** ``/nick NAME`` to a registered nick is refused
  unless the session is logged in to it, with a notice that says how to log in
  (:meth:`Accounting.may_take`).
* **Logging in takes the nick.** A session of this server that holds it without being
  logged in to it (a guest who took it while its owner was away) is renamed to a guest
  nick and told why; a session of another server holding it is not reachable from here,
  and the login says to try again when it is free.
* **Passwords** are hashed off the event loop, a few at a time (:class:`~triosock.
  _accounts.Hasher`), and compared in constant time. A failed login is answered after a
  delay that doubles per account and per address (:class:`~triosock._sansio.accounts.
  FailedLogins`), logged with the nick and the address, never the password. While a
  login of an account (or from an address) is checked, and during a failure's delay,
  other attempts for it are refused unchecked: guessing in parallel gains nothing, and
  costs no hashing. Registrations are paced per address (:class:`~triosock._sansio.
  accounts.Registrations`).
* **Several connections, one account.** A login to an account that a running session
  of this server is logged in to (a laptop, then a phone) does not take the nick from
  it: the new connection leaves its guest session and becomes another connection of
  that session (see ``Sessions.attach``), which gets everything the session is sent.
  A session of another server holding the nick is not reachable from here: the login
  says so.
* ``/logout`` gives the session a guest nick: a registered nick is held only by its
  owner.
* **Offline messages.** A ``/msg`` to a registered nick nobody holds (its owner is
  neither connected nor detached) is kept for the account, at most
  :data:`OFFLINE_LIMIT` messages (the next are refused, and the sender told), and shown
  to the owner, each with the time it was sent, right after their next login. A guest
  never gets them: only a login (the password) does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable
from typing import Final, TypeVar

import trio

from ..._accounts import Account, Accounts, Hasher
from ..._directory import Directory
from ..._errors import DirectoryUnavailable
from ..._sansio import accounts as rules
from ..._sansio import chat as proto
from ..._sansio.history import Record
from ..._store import Store
from ._fanout import FanOut
from ._history import HistoryViews
from ._member import Member
from ._presence import Presence
from ._resume import Resumes, host_of
from ._user import LIVE, Connections, User

__all__ = ["ACCOUNTS_DOWN", "OFFLINE", "OFFLINE_LIMIT", "Accounting"]

LOGGER = logging.getLogger("triosock.chat")
T = TypeVar("T")

#: What a user is told when the account store cannot be reached.
ACCOUNTS_DOWN: Final = "the chat's accounts cannot be reached right now; try again in a moment"
#: Guest nicks tried when a session must become a guest (they are drawn at random).
_GUEST_TRIES: Final = 20
_WRONG: Final = "wrong nick or password"
#: Direct messages kept for an account while nobody holds its nick.
OFFLINE_LIMIT: Final = 100
#: What the kept messages are shown as (the "room" of their recall).
OFFLINE: Final = "messages kept while you were away"


class Accounting:
    """What the sessions do for accounts; mixed into ``Sessions``, whose ``users``,
    ``directory`` and fan-out it uses."""

    users: dict[str, User]
    views: HistoryViews
    directory: Directory
    resumes: Resumes
    _fanout: FanOut
    _presence: Presence
    accounts: Accounts
    hasher: Hasher
    failed_logins: rules.FailedLogins
    connections: Connections
    store: Store
    registrations: rules.Registrations
    #: Counters for the status: accounts registered here, logins, failed logins (and
    #: failed /password checks), logins refused unchecked (another under way for the
    #: account or address, or within a failure's delay), messages kept for an offline
    #: account.
    registered = 0
    logins = 0
    logins_failed = 0
    logins_refused = 0
    kept_offline = 0

    async def _carry_out(self, user: User, effects: list[proto.Effect]) -> proto.Close | None:
        raise NotImplementedError  # pragma: no cover - Sessions has it

    async def _store_answer(self, asking: Awaitable[T]) -> T | None:
        raise NotImplementedError  # pragma: no cover - Sessions has it

    async def entered(self, user: User) -> list[proto.Effect]:
        raise NotImplementedError  # pragma: no cover - Operating has it (before us)

    def connections_of(self, user: User) -> list[User]:
        """Every connection of ``user``'s session."""
        return self.connections.of(user)

    async def attach(self, user: User, running: User) -> None:
        """``user`` (a guest's connection) becomes one more connection of ``running``'s
        session: it leaves as the guest (its room is told, its nick freed), then gets
        the session's direct messages and room lines from now on."""
        old = user.core
        for topic in list(user.subs):
            await self._fanout.unsubscribe(user, topic)
        self.resumes.forget_token(old.session)
        with contextlib.suppress(DirectoryUnavailable):  # (its lease runs out)
            await self.directory.unregister(old.session)
        await self._presence.announce_all(user.member, old.leave())
        self.store.forget(old.inbox)  # nobody will read it
        if self.users.get(old.session) is user:
            del self.users[old.session]
        user.core = running.core
        self.connections.add(running, user)
        await self._fanout.subscribe(user, running.core.inbox)
        await self._fanout.subscribe(user, running.core.topic)

    @staticmethod
    def _unreachable(exc: Exception) -> str:
        """The store failed (an I/O error, or sqlite3's or coredis's own): logged, and
        what the user is told."""
        LOGGER.warning("accounts: %s: %s", type(exc).__name__, exc)
        return ACCOUNTS_DOWN

    async def may_take(self, user: User, nick: str) -> str | None:
        """Why ``user`` may not take ``nick`` (a notice), or None: a registered nick is
        taken only by a session logged in to it."""
        key = proto.nick_key(nick)
        if user.core.account == key:
            return None
        try:
            if await self.accounts.get(key) is None:
                return None
        except Exception as exc:  # no nick can be checked now
            return self._unreachable(exc)
        return f"{nick} is registered: /login {nick} PASSWORD if it is yours"

    async def to_offline(self, user: User, lookup: proto.Lookup) -> list[proto.Effect] | None:
        """A ``/msg`` to a nick nobody holds: kept for its account if it is registered
        (what the sender is told), else None (nobody has that nick)."""
        try:
            account = await self.accounts.get(proto.nick_key(lookup.nick))
            if account is None:
                return None
            core = user.core
            now = int(time.time() * 1000)
            direct = proto.Direct(core.nick, account.nick, lookup.text, time=now)
            data = proto.encode_event(direct)
            if not await self.accounts.keep_offline(account.key, data, OFFLINE_LIMIT):
                return [
                    proto.Tell(
                        f"{account.nick} is away and {OFFLINE_LIMIT} messages wait for them "
                        "already: yours was not kept"
                    )
                ]
        except Exception as exc:
            return [proto.Tell(self._unreachable(exc))]
        self.kept_offline += 1
        return [
            proto.Publish(core.inbox, direct),  # the sender's own copy, as for any /msg
            proto.Tell(f"{account.nick} is away: your message is kept for their next login"),
        ]

    async def _deliver_offline(self, user: User, key: str) -> None:
        """Show ``user`` (just logged in to ``key``) the messages kept for it."""
        kept = await self.accounts.take_offline(key)
        # (recall decodes each line, skips what is no line, and shows the time the line
        # carries: the records need no id nor time of their own)
        shown = proto.recall(OFFLINE, [Record(0, 0, data) for data in kept], more=False)
        if shown:
            self.views.show(user, shown)

    async def account_effect(self, user: User, effect: proto.Effect) -> list[proto.Effect]:
        """Carry out an account effect of ``user``'s; what its session answers."""
        try:
            match effect:
                case proto.CreateAccount(password):
                    return await self._register(user, password)
                case proto.LogIn(nick, password):
                    return await self._login(user, nick, password)
                case proto.ChangePassword(old, new):
                    return await self._change(user, old, new)
                case proto.LogOut():
                    return await self._logout(user)
        except Exception as exc:
            return [proto.Tell(self._unreachable(exc))]
        raise TypeError(f"not an account effect: {effect!r}")

    async def _register(self, user: User, password: str) -> list[proto.Effect]:
        core = user.core
        nick, key = core.nick, proto.nick_key(core.nick)
        wait = self.registrations.allow(host_of(user.member.label), trio.current_time())
        if wait:
            return [
                proto.Tell(
                    f"not registered: too many registrations from your address; "
                    f"try again in {math.ceil(wait)} s"
                )
            ]
        if await self.accounts.get(key) is not None:
            return [proto.Tell(f"{nick} is registered already: /login {nick} PASSWORD")]
        record = await self.hasher.record(password)
        account = Account(key, nick, record, int(time.time() * 1000))
        if not await self.accounts.create(account):
            return [proto.Tell(f"{nick} is registered already: /login {nick} PASSWORD")]
        self.registered += 1
        LOGGER.info("%s registered (%s %s)", nick, user.member.kind, user.member.label)
        core.account = key
        return [proto.Tell(f"{nick} is yours: log in with /login {nick} PASSWORD from now on")]

    async def _checked(self, user: User, key: str, password: str) -> Account | str:
        """The account of ``key`` if ``password`` is its; else, after a failure's delay,
        why not (a notice), or at once why it was not even checked."""
        return await self.checked(user.member, key, password)

    async def checked(self, member: Member, key: str, password: str) -> Account | str:
        """:meth:`_checked` for a client whose session has not begun (an IRC client's
        SASL login at registration): the same pacing of failures."""
        host = host_of(member.label)
        refused = self.failed_logins.begin(key, host, trio.current_time())
        if refused is not None:
            self.logins_refused += 1
            LOGGER.debug("login for %s from %s refused unchecked: %s", key, host, refused)
            return f"not checked: {refused}"
        try:
            account = await self.accounts.get(key)
            if account is not None and await self.hasher.verify(password, account.record):
                self.failed_logins.succeeded(key)
                return account
            self.logins_failed += 1
            delay = self.failed_logins.failed(key, host, trio.current_time())
            LOGGER.warning(
                "failed login for %s from %s (%s); answered in %g s",
                key,
                host,
                "no such account" if account is None else "wrong password",
                delay,
            )
            with member.hold_idle():  # slowed by us: not idle
                await trio.sleep(delay)  # (other attempts are refused meanwhile)
            return _WRONG
        finally:
            self.failed_logins.end(key, host)

    async def _login(self, user: User, nick: str, password: str) -> list[proto.Effect]:
        core = user.core
        key = proto.nick_key(nick)
        account = await self._checked(user, key, password)
        if isinstance(account, str):
            why = f"{account} for {nick}" if account == _WRONG else account
            return [proto.Tell(f"login failed: {why}")]
        if rules.needs_rehash(account.record):  # made with weaker parameters: raise them
            await self.accounts.set_record(key, await self.hasher.record(password))
        held = proto.nick_key(core.nick) == key
        if not held:
            running = self._running_as(key)
            if running is not None:  # a phone beside a laptop: one session, two connections
                await self.attach(user, running)
                self.logins += 1
                count = len(self.connections_of(running))
                LOGGER.info(
                    "%s logged in (%s %s): %d connections",
                    account.nick,
                    user.member.kind,
                    user.member.label,
                    count,
                )
                return [proto.Tell(f"you are logged in as {account.nick} ({count} connections)")]
            if not await self._take_nick(user, account.nick):
                return [
                    proto.Tell(
                        f"your password is right, but {account.nick} is held by a session of "
                        "another server: try again when it leaves"
                    )
                ]
        self.logins += 1
        LOGGER.info("%s logged in (%s %s)", account.nick, user.member.kind, user.member.label)
        await self._carry_out(user, core.logged_in(key, core.nick if held else account.nick))
        await self._deliver_offline(user, key)
        return []

    async def sasl_login(self, member: Member, key: str, password: str) -> str | tuple[str, str]:
        """An IRC client's SASL ``PLAIN`` login, before its session begins: the account's
        key and nick, or why not (as ``/login`` says it)."""
        try:
            account = await self.checked(member, key, password)
        except Exception as exc:
            return self._unreachable(exc)
        if isinstance(account, str):
            return account
        if rules.needs_rehash(account.record):
            await self.accounts.set_record(key, await self.hasher.record(password))
        LOGGER.info("%s logged in (%s %s)", account.nick, member.kind, member.label)
        return key, account.nick

    async def nick_free(self, nick: str, account: str | None) -> str | None:
        """Why a client that has not begun may not take ``nick`` (an IRC client's
        ``NICK`` at registration), or None: another session has it, or it is a
        registered nick and the client is not logged in to it."""
        key = proto.nick_key(nick)
        try:
            if await self.directory.lookup(nick) is not None:
                return "Nickname is already in use"
            if account != key and await self.accounts.get(key) is not None:
                return "Nickname is registered: log in to it with SASL"
        except Exception as exc:
            return self._unreachable(exc)
        return None

    def _running_as(self, key: str) -> User | None:
        """The running session of this server logged in to ``key`` (it holds its nick)."""
        for other in self.users.values():
            if other.core.account == key and other.phase is LIVE:
                return other
        return None

    async def _take_nick(self, user: User, nick: str) -> bool:
        """Give ``user`` the nick ``nick``, renaming a session of this server that holds
        it (running, or detached and waiting for a resume) to a guest nick first; False
        if a session of another server holds it."""
        session = user.core.session
        if await self.directory.rename(session, nick):
            return True
        holder = await self.directory.lookup(nick)
        if holder is None or holder.session == session:
            return False
        other = self.users.get(holder.session)
        detached = self.resumes.detached.get(holder.session)
        core = other.core if other is not None else detached.core if detached else None
        if core is None:
            return False  # another server's
        guest = await self._become_guest(core.session)
        if guest is None:
            return False
        LOGGER.info("%s is %s now: %s logged in", nick, guest, nick)
        effects = core.renamed(guest, True)
        core.account = None  # (the same account's older session: logged out with its nick)
        if other is not None and other.phase is LIVE:
            await self._store_answer(self.entered(other))  # its rank in its room is a guest's
            self._fanout.tell(other, f"{nick} logged in: you are {guest} now")
            await self._carry_out(other, effects)
        else:
            await self._presence.announce_all(None, effects)
        return await self.directory.rename(session, nick)

    async def _become_guest(self, session: str) -> str | None:
        """Rename ``session`` in the directory to a free guest nick; which, or None."""
        for _ in range(_GUEST_TRIES):
            guest = proto.default_nick(secrets.randbelow(1_000_000) + 1)
            if await self.directory.rename(session, guest):
                return guest
        return None

    async def _change(self, user: User, old: str, new: str) -> list[proto.Effect]:
        key = user.core.account
        assert key is not None  # the session asks only when logged in
        checked = await self._checked(user, key, old)
        if isinstance(checked, str):
            why = "the old password is wrong" if checked == _WRONG else checked
            return [proto.Tell(f"password not changed: {why}")]
        await self.accounts.set_record(key, await self.hasher.record(new))
        LOGGER.info("%s changed its password", user.core.nick)
        return [proto.Tell("password changed")]

    async def _logout(self, user: User) -> list[proto.Effect]:
        guest = await self._become_guest(user.core.session)
        if guest is None:
            return [proto.Tell("not logged out: no guest nick is free; try again")]
        LOGGER.info("%s logged out: %s now", user.core.nick, guest)
        return user.core.logged_out(guest)
