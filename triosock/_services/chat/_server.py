"""The chat service: TCP line users, UDP peers and WebSocket users (and, through the same
member interface, any other transport) in the same rooms, over a hub and a directory.

:class:`ChatServer` wires the service's parts, one concern a module, and is its public
face (its handlers, :meth:`~ChatServer.serve_member`, ``users()``, ``rooms()``,
``statistics()``):

* :mod:`._sessions` — the life of a session: serve a member, read it, carry out what it
  says (the directory's effects included), finish it, leave; the reaper of dead servers'
  users. The rate limit (the sender is slowed, never the room) lives there.
* :mod:`._fanout` — the fan-out task, the backlog rules (disconnect, drop_oldest,
  drop_newest, block), the per-member writer and its stall rule.
* :mod:`._presence` — publishing, and joins and leaves counted in crowded rooms.
* :mod:`._user` and :mod:`._ending` — a session's state and its end reasons, as data.
* :mod:`._member` and the adapters (:mod:`._tcp`, :mod:`._udp`, :mod:`._websocket`) —
  what the service needs of one transport's user.

The data path of one line: the member's session task reads a burst of input, the
session's rules (:class:`~triosock._sansio.chat.ChatSession`) turn each item into
effects, and the service carries them out: ``Publish`` puts the encoded event on the
hub (``room:<name>``, or ``inbox:<session id>`` for a direct message). One fan-out task
watches every member's subscriptions (a :class:`~triosock.hub.ReadyQueue`) and, once per
scheduler pass, renders each room batch once per transport and puts it into each
member's outbox, which writes it at once when the socket has room. A member's own writer
task only wakes for what the socket did not take.

The rules, with their defaults here, are told where they live: the rate limit, answers
and the goodbye in :mod:`._sessions`; disconnecting slow members, the other backlog
policies, whole lines and order in :mod:`._fanout`; presence in :mod:`._presence`; what
each end does in :mod:`._ending`. When the hub loses its broker every user is told
(:data:`HUB_DEGRADED`), and again when it is back (:data:`HUB_BACK`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Final

import trio

from ..._accounts import Accounts, Hasher
from ..._directory import Directory, InProcessDirectory
from ..._hub import Hub, InProcessHub, Policy, ReadyQueue
from ..._running import Running
from ..._sansio import chat as proto
from ..._sansio.history import DEFAULT_HISTORY
from ..._store import MemoryStore, NullStore, Store
from ..._transport.tcp import TCPConnection
from ..._transport.udp import UDPPeer
from ..._transport.websocket import WebSocketPeer
from ._fanout import BACKLOG_SLICE, MIN_FRAMES_PER_PASS, ROOM_WRITES_PER_PASS, FanOut
from ._irc import IrcMember
from ._member import Member
from ._presence import Presence
from ._resume import DEFAULT_MAX_DETACHED, DEFAULT_RESUME_WINDOW
from ._sessions import DIRECTORY_DOWN, SESSIONS_PER_BATCH, Sessions
from ._settings import ChatSettings
from ._tcp import TCPLineMember
from ._udp import UDPDialectMember, admit
from ._websocket import WebSocketMember

__all__ = [
    "BACKLOG_SLICE",
    "DEFAULT_BURST",
    "DEFAULT_GOODBYE_TIMEOUT",
    "DEFAULT_HISTORY",
    "DEFAULT_HISTORY_ON_JOIN",
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_DETACHED",
    "DEFAULT_MAX_LINE_LENGTH",
    "DEFAULT_PRESENCE_INTERVAL",
    "DEFAULT_PRESENCE_LIMIT",
    "DEFAULT_RATE",
    "DEFAULT_RESUME_WINDOW",
    "DEFAULT_STALL_TIMEOUT",
    "DIRECTORY_DOWN",
    "HISTORY_RESET",
    "HUB_BACK",
    "HUB_DEGRADED",
    "HUB_HELD",
    "MIN_FRAMES_PER_PASS",
    "ROOM_WRITES_PER_PASS",
    "SESSIONS_PER_BATCH",
    "ChatServer",
    "ChatStatistics",
]

LOGGER = logging.getLogger("triosock.chat")

#: Earlier lines a user is shown on entering a room.
DEFAULT_HISTORY_ON_JOIN: Final = 20
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
#: What users are told when the hub loses its broker and the history is kept there (a
#: line said waits for the broker, which gives it its id).
HUB_HELD: Final = (
    "the rooms are degraded: the broker is unreachable, so what is said waits, and is "
    "delivered in order when it is back; reconnecting"
)
#: How often, and how many times, the epoch is asked for when the broker is back; the
#: longest wait for one answer; how long the fan-out waits for it at most.
EPOCH_RETRY: Final = 0.25
EPOCH_ATTEMPTS: Final = 20
EPOCH_WAIT: Final = 2.0
EPOCH_HOLD: Final = 2.0
#: What users are told when the history began again (a broker that restarted empty).
HISTORY_RESET: Final = (
    "the history was reset (the broker restarted without its data): earlier lines are "
    "gone, and ids begin again"
)


@dataclass(frozen=True, slots=True)
class ChatStatistics:
    """A snapshot of a chat server's counters.

    Attributes:
      users: sessions connected now (of this server; the directory may know more).
      sessions_total: sessions since the server was made (a client its member refused
        before its session began is not one).
      users_by_kind: of ``users``, how many per member kind (``"tcp"``, ``"udp"``,
        ``"ws"``).
      lines_received: input items (lines, datagrams) received.
      lines_delivered: lines and notices put to members' sockets (one per member a line
        reached); a dropped line does not count.
      paced: input items that waited for the rate limit.
      disconnected_slow: members disconnected because their socket stopped draining.
      dropped: lines members lost to a ``drop_oldest`` / ``drop_newest`` policy.
      detached: sessions waiting now for a resume (their connection was lost).
      resumed: sessions taken back with their token since the server was made.
      resume_refused: resumes refused (a wrong or malformed token).
      registered, logins, logins_failed: accounts registered here, logins, and failed
        logins (a wrong password, or an account that does not exist; a wrong old
        password of ``/password`` too).
      logins_refused: logins refused unchecked (another under way for the account or
        the address, or within a failure's delay).
      kept_offline: direct messages kept for an account nobody was logged in to.
    """

    users: int
    users_by_kind: dict[str, int]
    sessions_total: int
    lines_received: int
    lines_delivered: int
    paced: int
    disconnected_slow: int
    dropped: int
    detached: int = 0
    resumed: int = 0
    resume_refused: int = 0
    registered: int = 0
    logins: int = 0
    logins_failed: int = 0
    logins_refused: int = 0
    kept_offline: int = 0


class ChatServer(Running):
    """Chat rooms shared by every transport's users, with flow control that slows a
    sender and never the room.

    Run the servers that call its handlers inside ``async with ChatServer(...) as chat:``,
    which runs the fan-out task; a handler called outside raises :class:`RuntimeError`,
    and leaving the block ends the sessions still running (they are told the server is
    closing). The module docstring says where each rule is told.

    Args:
      hub: where events fan out; an :class:`~triosock.hub.InProcessHub` by default.
      directory: nicks, rooms and session ids; an :class:`~triosock.chat.InProcessDirectory`
        by default.
      policy: what a member gets when more than ``max_backlog`` bytes wait for its socket:
        ``"disconnect"`` (the default), ``"drop_oldest"``, ``"drop_newest"`` or
        ``"block"`` (see :mod:`._fanout`).
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
        ``presence_interval`` seconds instead (see :mod:`._presence`). None: a line
        each, always.
      presence_interval: seconds between two counts of a crowded room's joins and leaves.
      store: where the lines said are recorded with their ids (room history, inboxes);
        by default a :class:`~triosock.chat.MemoryStore` keeping ``history`` lines a
        room, or, when the hub is not the in-process one (rooms shared by several
        processes, which a store of each process's own would give clashing ids), no
        history at all (:class:`~triosock.chat.NullStore`).
      history: lines kept per room (and per inbox) by the default store; 0 keeps none.
        Ignored when ``store`` is given (its own bound holds).
      history_on_join: earlier lines a user is shown on entering a room (0: none).
      resume_window: seconds a session whose connection ended without ``/quit`` waits,
        detached, for a resume with its token (0: sessions end with their connection;
        see :mod:`._resume`).
      max_detached: the most sessions that may wait at once (past it, the one detached
        longest ago ends).
      accounts: the registered nicks (see :mod:`._accounts`); in memory by default.
      hasher: what hashes passwords, off the event loop, a few at a time.
      opers: the nicks of the server operators (registered accounts, see
        :mod:`._operators`): they act in every room, and may ``/kill``. The rooms'
        records (founders, operators, bans, topics) live in ``accounts``.

    Raises:
      ValueError: a policy that does not exist, or a number out of its range.
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
        store: Store | None = None,
        history: int = DEFAULT_HISTORY,
        history_on_join: int = DEFAULT_HISTORY_ON_JOIN,
        resume_window: float = DEFAULT_RESUME_WINDOW,
        max_detached: int = DEFAULT_MAX_DETACHED,
        accounts: Accounts | None = None,
        hasher: Hasher | None = None,
        opers: Iterable[str] = (),
    ) -> None:
        settings = ChatSettings(
            # what a member that falls behind gets
            policy=policy,
            buffer=buffer,
            max_backlog=max_backlog,
            stall_timeout=stall_timeout,
            goodbye_timeout=goodbye_timeout,
            # what a session may send
            max_line_length=max_line_length,
            rate=rate,
            burst=burst,
            # how joins and leaves are said
            presence_limit=presence_limit,
            presence_interval=presence_interval,
            # what a user is shown of what was said before
            history_on_join=history_on_join,
            # how long a session whose connection was lost waits for a resume
            resume_window=resume_window,
            max_detached=max_detached,
        )
        #: The settings, checked; each is also an attribute of its own name.
        self.settings = settings
        self.hub: Hub[bytes] = hub if hub is not None else InProcessHub()
        self.directory: Directory = directory if directory is not None else InProcessDirectory()
        if store is None:  # with rooms shared by processes, a store of its own would clash
            store = MemoryStore(history) if isinstance(self.hub, InProcessHub) else NullStore()
        self.store: Store = store
        self._nursery: trio.Nursery | None = None
        self._told_epoch = store.epoch  # the epoch users were told of
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
        self._fanout = FanOut(self.hub, settings)
        self.history_on_join = history_on_join
        self._presence = Presence(self.hub, settings, self.store)
        self._sessions = Sessions(
            self.directory,
            self._fanout,
            self._presence,
            settings,
            self.store,
            accounts=accounts,
            hasher=hasher,
            opers=frozenset(proto.nick_key(nick) for nick in opers),
        )
        #: The registered nicks.
        self.accounts: Accounts = self._sessions.accounts
        #: The server's name in what IRC clients are sent.
        self.irc_server_name = "triosock"

    # -- running -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        ready: ReadyQueue[bytes] = ReadyQueue()
        self.hub.add_health_listener(self._hub_health)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._fanout.run, ready)
            nursery.start_soon(self._presence.count_forever)
            nursery.start_soon(self._sessions.expire_forever)
            await nursery.start(self._sessions.obey_forever)
            if self.directory.reap_interval is not None:
                nursery.start_soon(self._sessions.reap_forever, self.directory.reap_interval)
                nursery.start_soon(self._sessions.repair_forever)
            self._fanout.ready = ready
            try:
                yield
            finally:
                self._fanout.ready = None
                self._sessions.end_everyone()
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await self._sessions.expire_all()  # the detached ones leave too
                nursery.cancel_scope.cancel()

    def _hub_health(self, healthy: bool, detail: str) -> None:
        """Tell every user when the rooms stop (or start again) reaching other servers;
        when the broker is back, have the directory check what it still holds."""
        degraded = HUB_HELD if self.store.delivers else HUB_DEGRADED
        self._sessions.tell_everyone(HUB_BACK if healthy else degraded)
        if healthy:
            self.directory.check_soon()
            self._sessions.book.forget()  # changes told while the broker was away are lost
            if self._nursery is not None and self.store.delivers and self._fanout.hold is None:
                # what the broker delivers now waits (a little) until we know its epoch
                hold = self._fanout.hold = trio.Event()
                self._nursery.start_soon(self._check_epoch, hold)

    async def _check_epoch(self, hold: trio.Event) -> None:
        """The broker is back: if it lost the history, tell everyone (their ids are
        of the old epoch). Its first answers may be failures (the store's own connection
        learns of the loss then): asked again every :data:`EPOCH_RETRY` s, at most
        :data:`EPOCH_ATTEMPTS` times; the fan-out waits :data:`EPOCH_HOLD` s at most."""
        try:
            with trio.move_on_after(EPOCH_HOLD):
                if await self._learn_epoch():
                    return
            self._release(hold)  # too slow to answer: deliver, and keep asking
            await self._learn_epoch(EPOCH_ATTEMPTS)
        finally:
            self._release(hold)

    def _release(self, hold: trio.Event) -> None:
        hold.set()
        if self._fanout.hold is hold:
            self._fanout.hold = None

    async def _learn_epoch(self, attempts: int = 2**62) -> bool:
        """Read the broker's epoch and tell everyone if it is not the one they were
        told; whether it was read."""
        for _ in range(attempts):
            try:
                with trio.fail_after(EPOCH_WAIT):
                    epoch = await self.store.refresh_epoch()
                break
            except Exception as exc:  # the broker's client's errors: away again
                LOGGER.debug("could not read the history's epoch: %r", exc)
                await trio.sleep(EPOCH_RETRY)
        else:
            return False  # its next return asks again
        if epoch != self._told_epoch:
            LOGGER.warning("the history was reset: its epoch is now %s", epoch)
            self._told_epoch = epoch
            self._sessions.tell_history_reset(epoch, HISTORY_RESET)
        return True

    # -- the directory, as the API sees it -----------------------------------------------

    async def users(self, room: str | None = None) -> list[str]:
        """The nicks present (in ``room``, if given), sorted: the directory's view."""
        return await self.directory.nicks(room)

    async def rooms(self) -> dict[str, int]:
        """Room name -> number of users, for rooms with anyone in them."""
        return await self.directory.rooms()

    def statistics(self) -> ChatStatistics:
        """A snapshot of this server's counters."""
        sessions, fanout = self._sessions, self._fanout
        kinds: dict[str, int] = {}
        for user in sessions.users.values():
            kinds[user.member.kind] = kinds.get(user.member.kind, 0) + 1
        return ChatStatistics(
            users=len(sessions.users),
            users_by_kind=kinds,
            sessions_total=sessions.sessions_total,
            lines_received=sessions.lines_received,
            lines_delivered=fanout.delivered,
            paced=sessions.paced,
            disconnected_slow=fanout.disconnected_slow,
            dropped=fanout.dropped,
            detached=len(sessions.resumes.detached),
            resumed=sessions.resumes.resumed,
            resume_refused=sessions.resumes.refused,
            registered=sessions.registered,
            logins=sessions.logins,
            logins_failed=sessions.logins_failed,
            logins_refused=sessions.logins_refused,
            kept_offline=sessions.kept_offline,
        )

    # -- the handlers --------------------------------------------------------------------

    async def serve_tcp_client(self, conn: TCPConnection) -> None:
        """The ``serve_tcp`` handler: one chat user per connection, speaking lines."""
        await self.serve_member(TCPLineMember(conn, self.max_line_length))

    async def serve_udp_peer(self, peer: UDPPeer) -> None:
        """The ``serve_udp`` handler: one chat user per peer address, tutorial dialect,
        once the address is validated (:func:`~._udp.admit`)."""
        if await admit(peer):
            await self.serve_member(UDPDialectMember(peer))

    async def serve_websocket_peer(self, peer: WebSocketPeer) -> None:
        """The ``serve_websocket`` handler: one chat user per connection, JSON lines out,
        JSON events or text lines in (see :mod:`triosock._sansio.chat._web`)."""
        await self.serve_member(WebSocketMember(peer))

    async def serve_irc_client(self, conn: TCPConnection) -> None:
        """The ``serve_tcp`` handler of an IRC listener: one chat user per connection,
        an IRC client (see :mod:`._irc`). Its session begins once it has registered."""
        sessions = self._sessions
        member = IrcMember(
            conn,
            self.irc_server_name,
            self.max_line_length,
            sessions.sasl_login,
            sessions.nick_free,
        )
        if await member.register():
            await self.serve_member(member)
        else:
            with trio.move_on_after(self.goodbye_timeout):
                await member.linger()

    async def serve_member(self, member: Member) -> None:
        """Run one user's session over any member adapter until it ends.

        Raises:
          RuntimeError: the server is not running (outside ``async with``).
        """
        if self._fanout.ready is None:
            raise RuntimeError(
                "this ChatServer is not running: serve its handlers inside `async with chat:`"
            )
        await self._sessions.serve(member)
