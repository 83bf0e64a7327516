"""Sessions that resume: detached sessions, their tokens, their expiry, and the catch-up.

A session that ends without ``/quit`` (its connection was closed or lost, it idled, it
stopped reading, or a resume took it to another connection) is **detached** for
``resume_window`` seconds rather than ended (the end reasons that detach are in
:mod:`._ending`): its nick stays reserved and it stays in its room (``/who`` shows it as
away), nobody is told it left, and what is said meanwhile, in its room and to it, is in
the history. When the window runs out it leaves as it would have (its room sees the
leave then). At most ``max_detached`` sessions wait; past that the one detached longest
ago leaves at once.

Every session is told a **token** when it begins (TCP: a notice after the welcome;
WebSocket: in the ``hello`` event; a UDP peer resumes by its address instead). A new
connection that sends ``/resume TOKEN`` (or a JSON ``resume`` event) gets the session
back: its nick and room, then what it missed, once and in order, then the live lines.
The new connection's own guest session goes: unannounced when the resume is its first
line (the room hears nothing of it), else with a leave line. The token changes at every
resume (the new one is told), so a token works once. A session still attached elsewhere
is taken over: its old connection is told why and closed. Tokens are kept as SHA-256
digests only and compared in constant time; a wrong token is answered after a delay that
grows with each wrong token from the same address (see
:class:`~triosock._sansio.chat.WrongTokens`).

**What it missed.** A client that counts ids says the last id it saw of each room
(``after``); else the server resumes after the last line it handed to the old
connection's socket whole (what was in flight on a dead connection may be lost for
that client alone). The lines come from the history: a gap past what it keeps, or a
history that was reset, is told with a count where one is known, never silent.
"""

from __future__ import annotations

import contextlib
import heapq
import hmac
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import trio

from ..._sansio import chat as proto
from ..._sansio.history import Page, Record
from ..._store import Store
from ..._transport.peraddress import LOCAL_ADDRESSES, source_key
from ._history import within
from ._user import User

__all__ = [
    "DEFAULT_MAX_DETACHED",
    "DEFAULT_RESUME_WINDOW",
    "DETACHED_PER_ADDRESS",
    "MAX_CATCH_UP",
    "PREVIOUS_TOKEN_GRACE",
    "REMOTE_CONTEXT",
    "Detached",
    "Resumes",
    "host_of",
    "token_notice",
]

LOGGER = logging.getLogger("triosock.chat")

#: Seconds a detached session waits for its resume.
DEFAULT_RESUME_WINDOW: Final = 120.0
#: The most sessions that may wait detached.
DEFAULT_MAX_DETACHED: Final = 10_000
#: The most lines of one room (or of direct messages) a resume shows; older missed
#: lines are counted, not shown.
MAX_CATCH_UP: Final = 1000
#: Seconds the token a resume was made with keeps working, unless the client speaks on
#: the resumed connection first (then it has the new one).
PREVIOUS_TOKEN_GRACE: Final = 30.0
#: The lines of each room shown to a session that resumes from another server without
#: saying the ids it saw (that server did not say what it had written to it).
REMOTE_CONTEXT: Final = 20
#: The most detached sessions of one source address (an IPv6 /64; loopback exempt, as
#: for connections): past it, that address's own oldest ends, not somebody else's.
DETACHED_PER_ADDRESS: Final = 16


def token_notice(token: str, window: float) -> str:
    """What a TCP user is told of its token."""
    return (
        f"your resume token: {token} (secret; if your connection drops, send "
        f"/resume {token} as the first line of a new one within {window:g} s to get "
        "your session back)"
    )


