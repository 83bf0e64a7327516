"""The chat's fan-out: what each member's subscriptions got, into its outbox, every pass.

One task watches every member's subscriptions (a :class:`~triosock.hub.ReadyQueue`) and,
once per scheduler pass, renders each room batch once per transport and puts it into
each member's :class:`~triosock._transport.outbox.Outbox`, which writes it at once when
the socket has room. A member's own writer task only wakes for what the socket did not
take. The rules it keeps (their defaults are :class:`~._server.ChatServer`'s):

* **A member is disconnected only when its own socket stops draining**: when its socket
  has taken nothing for ``stall_timeout`` seconds while output waited (the writer's
  rule), or when more than ``max_backlog`` bytes wait for it (``policy="disconnect"``,
  the default): the line that takes the bytes waiting past the limit disconnects it, a
  line that brings them exactly to the limit does not. It is told why, after the line
  its socket was in the middle of, if its socket takes the notice within
  ``goodbye_timeout`` seconds. Publishers never wait for it. With the other policies a
  member over ``max_backlog`` loses its oldest (``drop_oldest``) or newest
  (``drop_newest``) lines, whole, and is told how many (``N messages dropped: you fell
  behind``) once it has caught up; or (``block``) is no longer fed until half the limit
  is written, which makes the publishers wait: lossless for everyone, at the pace of
  the slowest reader.
* **Whole lines, always.** Nothing is ever cancelled in the middle of a write: an outbox
  writes only what the socket takes and finishes a started line before anything else.
* **Order.** What a member is told (notices, replies to ``/who``) comes after every room
  line already queued for it (:meth:`FanOut.tell`).
* **A pass's budget.** The members of a room whose frames cost a write each (UDP peers)
  share :data:`ROOM_WRITES_PER_PASS` writes a pass (see :meth:`FanOut.run`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Final

import trio

from ..._hub import Hub, Policy, ReadyQueue, Subscription
from ..._sansio import chat as proto
from ..._transport.outbox import OutboxStalled
from ._member import Renderer
from ._settings import ChatSettings
from ._user import BLOCKED, FLOWING, LIVE, User

__all__ = ["BACKLOG_SLICE", "MIN_FRAMES_PER_PASS", "ROOM_WRITES_PER_PASS", "FanOut"]

LOGGER = logging.getLogger("triosock.chat")

#: The members of a room that write each frame on their own (UDP peers: a datagram a
#: line) share ROOM_WRITES_PER_PASS writes a fan-out pass (about 20-40 ms of datagrams),
#: each at least MIN_FRAMES_PER_PASS; and the seconds a pass spends on those with frames
#: left from earlier passes.
ROOM_WRITES_PER_PASS: Final = 4096
MIN_FRAMES_PER_PASS: Final = 4
BACKLOG_SLICE: Final = 0.005

# A fan-out pass's frames by renderer: (the batch, its frames, the frames joined).
_Shared = dict[Renderer, tuple[list[bytes], list[bytes], bytes]]
_ENDED = (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError)


def _newest_id(batch: list[bytes]) -> int:
    """The id of the newest line said in ``batch`` (0: none is)."""
    for data in reversed(batch):
        line_id = proto.event_id(data)
        if line_id:
            return line_id
    return 0


class FanOut:
    """Every member's subscriptions, fed into their outboxes under the backlog rules.

    Args:
      hub: where the subscriptions come from.
      settings: the policy, the subscriptions' buffer, the backlog bound and the stall
        timeout (see the module docstring).

    Attributes:
      ready: what :meth:`run` watches, while it runs; None otherwise.
      hold: while an unset event is here, passes wait for it (the chat learns whether
        a broker that came back lost the history before it shows a line it delivered).
      delivered, dropped, disconnected_slow: the counters of
        :class:`~._server.ChatStatistics`.
    """

    def __init__(self, hub: Hub[bytes], settings: ChatSettings) -> None:
        self.hub = hub
        # at hand: read on every delivery
        self.policy: Policy = settings.policy
        self.max_backlog = settings.max_backlog
        self.buffer = settings.buffer
        self.stall_timeout = settings.stall_timeout
        self.ready: ReadyQueue[bytes] | None = None
        self.hold: trio.Event | None = None
        # the subscriptions the fan-out feeds: those of FLOWING users
        self._fed: dict[Subscription[bytes], User] = {}
        # topic -> its subscribers here that write a frame each (UDP peers)
        self._one_by_one: Counter[str] = Counter()
        self.delivered = 0
        self.dropped = 0
        self.disconnected_slow = 0

    async def run(self, ready: ReadyQueue[bytes]) -> None:
        """Put what each watched subscription got into its member's outbox, every pass.

        The members of a room whose frames cost a write each (UDP peers: a datagram a
        line) share :data:`ROOM_WRITES_PER_PASS` a pass, at least
        :data:`MIN_FRAMES_PER_PASS` each; what one has left puts it in the backlog.
        Everyone else takes all they have: joinable frames (TCP lines, WebSocket messages)
        go in one write per member whatever their number. A pass serves first the
        subscriptions that got something since the last pass, then the backlog, oldest
        first, for at most :data:`BACKLOG_SLICE` seconds, and the rest of the server runs
        between passes. So a room flooded with lines (hundreds of UDP peers each saying
        one, a datagram to each of the others) drains a few thousand datagrams a pass, its
        senders slowed by their full queues, while every other room's lines go out at the
        next pass; a room of a few dozen UDP peers gets about a hundred lines each a pass,
        more than a busy room says between two.
        """
        subs = self._fed
        backlog: dict[Subscription[bytes], None] = {}  # oldest first
        shares: dict[str, int] = {}  # topic -> frames per member, this pass

        def serve(sub: Subscription[bytes], shared: _Shared) -> None:
            user = subs.get(sub)
            if user is None:
                return  # gone, or BLOCKED ("block" policy): its writer collects when it can
            limit = None
            if not user.renderer.joinable:
                share = shares.get(sub.topic)
                if share is None:
                    writers = max(1, self._one_by_one[sub.topic])
                    share = max(MIN_FRAMES_PER_PASS, ROOM_WRITES_PER_PASS // writers)
                    shares[sub.topic] = share
                limit = share
            taken = self._take(user, sub, shared, limit)
            if taken is None:
                user.end("stopping")  # the hub was closed under us
            elif taken == limit:
                backlog[sub] = None  # maybe more: the watcher reports it only once

        while True:
            if backlog:
                await trio.lowlevel.checkpoint()  # the rest of the server runs between
                fresh = ready.ready_nowait()
            else:
                fresh = await ready.wait()
            if self.hold is not None:  # (what was ready waits with us)
                await self.hold.wait()
            # Members of a room mostly get the same batch: render it once per transport.
            shared: _Shared = {}
            shares.clear()
            waiting = list(backlog)
            for sub in fresh:
                backlog.pop(sub, None)
                serve(sub, shared)
            served = set(fresh) if waiting else set()
            deadline = time.perf_counter() + BACKLOG_SLICE
            for sub in waiting:  # each at most once a pass, its room's share again
                if sub in served:
                    continue
                if time.perf_counter() > deadline:
                    break
                del backlog[sub]
                serve(sub, shared)  # back at the end if it has more

    # -- delivery and the backlog rules ------------------------------------------------

    def _deliver(self, user: User, batch: list[bytes], shared: _Shared | None, topic: str) -> None:
        """Render ``batch`` of ``topic`` for ``user`` and put it into its outbox; apply
        the bound."""
        renderer, outbox = user.renderer, user.outbox
        if self.policy == "drop_newest" and outbox.queued >= self.max_backlog:
            user.missed += len(batch)
            self.dropped += len(batch)
            return
        if user.missed and not outbox.frames:  # caught up: say what it lost
            self._report_missed(user)
        hit = shared.get(renderer) if shared is not None else None
        if (
            hit is not None
            and hit[0] == batch
            and (not renderer.per_viewer or renderer.shares_with(batch, user.core.nick))
        ):
            frames, joined = hit[1], hit[2]
        else:
            frames, everyone = renderer.frames(batch, user.core.nick)
            joined = renderer.join(frames) if renderer.joinable and frames else b""
            if everyone and shared is not None:
                shared[renderer] = (batch, frames, joined)
        if renderer.joinable:
            if joined:
                outbox.put(joined, len(frames))
        else:
            for frame in frames:
                outbox.put(frame)
        if frames:  # for a resume after the last line written
            user.mark(topic, len(frames), _newest_id(batch))
        self.delivered += len(frames)
        if outbox.queued > self.max_backlog:
            self._over_backlog(user)

    def bound(self, user: User) -> None:
        """Apply the backlog rule to ``user`` now (after something was put into its
        outbox other than by a fan-out pass: earlier lines it asked for)."""
        if user.outbox.queued > self.max_backlog:
            self._over_backlog(user)

    def _over_backlog(self, user: User) -> None:
        outbox = user.outbox
        match self.policy:
            case "disconnect":
                self.disconnect(
                    user,
                    f"{outbox.queued} bytes were waiting for it, over the limit of "
                    f"{self.max_backlog}",
                )
            case "drop_oldest":
                lost = outbox.drop_oldest(self.max_backlog)
                user.missed += lost
                self.dropped += lost
            case "block":
                self._block(user)
            case "drop_newest":
                pass  # the next batch is not queued

    def _report_missed(self, user: User) -> None:
        notice = user.renderer.notice(f"{user.missed} messages dropped: you fell behind")
        user.outbox.put(notice, 0)
        user.missed = 0

    def disconnect(self, user: User, why: str) -> None:
        """End a LIVE ``user`` as too slow (its socket stopped draining), telling why."""
        if user.phase is not LIVE:
            return  # told why once
        LOGGER.warning(
            "disconnecting %s (%s %s): %s",
            user.core.nick,
            user.member.kind,
            user.member.label,
            why,
        )
        self.disconnected_slow += 1
        user.end("slow", f"your connection stopped taking what was sent to you ({why})")

    def tell(self, user: User, text: str) -> None:
        """A notice for ``user`` only, after every room line already queued for it; a
        notice is never dropped, whatever the policy."""
        self.collect(user)
        user.outbox.put(user.renderer.notice(text), 0)

    def collect(self, user: User) -> None:
        """Put what ``user``'s subscriptions hold into its outbox now (for order)."""
        for topic, (_, sub) in list(user.subs.items()):
            if topic not in user.held:
                self._take(user, sub, None)

    def _take(
        self,
        user: User,
        sub: Subscription[bytes],
        shared: _Shared | None,
        limit: int | None = None,
    ) -> int | None:
        """Deliver what ``sub`` holds (at most ``limit`` events) to ``user``; how many, or
        None once the subscription has ended."""
        try:
            batch = sub.drain_nowait(limit)
        except _ENDED:
            return None
        taken = len(batch)
        if user.seen and sub.topic in user.seen:
            batch = self._unseen(user, sub.topic, batch)
        if batch:
            self._deliver(user, batch, shared, sub.topic)
        return taken

    def _block(self, user: User) -> None:
        """Stop feeding ``user``: its subscriptions fill and their publishers wait."""
        if user.step_flow("over_backlog"):
            for _, sub in user.subs.values():
                self._fed.pop(sub, None)

    def _unblock(self, user: User) -> None:
        """Feed ``user`` again, beginning with what its subscriptions hold."""
        if user.step_flow("caught_up"):
            for topic, (_, sub) in user.subs.items():
                if topic not in user.held:
                    self._fed[sub] = user
            self.collect(user)
            user.unblocked.unpark_all()

    # -- subscriptions -----------------------------------------------------------------

    async def subscribe(self, user: User, topic: str, *, held: bool = False) -> None:
        """Subscribe ``user`` to ``topic`` and feed it from now on, or, if ``held``, from
        :meth:`release` on (what comes meanwhile waits in the subscription).

        With a hub whose subscriptions the fan-out cannot watch, a task of the user's
        nursery feeds the subscription instead.
        """
        subscribing = self.hub.subscribe(topic, buffer=self.buffer, policy="block")
        sub = await subscribing.__aenter__()
        user.subs[topic] = (subscribing, sub)
        if held:
            user.held.add(topic)
        elif user.flow is FLOWING:
            self._fed[sub] = user
        if not user.renderer.joinable:
            self._one_by_one[topic] += 1
        ready = self.ready
        if ready is not None and ready.supports(sub):
            ready.watch(sub)
        else:  # a hub without in-process subscriptions: a task of its own feeds it
            assert user.nursery is not None
            user.nursery.start_soon(self._pump, user, sub)

    def release(self, user: User, topic: str, seen: int | None) -> None:
        """Feed ``user``'s held subscription to ``topic`` from now on, beginning with what
        it holds; of its lines, those with an id up to ``seen`` (the earlier lines the
        user was just shown) are left out."""
        if topic not in user.held:
            return
        user.held.discard(topic)
        if seen:
            user.seen[topic] = seen
        sub = user.subs[topic][1]
        if user.flow is FLOWING:
            self._fed[sub] = user
            self._take(user, sub, None)
        user.unblocked.unpark_all()  # its pump, if it has one

    def _unseen(self, user: User, topic: str, batch: list[bytes]) -> list[bytes]:
        """``batch`` without the lines ``user`` was shown already (see :meth:`release`);
        once a newer line comes, the rule is over for the topic. What is no line said
        (a join, a leave) is always shown."""
        seen = user.seen[topic]
        for index, data in enumerate(batch):
            if proto.event_id(data) > seen:
                del user.seen[topic]
                return [d for d in batch[:index] if not proto.event_id(d)] + batch[index:]
        return [d for d in batch if not proto.event_id(d)]

    async def _pump(self, user: User, sub: Subscription[bytes]) -> None:
        while True:
            while user.flow is BLOCKED or sub.topic in user.held:
                await user.unblocked.park()
            try:
                batch = [await sub.receive()]
                batch += sub.drain_nowait()
            except _ENDED:
                return
            if user.subs.get(sub.topic, (None, None))[1] is sub:  # not unsubscribed meanwhile
                if user.seen and sub.topic in user.seen:
                    batch = self._unseen(user, sub.topic, batch)
                if batch:
                    self._deliver(user, batch, None, sub.topic)

    async def unsubscribe(self, user: User, topic: str) -> None:
        """End ``user``'s subscription to ``topic``, with what it holds delivered."""
        subscribing, sub = user.subs.pop(topic)
        user.held.discard(topic)
        user.seen.pop(topic, None)
        sub.unsubscribe()
        if not user.renderer.joinable:
            self._one_by_one[topic] -= 1
            if not self._one_by_one[topic]:
                del self._one_by_one[topic]
        self._take(user, sub, None)
        self._fed.pop(sub, None)
        await subscribing.__aexit__(None, None, None)

    # -- the member's writer -----------------------------------------------------------

    async def write_loop(self, user: User) -> None:
        """Write what the socket did not take at once; the stall rule lives here."""
        outbox, low = user.outbox, self.max_backlog // 2
        try:
            while True:
                await outbox.wait_queued()
                while outbox.frames or outbox.error is not None:
                    await outbox.write_some(stall_timeout=self.stall_timeout)
                    if user.flow is BLOCKED and outbox.queued <= low:
                        self._unblock(user)
                    if user.missed and not outbox.frames:
                        self._report_missed(user)
        except OutboxStalled as exc:
            self.disconnect(
                user, f"it took nothing for {exc.seconds:.0f} s with {exc.queued} bytes waiting"
            )
        except trio.BrokenResourceError:
            user.end("broken")
