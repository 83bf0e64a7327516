"""The chat service: TCP line users, UDP peers and WebSocket users (and, through the same
member interface, any other transport) in the same rooms, over a hub and a directory.

The data path of one line: the member's session task reads a burst of input, the
session's rules (:class:`~triosock._sansio.chat.ChatSession`) turn each item into
effects, and the service carries them out: ``Publish`` puts the encoded event on the
hub (``room:<name>``, or ``inbox:<session id>`` for a direct message). One fan-out task
watches every member's subscriptions (a :class:`~triosock.hub.ReadyQueue`) and, once per
scheduler pass, renders each room batch once per transport and puts it into each
member's outbox, which writes it at once when the socket has room. A member's own writer
task only wakes for what the socket did not take.

Flow control (the rules, with their defaults in :class:`ChatServer`):

* **The sender is slowed, never the room.** Each session's input spends tokens of a rate
  limit (``rate`` lines per second, ``burst`` at once); past it, the session stops
  reading until the next token, so a paste waits in the sender's own socket, not in the
  server. Subscriptions are bounded (``buffer`` events) and lossless: when one is full,
  only because the fan-out has not run yet, the publishing session waits for that pass.
* **A member is disconnected only when its own socket stops draining**: when its socket
  has taken nothing for ``stall_timeout`` seconds while output waited, or when more than
  ``max_backlog`` bytes wait for it (``policy="disconnect"``, the default). It is told
  why, after the line its socket was in the middle of, if its socket takes the notice
  within ``goodbye_timeout`` seconds. Publishers never wait for it. With the other
  policies a member over ``max_backlog`` loses its oldest (``drop_oldest``) or newest
  (``drop_newest``) lines, whole, and is told how many; or (``block``) makes the
  publishers wait until it has caught up: lossless for everyone, at the pace of the
  slowest reader.
* **Whole lines, always.** Nothing is ever cancelled in the middle of a write: an outbox
  writes only what the socket takes and finishes a started line before anything else.
  ``/join``, ``/quit``, a stop or a disconnect never cuts a line; the goodbye follows
  the lines already queued for the member.
* **Order.** What a member is told (notices, replies to ``/who``) comes after every room
  line already queued for it.

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
import logging
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final, get_args

import trio

from ..._directory import Directory, InProcessDirectory
from ..._errors import DirectoryUnavailable
from ..._hub import Hub, InProcessHub, Policy, ReadyQueue, Subscription
from ..._pacer import Pacer
from ..._running import Running
from ..._sansio import chat as proto
from ..._transport.outbox import OutboxStalled
from ..._transport.tcp import TCPConnection
from ..._transport.udp import UDPPeer
from ..._transport.websocket import WebSocketPeer
from ._member import Member, Renderer
from ._tcp import TCPLineMember
from ._udp import UDPDialectMember
from ._user import BLOCKED, FLOWING, LEFT, LIVE, User
from ._websocket import WebSocketMember

__all__ = ["ChatServer", "ChatStatistics"]

LOGGER = logging.getLogger("triosock.chat")

#: Lines per second a session may send on average, and at once.
DEFAULT_RATE: Final = 50.0
DEFAULT_BURST: Final = 100
#: Bytes that may wait for a member's socket before its policy applies.
DEFAULT_MAX_BACKLOG: Final = 256 * 1024
#: Seconds a member's socket may take nothing while output waits for it.
DEFAULT_STALL_TIMEOUT: Final = 30.0
#: Seconds a disconnected member's socket gets to take the notice saying why.
DEFAULT_GOODBYE_TIMEOUT: Final = 5.0
#: The longest line, in bytes.
DEFAULT_MAX_LINE_LENGTH: Final = 4096
#: The members of a room that write each frame on their own (UDP peers: a datagram a
#: line) share ROOM_WRITES_PER_PASS writes a fan-out pass (about 20-40 ms of datagrams),
#: each at least MIN_FRAMES_PER_PASS; and the seconds a pass spends on those with frames
#: left from earlier passes.
ROOM_WRITES_PER_PASS: Final = 4096
MIN_FRAMES_PER_PASS: Final = 4
BACKLOG_SLICE: Final = 0.005
#: Sessions that may begin, or end, in one scheduler batch; more wait for later batches
#: (a burst of a thousand ends would otherwise hold every room for 100-300 ms).
SESSIONS_PER_BATCH: Final = 16
#: Members a room may have on this server and still get a line per join and leave.
DEFAULT_PRESENCE_LIMIT: Final = 100
#: Seconds between two lines that count a crowded room's joins and leaves.
DEFAULT_PRESENCE_INTERVAL: Final = 5.0
#: What users are told when the hub loses its broker, and when it is back.
HUB_DEGRADED: Final = (
    "the rooms are degraded: the broker is unreachable, so what is said reaches only "
    "the users of this server; reconnecting"
)
HUB_BACK: Final = "the rooms are back: what is said reaches every server again"
#: What users are told when the directory cannot be reached.
DIRECTORY_DOWN: Final = "the chat's directory is unreachable right now; try again in a moment"

# A fan-out pass's frames by renderer: (the batch, its frames, the frames joined).
_Shared = dict[Renderer, tuple[list[bytes], list[bytes], bytes]]
_ENDED = (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError)
_GONE = (OutboxStalled, trio.BrokenResourceError)


@dataclass(frozen=True, slots=True)
class ChatStatistics:
    """A snapshot of a chat server's counters.

    Attributes:
      users: sessions connected now (of this server; the directory may know more).
      sessions_total: sessions since the server was made.
      users_by_kind: of ``users``, how many per member kind (``"tcp"``, ``"udp"``,
        ``"ws"``).
      lines_received: input items (lines, datagrams) received.
      lines_delivered: lines and notices put to members' sockets (one per member a line
        reached); a dropped line does not count.
      paced: input items that waited for the rate limit.
      disconnected_slow: members disconnected because their socket stopped draining.
      dropped: lines members lost to a ``drop_oldest`` / ``drop_newest`` policy.
    """

    users: int
    users_by_kind: dict[str, int]
    sessions_total: int
    lines_received: int
    lines_delivered: int
    paced: int
    disconnected_slow: int
    dropped: int


class ChatServer(Running):
    """Chat rooms shared by every transport's users, with flow control that slows a
    sender and never the room.

    Run the servers that call its handlers inside ``async with ChatServer(...) as chat:``,
    which runs the fan-out task; a handler called outside raises :class:`RuntimeError`,
    and leaving the block ends the sessions still running (they are told the server is
    closing). See the module docstring for the rules.

    Args:
      hub: where events fan out; an :class:`~triosock.hub.InProcessHub` by default.
      directory: nicks, rooms and session ids; an :class:`~triosock.chat.InProcessDirectory`
        by default.
      policy: what a member gets when more than ``max_backlog`` bytes wait for its socket:
        ``"disconnect"`` (the default), ``"drop_oldest"``, ``"drop_newest"`` or
        ``"block"`` (see the module docstring).
      buffer: each subscription's queue, in events (a member's share between two fan-out
        passes).
      max_line_length: the longest line (or datagram) a user may send, in bytes; longer
        ones are refused with a notice.
      rate: lines per second a session may send on average; None for no limit.
      burst: lines a session may send at once.
      max_backlog: bytes that may wait for one member's socket.
      stall_timeout: seconds a member's socket may take nothing while output waits
        before the member is disconnected; None never disconnects for that.
      goodbye_timeout: seconds a disconnected member's socket gets to take the notice.
      presence_limit: the most members (of this server) a room may have and still get
        a line per join and leave; a more crowded room gets their counts every
        ``presence_interval`` seconds instead (see the module docstring). None: a line
        each, always.
      presence_interval: seconds between two counts of a crowded room's joins and leaves.
    """

    def __init__(
        self,
        hub: Hub[bytes] | None = None,
        directory: Directory | None = None,
        *,
        policy: Policy = "disconnect",
        buffer: int = 256,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        rate: float | None = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        goodbye_timeout: float = DEFAULT_GOODBYE_TIMEOUT,
        presence_limit: int | None = DEFAULT_PRESENCE_LIMIT,
        presence_interval: float = DEFAULT_PRESENCE_INTERVAL,
    ) -> None:
        if policy not in get_args(Policy):
            raise ValueError(f"unknown policy {policy!r}; expected one of {get_args(Policy)}")
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1 event, not {buffer}")
        if max_line_length < 1:
            raise ValueError(f"max_line_length must be at least 1 byte, not {max_line_length}")
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of lines per second: {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1 line, not {burst}")
        if max_backlog < 1:
            raise ValueError(f"max_backlog must be at least 1 byte, not {max_backlog}")
        if stall_timeout is not None and not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be a positive number of seconds: {stall_timeout}")
        if not goodbye_timeout >= 0:
            raise ValueError(f"goodbye_timeout must not be negative: {goodbye_timeout}")
        if presence_limit is not None and presence_limit < 1:
            raise ValueError(f"presence_limit must be at least 1 member, not {presence_limit}")
        if not (presence_interval > 0 and math.isfinite(presence_interval)):
            raise ValueError(
                f"presence_interval must be a positive number of seconds: {presence_interval}"
            )
        self.hub: Hub[bytes] = hub if hub is not None else InProcessHub()
        self.directory: Directory = directory if directory is not None else InProcessDirectory()
        self.policy: Policy = policy
        self.buffer = buffer
        self.max_line_length = max_line_length
        self.rate = rate
        self.burst = burst
        self.max_backlog = max_backlog
        self.stall_timeout = stall_timeout
        self.goodbye_timeout = goodbye_timeout
        self.presence_limit = presence_limit
        self.presence_interval = presence_interval
        # crowded rooms' joins and leaves since the last count, by topic
        self._crowds: dict[str, proto.Crowd] = {}
        self._crowds_waiting = trio.Event()
        self._ready: ReadyQueue[bytes] | None = None
        # the subscriptions the fan-out feeds: those of FLOWING users
        self._subs: dict[Subscription[bytes], User] = {}
        self._pacer = Pacer(SESSIONS_PER_BATCH)  # session starts and ends, a few a batch
        # topic -> its subscribers here that write a frame each (UDP peers)
        self._one_by_one: Counter[str] = Counter()
        self._users: dict[str, User] = {}
        self._sessions_total = 0
        self._lines_received = 0
        self._lines_delivered = 0
        self._paced = 0
        self._disconnected_slow = 0
        self._dropped = 0

    # -- running -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        ready: ReadyQueue[bytes] = ReadyQueue()
        self.hub.add_health_listener(self._hub_health)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._fan_out, ready)
            nursery.start_soon(self._count_crowds_forever)
            if self.directory.reap_interval is not None:
                nursery.start_soon(self._reap_forever, self.directory.reap_interval)
            self._ready = ready
            try:
                yield
            finally:
                self._ready = None
                for user in list(self._users.values()):  # nobody feeds them any more
                    user.end("stopping")
                nursery.cancel_scope.cancel()

    async def _fan_out(self, ready: ReadyQueue[bytes]) -> None:
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
        subs = self._subs
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

    def _deliver(self, user: User, batch: list[bytes], shared: _Shared | None) -> None:
        """Render ``batch`` for ``user`` and put it into its outbox; apply the bound."""
        renderer, outbox = user.renderer, user.outbox
        if self.policy == "drop_newest" and outbox.queued >= self.max_backlog:
            user.missed += len(batch)
            self._dropped += len(batch)
            return
        if user.missed and not outbox.frames:  # caught up: say what it lost
            self._report_missed(user)
        hit = shared.get(renderer) if shared is not None else None
        if hit is not None and hit[0] == batch:
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
        self._lines_delivered += len(frames)
        if outbox.queued > self.max_backlog:
            self._over_backlog(user)

    def _over_backlog(self, user: User) -> None:
        outbox = user.outbox
        match self.policy:
            case "disconnect":
                self._disconnect(
                    user,
                    f"{outbox.queued} bytes were waiting for it, over the limit of "
                    f"{self.max_backlog}",
                )
            case "drop_oldest":
                lost = outbox.drop_oldest(self.max_backlog)
                user.missed += lost
                self._dropped += lost
            case "block":
                self._block(user)
            case "drop_newest":
                pass  # the next batch is not queued

    def _report_missed(self, user: User) -> None:
        notice = user.renderer.notice(f"{user.missed} messages dropped: you fell behind")
        user.outbox.put(notice, 0)
        user.missed = 0

    def _collect(self, user: User) -> None:
        """Put what ``user``'s subscriptions hold into its outbox now (for order)."""
        for _, sub in list(user.subs.values()):
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
        if batch:
            self._deliver(user, batch, shared)
        return len(batch)

    def _block(self, user: User) -> None:
        """Stop feeding ``user``: its subscriptions fill and their publishers wait."""
        if user.step_flow("over_backlog"):
            for _, sub in user.subs.values():
                self._subs.pop(sub, None)

    def _unblock(self, user: User) -> None:
        """Feed ``user`` again, beginning with what its subscriptions hold."""
        if user.step_flow("caught_up"):
            for _, sub in user.subs.values():
                self._subs[sub] = user
            self._collect(user)
            user.unblocked.unpark_all()

    async def _reap_forever(self, interval: float) -> None:
        """Tell the rooms of users whose server died (their leases ran out) they left."""
        while True:
            await trio.sleep(interval)
            try:
                ghosts = await self.directory.reap()
            except DirectoryUnavailable:
                continue
            for ghost in ghosts:
                LOGGER.info("%s left (its server stopped renewing its lease)", ghost.nick)
                left = proto.Left(ghost.room, ghost.nick)
                with contextlib.suppress(trio.ClosedResourceError):
                    await self._announce(None, proto.room_topic(ghost.room), left)

    async def _announce(
        self, member: Member | None, topic: str, event: proto.Event, inbox: str | None = None
    ) -> None:
        """Publish ``event`` on ``topic``, but for a join or leave of a crowded room, which
        is counted (see :meth:`_counted`). Whoever joins a crowded room still sees its own
        join line, through its ``inbox`` (clients learn their room from it)."""
        if not self._counted(topic, event):
            await self._publish(member, topic, event)
        elif inbox is not None and type(event) is proto.Joined:
            await self._publish(member, inbox, event)

    def _counted(self, topic: str, event: proto.Event) -> bool:
        """Count a join or leave of a crowded room (True) rather than say it (False)."""
        if not isinstance(event, proto.Joined | proto.Left):
            return False
        if self.presence_limit is None or self.hub.subscriber_count(topic) <= self.presence_limit:
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

    async def _count_crowds_forever(self) -> None:
        """Every ``presence_interval`` while crowded rooms see joins or leaves, tell
        each how many came and went."""
        while True:
            await self._crowds_waiting.wait()
            await trio.sleep(self.presence_interval)
            crowds, self._crowds = self._crowds, {}
            self._crowds_waiting = trio.Event()
            for topic, crowd in crowds.items():
                with contextlib.suppress(trio.ClosedResourceError):
                    await self._publish(None, topic, crowd)

    def _hub_health(self, healthy: bool, detail: str) -> None:
        """Tell every user when the rooms stop (or start again) reaching other servers."""
        text = HUB_BACK if healthy else HUB_DEGRADED
        for user in list(self._users.values()):
            if user.phase is LIVE:
                self._collect(user)  # after what is queued for the user already
                user.outbox.put(user.renderer.notice(text), 0)

    # -- ending sessions -----------------------------------------------------------------

    def _disconnect(self, user: User, why: str) -> None:
        if user.phase is not LIVE:
            return  # told why once
        LOGGER.warning(
            "disconnecting %s (%s %s): %s",
            user.core.nick,
            user.member.kind,
            user.member.label,
            why,
        )
        self._disconnected_slow += 1
        user.end("slow", f"your connection stopped taking what was sent to you ({why})")

    # -- the directory, as the API sees it -----------------------------------------------

    async def users(self, room: str | None = None) -> list[str]:
        """The nicks present (in ``room``, if given), sorted: the directory's view."""
        return await self.directory.nicks(room)

    async def rooms(self) -> dict[str, int]:
        """Room name -> number of users, for rooms with anyone in them."""
        return await self.directory.rooms()

    def statistics(self) -> ChatStatistics:
        """A snapshot of this server's counters."""
        kinds: dict[str, int] = {}
        for user in self._users.values():
            kinds[user.member.kind] = kinds.get(user.member.kind, 0) + 1
        return ChatStatistics(
            users=len(self._users),
            users_by_kind=kinds,
            sessions_total=self._sessions_total,
            lines_received=self._lines_received,
            lines_delivered=self._lines_delivered,
            paced=self._paced,
            disconnected_slow=self._disconnected_slow,
            dropped=self._dropped,
        )

    # -- the handlers --------------------------------------------------------------------

    async def serve_tcp_client(self, conn: TCPConnection) -> None:
        """The ``serve_tcp`` handler: one chat user per connection, speaking lines."""
        await self.serve_member(TCPLineMember(conn, self.max_line_length))

    async def serve_udp_peer(self, peer: UDPPeer) -> None:
        """The ``serve_udp`` handler: one chat user per peer address, tutorial dialect."""
        await self.serve_member(UDPDialectMember(peer))

    async def serve_websocket_peer(self, peer: WebSocketPeer) -> None:
        """The ``serve_websocket`` handler: one chat user per connection, JSON lines out,
        JSON events or text lines in (see :mod:`triosock._sansio.chat._web`)."""
        await self.serve_member(WebSocketMember(peer))

    async def serve_member(self, member: Member) -> None:
        """Run one user's session over any member adapter until it ends."""
        if self._ready is None:
            raise RuntimeError(
                "this ChatServer is not running: serve its handlers inside `async with chat:`"
            )
        await self._pacer.turn()
        try:
            presence = await self.directory.register(member.kind, member.preferred_nick)
        except DirectoryUnavailable as exc:
            LOGGER.warning("refused %s %s: %s", member.kind, member.label, exc)
            member.outbox.put(member.renderer.notice(DIRECTORY_DOWN), 0)
            with trio.move_on_after(self.goodbye_timeout), contextlib.suppress(*_GONE):
                await member.outbox.flush(stall_timeout=self.goodbye_timeout)
                await member.linger()
            return
        core = proto.ChatSession(
            presence,
            max_line_length=self.max_line_length,
            rate=self.rate,
            burst=self.burst,
            now=trio.current_time(),
        )
        user = User(member, core)
        self._users[core.session] = user
        self._sessions_total += 1
        LOGGER.info("%s joined (%s %s)", core.nick, member.kind, member.label)
        try:
            async with trio.open_nursery() as nursery:
                user.nursery = nursery
                nursery.start_soon(self._write_loop, user)
                await self._subscribe(user, core.inbox)
                await self._subscribe(user, core.topic)
                with user.scope, member.stop_scope():
                    greeting = member.greeting(core.nick, core.room)
                    if greeting:
                        user.outbox.put(greeting, 0)
                    await self._carry_out(user, core.start(welcome=member.welcome))
                    await self._read(user)
                # Stop the writer between two writes (it never tears one): from here on
                # the outbox is this task's.
                nursery.cancel_scope.cancel()
            await self._finish(user)
        finally:
            # Cancelled from outside (idle timeout, UDP expiry, the end of the grace
            # period), or done: first out of the hub, so that nothing waits for this
            # session any more (nor does it see its own leaving), then the room is told.
            with trio.CancelScope(shield=True):
                if user.phase is not LEFT:  # not ended by _finish: a burst of these is paced too
                    await self._pacer.turn()
                for topic in list(user.subs):
                    await self._unsubscribe(user, topic)
                with trio.move_on_after(1):
                    await self._leave(user)
            del self._users[core.session]

    async def _read(self, user: User) -> None:
        """Carry out the member's input until it ends (or the session is ended)."""
        member, core = user.member, user.core
        handle = member.handle
        while True:
            try:
                burst = await member.receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                user.end("broken", str(exc))  # for the log: a WebSocket's close code
                return
            if burst is None:
                user.end("eof")
                return
            self._lines_received += len(burst)
            if user.outbox.control > self.max_backlog:
                # Notices and telnet answers are never dropped, whatever the policy: one
                # that asks for them faster than it reads must not grow without end.
                self._disconnect(
                    user,
                    f"{user.outbox.control} bytes of answers to it were waiting, over the "
                    f"limit of {self.max_backlog}",
                )
            for item in burst:
                effects = handle(core, item, trio.current_time())
                if len(effects) == 1 and type(effects[0]) is proto.Publish:  # a line said
                    await self._publish(member, effects[0].topic, effects[0].event)
                elif effects and await self._carry_out(user, effects):
                    user.end("quit")
                    return

    async def _carry_out(self, user: User, effects: list[proto.Effect]) -> bool:
        """Carry out ``effects`` in order; True when one of them closes the session."""
        pending = deque(effects)
        while pending:
            effect = pending.popleft()
            answer: list[proto.Effect] = []
            match effect:
                case proto.Publish(topic, event):
                    await self._announce(user.member, topic, event, user.core.inbox)
                case proto.Tell(text):
                    self._collect(user)  # after what is queued for the user already
                    user.outbox.put(user.renderer.notice(text), 0)  # a notice: never dropped
                case proto.Pause(seconds):
                    self._paced += 1
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
                case proto.Close():
                    return True
            pending.extendleft(reversed(answer))
        return False

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
                return core.renamed(nick, await directory.rename(core.session, nick))
            case proto.Move(room):
                await self._move(user, room)
                return core.moved(room)
            case proto.Lookup(nick):
                return core.found(effect, await directory.lookup(nick))
            case proto.ListUsers(room):
                return core.listed_users(room, await directory.nicks(room))
            case proto.ListRooms():
                return core.listed_rooms(await directory.rooms())
        raise TypeError(f"not a directory effect: {effect!r}")

    async def _publish(self, member: Member | None, topic: str, event: proto.Event) -> None:
        """Put ``event`` on the hub; ``member`` is the user it is for (None: the server's
        own, such as a ghost's leaving), whose idle clock stops while it waits."""
        data = proto.encode_event(event)
        try:
            self.hub.publish_nowait(topic, data)  # no checkpoint: a burst costs one pass, not many
        except trio.WouldBlock:  # a queue is full: wait for the fan-out's pass
            # the server makes the user wait: not idle
            with member.hold_idle() if member is not None else contextlib.nullcontext():
                await self.hub.publish(topic, data)

    async def _move(self, user: User, room: str) -> None:
        """Subscribe to ``room`` first (the user sees its own arrival), then leave the old
        room's subscription with what it still holds delivered."""
        old, new = user.core.topic, proto.room_topic(room)
        if new == old:
            await self.directory.move(user.core.session, room)
            return
        await self._subscribe(user, new)
        try:
            await self.directory.move(user.core.session, room)
        except BaseException:
            await self._unsubscribe(user, new)  # still in the old room
            raise
        await self._unsubscribe(user, old)

    async def _subscribe(self, user: User, topic: str) -> None:
        subscribing = self.hub.subscribe(topic, buffer=self.buffer, policy="block")
        sub = await subscribing.__aenter__()
        user.subs[topic] = (subscribing, sub)
        if user.flow is FLOWING:
            self._subs[sub] = user
        if not user.renderer.joinable:
            self._one_by_one[topic] += 1
        ready = self._ready
        if ready is not None and ready.supports(sub):
            ready.watch(sub)
        else:  # a hub without in-process subscriptions: a task of its own feeds it
            assert user.nursery is not None
            user.nursery.start_soon(self._pump, user, sub)

    async def _pump(self, user: User, sub: Subscription[bytes]) -> None:
        while True:
            while user.flow is BLOCKED:
                await user.unblocked.park()
            try:
                batch = [await sub.receive()]
                batch += sub.drain_nowait()
            except _ENDED:
                return
            if user.subs.get(sub.topic, (None, None))[1] is sub:  # not unsubscribed meanwhile
                self._deliver(user, batch, None)

    async def _unsubscribe(self, user: User, topic: str) -> None:
        subscribing, sub = user.subs.pop(topic)
        sub.unsubscribe()
        if not user.renderer.joinable:
            self._one_by_one[topic] -= 1
            if not self._one_by_one[topic]:
                del self._one_by_one[topic]
        self._take(user, sub, None)
        self._subs.pop(sub, None)
        await subscribing.__aexit__(None, None, None)

    async def _write_loop(self, user: User) -> None:
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
            self._disconnect(
                user, f"it took nothing for {exc.seconds:.0f} s with {exc.queued} bytes waiting"
            )
        except trio.BrokenResourceError:
            user.end("broken")

    async def _finish(self, user: User) -> None:
        """The end of a session: what was queued, then the farewell, then the close, as
        the end reason's record says (see :mod:`._ending`)."""
        await self._pacer.turn()  # a thousand peers that close at once end a few a batch
        member, outbox = user.member, user.outbox
        user.end("stopping" if member.stopping else "eof")  # unless ended already
        ending = user.ending
        assert ending is not None
        for topic in list(user.subs):  # first, so that it does not see its own leaving
            await self._unsubscribe(user, topic)
        await self._leave(user)
        if not ending.writes or outbox.error is not None:
            return
        stall_timeout, deadline = self.stall_timeout, math.inf
        if ending.goodbye_deadline:
            stall_timeout, deadline = None, trio.current_time() + self.goodbye_timeout
        if ending.drops_waiting:
            outbox.drop_waiting()  # what it could not take; the line under way is finished
        farewell = member.farewell(ending.reason, user.detail)
        if farewell:
            outbox.put(farewell)
        with trio.move_on_at(deadline), contextlib.suppress(*_GONE):
            await outbox.flush(stall_timeout=stall_timeout)
            await member.linger()

    async def _leave(self, user: User) -> None:
        """Tell the room and the directory that ``user`` is gone. Idempotent."""
        if not user.leave():
            return
        core = user.core
        try:
            await self.directory.unregister(core.session)
        except DirectoryUnavailable as exc:  # nobody renews its lease: it runs out
            LOGGER.warning("%s left, but %s", core.nick, exc)
        for effect in core.leave():
            assert isinstance(effect, proto.Publish)
            with contextlib.suppress(trio.ClosedResourceError):
                await self._announce(user.member, effect.topic, effect.event)
        ending = user.ending
        why = (
            ending.describe(user.detail)
            if ending is not None
            else "cancelled: an idle timeout, an expiry or the end of a grace period"
        )
        LOGGER.info("%s left (%s)", core.nick, why)