@dataclass(order=True, slots=True)
class Detached:
    """A session waiting for its resume.

    Attributes:
      deadline: when it leaves for good (trio time).
      session: its id.
      core: its state (nick, room, rate limit).
      since: when it was detached (trio time).
      why: what ended its connection, for the log.
      user: its last connection's record, while that connection says goodbye (for what
        was written to it); None after.
      last: topic -> the newest id handed to its last connection whole.
      gone: set once its last connection is over.
      key: its member's resume key (a UDP peer's address), if it resumes by that.
      source: its source address as the per-address count sees it (None: exempt).
      remote: it came from another server (taken by its token, or adopted from a dead
        one), which did not say what it had written to it.
      host: the address its last connection came from (``""`` when it came from another
        server), for an operator's ban or mute of it while it is away.
    """

    deadline: float
    session: str = field(compare=False)
    core: proto.ChatSession = field(compare=False)
    since: float = field(compare=False)
    why: str = field(compare=False)
    user: User | None = field(compare=False, default=None)
    last: dict[str, int] = field(compare=False, default_factory=dict)
    gone: trio.Event = field(compare=False, default_factory=trio.Event)
    key: str | None = field(compare=False, default=None)
    source: str | None = field(compare=False, default=None)
    remote: bool = field(compare=False, default=False)
    host: str = field(compare=False, default="")

    def written(self) -> dict[str, int]:
        """Topic -> the newest id its last connection took whole."""
        return self.user.written() if self.user is not None else self.last


class Resumes:
    """The detached sessions and the tokens of every session.

    Args:
      window: seconds a detached session waits (0: sessions are never detached).
      max_detached: the most sessions that may wait at once.
      store: the history the catch-up reads.
    """

    def __init__(self, window: float, max_detached: int, store: Store) -> None:
        self.window = window
        self.max_detached = max_detached
        self.store = store
        #: session id -> the detached session.
        self.detached: dict[str, Detached] = {}
        self._queue: list[Detached] = []  # a heap by deadline (entries may be stale)
        self._by_digest: dict[bytes, str] = {}
        self._by_key: dict[str, str] = {}  # a member's resume key (a UDP address) -> session
        self._by_source: dict[str, deque[str]] = {}  # source address -> its detached, oldest first
        self._evict: list[str] = []  # sessions to end now (their address has too many)
        self._digest: dict[str, bytes] = {}
        # session -> its token before a resume, and until when it works
        self._previous: dict[str, tuple[bytes, float]] = {}
        self._changed = trio.Event()
        self._arrivals = trio.lowlevel.ParkingLot()
        self.wrong = proto.WrongTokens()
        #: Counters for the status: resumes granted, refused.
        self.resumed = 0
        self.refused = 0

    # -- tokens --------------------------------------------------------------------------

    def issue(self, session: str, *, keep_previous: bool = False) -> str:
        """A new token for ``session``; its old one, if any, no longer works, unless
        ``keep_previous``: then it works until :meth:`confirm`, for at most
        :data:`PREVIOUS_TOKEN_GRACE` seconds (a resume's new token is told on a
        connection that may die before its client reads it)."""
        previous = self._digest.get(session) if keep_previous else None
        self.forget_token(session)
        if previous is not None:
            self._by_digest[previous] = session
            self._previous[session] = (previous, trio.current_time() + PREVIOUS_TOKEN_GRACE)
        token = proto.new_token()
        digest = proto.token_digest(token)
        self._by_digest[digest] = session
        self._digest[session] = digest
        return token

    def owner(self, token: str) -> str | None:
        """The session ``token`` belongs to, or None; the digests are compared in
        constant time."""
        digest = proto.token_digest(token)
        session = self._by_digest.get(digest)
        if session is None:
            hmac.compare_digest(digest, digest)  # the same work either way
            return None
        current = hmac.compare_digest(self._digest.get(session, b""), digest)
        kept, until = self._previous.get(session, (b"", 0.0))
        previous = hmac.compare_digest(kept, digest) and trio.current_time() < until
        return session if current or previous else None

    def confirm(self, session: str) -> None:
        """``session``'s client spoke on its new connection, so it has its new token:
        the one before no longer works. Not a checkpoint; cheap when nothing waits."""
        if self._previous:
            previous = self._previous.pop(session, None)
            if previous is not None:
                self._by_digest.pop(previous[0], None)

    def forget_token(self, session: str) -> None:
        """``session``'s tokens no longer work."""
        digest = self._digest.pop(session, None)
        if digest is not None:
            self._by_digest.pop(digest, None)
        self.confirm(session)

    # -- detaching and expiring ------------------------------------------------------------

    def detach(self, user: User, why: str) -> Detached:
        """Keep ``user``'s session for a resume (its connection is ending)."""
        now = trio.current_time()
        core = user.core
        key = user.member.resume_key
        detached = Detached(now + self.window, core.session, core, now, why, user, key=key)
        detached.host = host_of(user.member.label)
        self.detached[core.session] = detached
        if key is not None:
            self._by_key[key] = core.session
        source = _source(user.member.label)
        if source is not None:
            detached.source = source
            mine = self._by_source.setdefault(source, deque())
            mine.append(core.session)
            while len(mine) > DETACHED_PER_ADDRESS:
                self._evict.append(mine.popleft())
        heapq.heappush(self._queue, detached)
        self._changed.set()
        self._arrivals.unpark_all()
        return detached

    def adopt(self, core: proto.ChatSession, digest: bytes, why: str) -> Detached:
        """Keep a session that came from another server (a dead one's, adopted by the
        directory) for its resume here, by the token whose SHA-256 is ``digest``."""
        now = trio.current_time()
        detached = Detached(now + self.window, core.session, core, now, why, remote=True)
        detached.gone.set()
        self.detached[core.session] = detached
        self.forget_token(core.session)
        self._by_digest[digest] = core.session
        self._digest[core.session] = digest
        heapq.heappush(self._queue, detached)
        self._changed.set()
        return detached

    async def wait_detached(self, session: str) -> None:
        """Return once ``session`` is detached (its connection, told to go, went)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while session not in self.detached:
            await self._arrivals.park()

    def connection_over(self, detached: Detached) -> None:
        """The detached session's last connection has said goodbye: keep what was
        written to it, and let go of the rest."""
        if detached.user is not None:
            detached.last = detached.user.written()
            detached.user = None
        detached.gone.set()

    def due(self) -> list[Detached]:
        """The sessions to end now: those whose window ran out, the oldest of an address
        past :data:`DETACHED_PER_ADDRESS`, and the oldest past ``max_detached``."""
        now, queue, out = trio.current_time(), self._queue, []
        evict, self._evict = self._evict, []
        for session in evict:
            if (detached := self.take(session)) is not None:
                out.append(detached)
        while queue and (queue[0].deadline <= now or len(self.detached) > self.max_detached):
            detached = heapq.heappop(queue)
            if self.detached.get(detached.session) is detached:
                del self.detached[detached.session]
                self._forget_key(detached)
                out.append(detached)
        return out

    async def wait_due(self) -> None:
        """Return when a detached session may be due (its deadline, or a change)."""
        while True:
            self._changed = trio.Event()
            queue = self._queue
            while queue and self.detached.get(queue[0].session) is not queue[0]:
                heapq.heappop(queue)  # resumed, or ended: stale
            if len(self.detached) > self.max_detached or self._evict:
                await trio.lowlevel.checkpoint()
                return
            deadline = queue[0].deadline if queue else float("inf")
            with trio.move_on_at(deadline) as waiting:
                await self._changed.wait()
            if waiting.cancelled_caught:
                return

    def take(self, session: str) -> Detached | None:
        """Take ``session`` out of the detached ones (it resumes, or ends)."""
        detached = self.detached.pop(session, None)
        if detached is not None:
            self._changed.set()
            self._forget_key(detached)
        return detached

    def keyed(self, key: str | None) -> str | None:
        """The detached session of the member with this resume key (a UDP address)."""
        return None if key is None else self._by_key.get(key)

    def _forget_key(self, detached: Detached) -> None:
        if detached.key is not None and self._by_key.get(detached.key) == detached.session:
            del self._by_key[detached.key]
        mine = self._by_source.get(detached.source or "")
        if mine is not None:
            with contextlib.suppress(ValueError):
                mine.remove(detached.session)
            if not mine:
                del self._by_source[detached.source or ""]

    def away(self) -> set[str]:
        """The nick keys of the detached sessions (``/who`` marks them away)."""
        return {proto.nick_key(d.core.nick) for d in self.detached.values()}

    # -- the catch-up ------------------------------------------------------------------

    async def missed(
        self,
        detached: Detached,
        request: proto.ResumeRequest,
        limit: int = MAX_CATCH_UP,
        budget: int = 2**62,
        user: User | None = None,
    ) -> tuple[list[str], list[proto.Shown], dict[str, int]]:
        """What the resumed session missed (at most ``limit`` lines of its room and as
        many of its direct messages, the newest, each at most ``budget / 2`` bytes): the
        notices to tell first, what to show, and topic -> the newest id it has (the live
        lines up to it are not shown again). The bytes are counted as ``user`` (the
        connection it resumes on) is sent them."""
        core, store = detached.core, self.store
        written = detached.written()
        topics = {core.topic: core.room, core.inbox: proto.DIRECT}
        told: list[str] = []
        records: list[Record] = []
        shown_ids: dict[str, int] = {}
        after_given = request.after or {}
        for name in sorted(set(after_given) - {core.room, proto.DIRECT}):
            told.append(
                f"ignored the last id of {proto.sanitize_text(name, max_length=40)}: "
                f"you were in {core.room}"
            )
        if not store.per_key:
            told.append(
                "this server keeps no history: what was said while you were away is not shown"
            )
        epoch_lost = request.epoch is not None and request.epoch != store.epoch
        if epoch_lost:
            told.append(
                "the history was reset since the ids you hold were given (the server "
                "restarted without keeping it): what was said while you were away is lost"
            )
        for topic, key in topics.items():
            after = after_given.get(key) if request.after is not None else None
            if after is None and detached.remote and not epoch_lost:
                # its last server did not say what it wrote: some context, maybe again
                newest = (await store.last(topic, 0)).last
                after = max(0, newest - REMOTE_CONTEXT)
                if newest:
                    what = "direct messages" if key == proto.DIRECT else f"lines of {key}"
                    told.append(
                        f"your session comes from another server, which did not say what "
                        f"it had shown you: the last {what} follow, some maybe again"
                    )
            if after is None or epoch_lost:
                after = written.get(topic, 0) if not epoch_lost else 0
            page = await store.after(topic, after, limit)
            if after > page.last:
                told.append(
                    f"your last id of {key} ({after}) is past the newest ({page.last}): "
                    "nothing to catch up there"
                )
                continue
            if page.last - after > len(page.records) and page.last - after > limit:
                page = await store.last(topic, limit)  # the newest: older ones are counted
            kept, _ = within(page.records, budget // 2, user)
            first_shown = kept[0].id if kept else page.last + 1
            trimmed, skipped = _not_shown(page, after, first_shown)
            where = "direct messages" if key == proto.DIRECT else f"lines of {key}"
            if trimmed:
                told.append(
                    f"{trimmed} {where} came while you were away that the history no longer holds"
                )
            if skipped:
                told.append(
                    f"{skipped} earlier {where} came while you were away than are shown "
                    "here (/history N shows them)"
                )
            records += kept
            shown_ids[topic] = page.last  # what it has now, shown or told
        records.sort(key=lambda r: r.time)  # the room's lines and the direct ones, in order
        return told, proto.recall(core.room, records, more=False), shown_ids


def host_of(label: str) -> str:
    """The host part of a member's label (``ip:port``, ``[v6]:port``); the label itself
    when it has no port."""
    host, _, port = label.rpartition(":")
    return host.strip("[]") if host and port.isdigit() else label


def _source(label: str) -> str | None:
    """The per-address key of a member's label, None for loopback (exempt, as for
    connections: on a loopback listener every user is 127.0.0.1)."""
    host = host_of(label)
    if host == label or host in LOCAL_ADDRESSES:
        return None
    return source_key(host)


def _not_shown(page: Page, after: int, first_shown: int) -> tuple[int, int]:
    """Of the ids after ``after``, how many are not shown (the first shown is
    ``first_shown``): those older than what the history keeps, and those it keeps but
    the catch-up leaves out (its limits)."""
    if not page.last or page.last <= after:
        return 0, 0
    missing = max(0, first_shown - after - 1)
    if not page.first:  # it keeps nothing
        return missing, 0
    trimmed = min(missing, max(0, page.first - after - 1))
    return trimmed, missing - trimmed
