"""The chat service: TCP line users and UDP peers in the same rooms, over a hub.

The data path of one line: the session's reader task turns it into a command
(:mod:`triosock._sansio.chat`), the command publishes an event on the hub (topic
``room:<name>`` for a room, ``inbox:<session>`` for a direct message), and every
subscriber's writer task drains its subscription and writes all that is queued in one
write. Events cross the hub encoded (``encode_event``), so a hub backed by a broker
can carry them between processes.

Each TCP connection runs three tasks in its own nursery: the reader, the room writer
(restarted on ``/join``) and the inbox writer. A writer whose subscription the hub
disconnects (policy ``"disconnect"``: the client stopped reading and its queue filled)
ends the session with a log line, even when it is stuck in a write to the dead-slow
socket; the room never waits for it.

Fan-out without a task switch per member: while the server runs as ``async with
ChatServer(...)``, one fan-out task watches the subscriptions of plain TCP users (a
:class:`~triosock.ReadyQueue`) and, once per scheduler pass, writes what each of them has
queued straight into its socket without waiting (``FramedChannel.send_many_nowait``; a
room's batch is rendered and framed once per pass, ``send_framed_nowait``). A
user's own writer task sleeps meanwhile and takes over only for what cannot be written at
once (a full socket buffer, an error) until its queue is empty again; so a slow reader
still slows down nobody but itself, and each connection still owns its tasks. Without
``async with`` (or over TLS, or for UDP peers) every writer task does its own writes.

UDP peers speak the seed tutorial's dialect: ``^hb^`` is a heartbeat (refreshes the
peer's liveness, never broadcast), ``quit`` leaves, anything else is said in the room.
A UDP peer is named by its address, ``ip:port``; every room line reaches it as one
datagram ending in LF (so ``nc -u`` and ``socat`` show lines), a UDP peer's own message
as the acknowledgement ``[ip:port] text``. A peer
silent for longer than the expiry (2 x the heartbeat interval by default) is dropped.
When the server stops, TCP users get ``-!- server closing: ...`` and UDP peers
``Bye!`` (on ``quit`` too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import trio

from .._errors import MessageTooLargeError
from .._hub import Hub, InProcessHub, Policy, ReadyQueue, SlowSubscriberError, Subscription
from .._sansio import chat as proto
from .._sansio.framing import LineFramer
from .._transport.channel import FramedChannel
from .._transport.tcp import TCPConnection
from .._transport.udp import UDPPeer

__all__ = ["ChatServer"]

LOGGER = logging.getLogger("triosock.chat")

SendLines = Callable[[Sequence[bytes]], Awaitable[None]]


def room_topic(room: str) -> str:
    return f"room:{room}"


@dataclass(eq=False)
class _Session:
    """One user: a TCP connection or a UDP peer."""

    id: int
    nick: str
    room: str
    kind: str  # "tcp" or "udp"
    scope: trio.CancelScope
    subscriptions: set[Subscription[bytes]] = dataclasses.field(default_factory=set)

    @property
    def inbox(self) -> str:
        return f"inbox:{self.id}"


class _Writer:
    """One subscription's writer: its task, and what the fan-out task needs to know.

    ``busy`` says who writes: the fan-out task while it is false, the writer task while
    it is true. Only the fan-out sets it (handing over), only the writer task clears it
    (when its queue is empty and its channel's backlog written).
    """

    __slots__ = ("busy", "channel", "fast", "lot", "pending", "session", "subscription")

    def __init__(
        self, subscription: Subscription[bytes], session: _Session, channel: FramedChannel | None
    ) -> None:
        self.subscription = subscription
        self.session = session
        self.channel = channel
        self.fast = False  # registered with a running fan-out task
        self.busy = True
        self.pending: list[bytes] = []  # lines the fan-out took but could not write
        self.lot = trio.lowlevel.ParkingLot()

    def hand_over(self) -> None:
        self.busy = True
        self.lot.unpark()


class ChatServer:
    """Chat rooms shared by TCP users and UDP peers.

    Use it as ``async with ChatServer(...) as chat:`` around the servers that call its
    handlers: that runs the fan-out task (see the module docstring). Outside such a
    block the handlers still work, each writer doing its own writes.

    Args:
      hub: where events fan out; an :class:`~triosock.InProcessHub` by default.
      policy: what a subscriber whose queue is full gets (see the hub); ``"disconnect"``
        by default, so a client that stops reading is dropped and the room never waits.
        With ``"block"`` delivery is lossless: publishers wait for the slowest reader.
      buffer: each subscriber's queue size, in events.
      max_line_length: the longest line a TCP user may send; a longer one gets an error
        and a close.
    """

    def __init__(
        self,
        hub: Hub[bytes] | None = None,
        *,
        policy: Policy = "disconnect",
        buffer: int = 256,
        max_line_length: int = 4096,
    ) -> None:
        self.hub: Hub[bytes] = hub if hub is not None else InProcessHub()
        self.policy: Policy = policy
        self.buffer = buffer
        self.max_line_length = max_line_length
        self._ids = itertools.count(1)
        self._guests = itertools.count(1)
        self._by_nick: dict[str, _Session] = {}
        self._members: dict[str, set[_Session]] = {}
        self._ready: ReadyQueue[bytes] | None = None
        self._writers: dict[Subscription[bytes], _Writer] = {}
        self._running: contextlib.AbstractAsyncContextManager[None] | None = None

    # -- the fan-out task --------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._running is not None:
            raise RuntimeError("this ChatServer is running already")
        running = self._run_fan_out()
        await running.__aenter__()
        self._running = running
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        running, self._running = self._running, None
        assert running is not None
        return await running.__aexit__(exc_type, exc_value, traceback)

    @contextlib.asynccontextmanager
    async def _run_fan_out(self) -> AsyncIterator[None]:
        ready: ReadyQueue[bytes] = ReadyQueue()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._fan_out, ready)
            self._ready = ready
            try:
                yield
            finally:
                self._ready = None
                for writer in self._writers.values():  # back to writing for themselves
                    writer.fast = False
                    ready.unwatch(writer.subscription)
                    writer.hand_over()
                self._writers.clear()
                nursery.cancel_scope.cancel()

    async def _fan_out(self, ready: ReadyQueue[bytes]) -> None:
        """Write, without waiting, what idle writers' subscriptions got since last time."""
        writers = self._writers
        while True:
            # Members of a room mostly get the same batch: render it once per pass.
            shared_batch: list[bytes] = []
            shared_lines: list[bytes] = []
            # ...and frame it once: every TCP member's channel has the same LineFramer.
            shared_framed: bytes | None = None
            for subscription in await ready.wait():
                writer = writers.get(subscription)
                if writer is None or writer.busy:
                    continue  # gone, or its task is writing and drains the queue itself
                try:
                    batch = subscription.drain_nowait()
                except Exception:  # ended: its task meets the end and finishes the session
                    writer.hand_over()
                    continue
                if not batch:
                    continue
                channel = writer.channel
                assert channel is not None
                missed = subscription.take_missed()
                if batch == shared_batch and not missed:
                    lines = shared_lines
                else:
                    topic = subscription.topic
                    lines, shared = self._render(topic, writer.session, batch, False, missed)
                    if shared:
                        shared_batch, shared_lines, shared_framed = batch, lines, None
                try:
                    if lines is shared_lines:
                        if shared_framed is None:
                            shared_framed = channel.framer.encode_many(lines)
                        channel.send_framed_nowait(shared_framed)
                    else:
                        channel.send_many_nowait(lines)
                except Exception:
                    # Usually WouldBlock. Its task sends them, waiting, or meets the error
                    # and ends that one session: one user's failure is never everyone's.
                    writer.pending = lines
                    writer.hand_over()
                    continue
                if channel.backlog:
                    writer.hand_over()

    # -- the directory -----------------------------------------------------------------

    def users(self, room: str | None = None) -> list[str]:
        """The nicks present (in ``room``, if given), sorted."""
        if room is None:
            return sorted(s.nick for s in self._by_nick.values())
        return sorted(s.nick for s in self._members.get(room, ()))

    def rooms(self) -> dict[str, int]:
        """Room name -> number of users, for rooms with anyone in them."""
        return {room: len(members) for room, members in sorted(self._members.items()) if members}

    def _register(self, nick: str, kind: str) -> _Session:
        session = _Session(next(self._ids), nick, proto.DEFAULT_ROOM, kind, trio.CancelScope())
        self._add(session)
        return session

    def _add(self, session: _Session) -> None:
        self._by_nick[proto.nick_key(session.nick)] = session
        self._members.setdefault(session.room, set()).add(session)

    def _unregister(self, session: _Session) -> None:
        if self._by_nick.get(proto.nick_key(session.nick)) is session:
            del self._by_nick[proto.nick_key(session.nick)]
        members = self._members.get(session.room)
        if members is not None:
            members.discard(session)
            if not members:
                del self._members[session.room]

    def _guest_nick(self) -> str:
        while True:
            nick = proto.default_nick(next(self._guests))
            if proto.nick_key(nick) not in self._by_nick:
                return nick

    # -- publishing --------------------------------------------------------------------

    async def _publish(self, topic: str, event: proto.Event) -> None:
        data = proto.encode_event(event)
        try:
            # No checkpoint when this succeeds: a reader publishes a whole burst of lines
            # before yielding, so each writer wakes once for the burst, not once a line.
            self.hub.publish(topic, data)
        except trio.WouldBlock:
            # A "block" subscriber is full: lossless delivery waits for it.
            await self.hub.publish_wait(topic, data)

    # -- writers -----------------------------------------------------------------------

    async def _pump(self, writer: _Writer, send: SendLines, udp: bool) -> None:
        """Drain the writer's subscription into ``send``, a batch per write, until it ends.

        A writer registered with the fan-out task sleeps while its queue is empty and lets
        the fan-out write; it wakes when handed something that must wait.
        """
        subscription = writer.subscription
        channel = writer.channel
        while True:
            if writer.pending:
                lines, writer.pending = writer.pending, []
                await send(lines)
            if channel is not None and channel.backlog:
                await channel.flush()
            try:
                batch = subscription.drain_nowait()
                if not batch:
                    if writer.fast:
                        writer.busy = False
                        while not writer.busy:
                            await writer.lot.park()
                        continue
                    batch = [await subscription.receive()]
                    batch += _drain_quietly(subscription)
            except trio.EndOfChannel:
                return
            await send(self._render_batch(subscription, writer.session, batch, udp))

    def _render_batch(
        self, subscription: Subscription[bytes], session: _Session, batch: list[bytes], udp: bool
    ) -> list[bytes]:
        missed = subscription.take_missed()
        return self._render(subscription.topic, session, batch, udp, missed)[0]

    def _render(
        self, topic: str, session: _Session, batch: list[bytes], udp: bool, missed: int
    ) -> tuple[list[bytes], bool]:
        """The lines ``session`` sees for ``batch``, and whether every reader sees them."""
        lines = []
        shared = not missed
        if missed:
            notice = proto.Notice(f"{missed} messages dropped: you fell behind")
            lines.append(proto.render_line(notice))
        for data in batch:
            try:
                line = _render_shared(data, udp)
                if line is None:  # depends on who reads it
                    shared = False
                    event = proto.decode_event_untrusted(data)
                    line = proto.render_line(event, viewer=session.nick)
            except proto.ChatError:
                LOGGER.warning("undecodable event on %s dropped", topic)
                continue
            lines.append(line)
        return lines, shared

    async def _follow(
        self,
        topic: str,
        session: _Session,
        send: SendLines,
        udp: bool,
        channel: FramedChannel | None = None,
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Subscribe to ``topic`` and pump it until cancelled (through the scope given back).

        ``channel``, when given, is what ``send`` writes to: the fan-out task may then
        write to it directly.
        """
        with trio.CancelScope() as scope:
            async with self.hub.subscribe(topic, buffer=self.buffer, policy=self.policy) as sub:
                session.subscriptions.add(sub)
                writer = _Writer(sub, session, channel)
                self._register_writer(writer)
                task_status.started(scope)
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._watch_slow, sub, session)
                        # On SlowSubscriberError _watch_slow reports and ends the session.
                        with contextlib.suppress(SlowSubscriberError):
                            await self._pump(writer, send, udp)
                        nursery.cancel_scope.cancel()
                finally:
                    session.subscriptions.discard(sub)
                    if writer.fast:  # closing the subscription unwatches it
                        self._writers.pop(sub, None)

    def _register_writer(self, writer: _Writer) -> None:
        """Let the fan-out task write for ``writer``, when it runs and the channel allows."""
        ready, channel = self._ready, writer.channel
        if ready is None or channel is None or not channel.can_send_nowait:
            return
        if not ready.supports(writer.subscription):  # a hub without in-process queues
            return
        writer.fast = True
        self._writers[writer.subscription] = writer
        ready.watch(writer.subscription)

    async def _watch_slow(self, sub: Subscription[bytes], session: _Session) -> None:
        await sub.wait_ended()
        if sub.statistics().disconnected:
            LOGGER.warning(
                "disconnecting %s (%s): it stopped reading and its queue of %d filled",
                session.nick,
                session.kind,
                sub.buffer,
            )
            session.scope.cancel()

    # -- commands ----------------------------------------------------------------------

    async def _join(
        self,
        session: _Session,
        room: str,
        nursery: trio.Nursery,
        send: SendLines,
        channel: FramedChannel | None,
    ) -> trio.CancelScope:
        """Move ``session`` into ``room`` and return the new room writer's scope."""
        self._unregister(session)
        await self._publish(room_topic(session.room), proto.Left(session.room, session.nick))
        session.room = room
        self._add(session)
        return await self._enter_room(session, nursery, send, channel)

    async def _command(
        self,
        session: _Session,
        command: proto.Command,
        notify: Callable[[str], Awaitable[None]],
    ) -> str | None:
        """Carry out a command that needs no transport; return a room to join, if any."""
        match command:
            case proto.Say(text) | proto.Me(text):
                text = proto.sanitize_text(text)
                if isinstance(command, proto.Say):
                    event: proto.Event = proto.Message(session.room, session.nick, text)
                else:
                    event = proto.Action(session.room, session.nick, text)
                await self._publish(room_topic(session.room), event)
            case proto.Nick(name):
                try:
                    nick = proto.validate_nick(name)
                except proto.ChatError as exc:
                    await notify(str(exc))
                    return None
                owner = self._by_nick.get(proto.nick_key(nick))
                if owner is not None and owner is not session:
                    await notify(f"nick {nick} is taken")
                    return None
                old = session.nick
                del self._by_nick[proto.nick_key(old)]
                session.nick = nick
                self._by_nick[proto.nick_key(nick)] = session
                await self._publish(room_topic(session.room), proto.NickChanged(old, nick))
            case proto.Join(room):
                try:
                    return proto.validate_room(room)
                except proto.ChatError as exc:
                    await notify(str(exc))
            case proto.Msg(name, text):
                target = self._by_nick.get(proto.nick_key(name))
                if target is None:
                    await notify(f"no user named {name}")
                    return None
                direct = proto.Direct(session.nick, target.nick, proto.sanitize_text(text))
                await self._publish(target.inbox, direct)
                if target is not session:
                    await self._publish(session.inbox, direct)
            case proto.Who():
                await notify(f"in {session.room}: {', '.join(self.users(session.room))}")
            case proto.Rooms():
                listing = ", ".join(f"{room} ({n})" for room, n in self.rooms().items())
                await notify(f"rooms: {listing}")
            case proto.Help():
                for line in proto.HELP_TEXT:
                    await notify(line)
            case proto.Invalid(reason):
                await notify(reason)
            case proto.Empty() | proto.Quit():
                pass
        return None

    # -- TCP ---------------------------------------------------------------------------

    async def serve_tcp_client(self, conn: TCPConnection) -> None:
        """The ``serve_tcp`` handler: one chat user per connection."""
        chan = FramedChannel(conn, LineFramer(max_line_length=self.max_line_length))
        session = self._register(self._guest_nick(), "tcp")
        LOGGER.info("%s joined from %s", session.nick, conn.peer)

        async def notify(text: str) -> None:
            await chan.send(proto.render_line(proto.Notice(text)))

        try:
            with session.scope:
                await notify(f"welcome to triosock chat, {session.nick}; /help lists commands")
                quitting = False
                async with trio.open_nursery() as nursery:
                    await nursery.start(
                        self._follow, session.inbox, session, chan.send_many, False, chan
                    )
                    room_scope = await self._enter_room(session, nursery, chan.send_many, chan)
                    with conn.stop_scope():
                        quitting = await self._read_tcp(session, chan, nursery, notify, room_scope)
                    _finish_writers(session, cancel=conn.stopping, nursery=nursery)
                # The writers are gone (and so is the fan-out's access): the last word is ours.
                if conn.stopping:
                    await chan.send(proto.render_line(proto.ServerClosing("goodbye")))
                elif quitting:
                    await notify("bye")
        finally:
            await self._leave(session)

    async def _enter_room(
        self,
        session: _Session,
        nursery: trio.Nursery,
        send: SendLines,
        channel: FramedChannel | None,
    ) -> trio.CancelScope:
        """Start the writer of ``session.room`` and announce the arrival; return its scope.

        ``channel`` is the TCP user's channel (``send`` writes to it), None for UDP.
        """
        udp = channel is None
        scope: trio.CancelScope = await nursery.start(
            self._follow, room_topic(session.room), session, send, udp, channel
        )
        await self._publish(room_topic(session.room), proto.Joined(session.room, session.nick))
        return scope

    async def _read_tcp(
        self,
        session: _Session,
        chan: FramedChannel,
        nursery: trio.Nursery,
        notify: Callable[[str], Awaitable[None]],
        room_scope: trio.CancelScope,
    ) -> bool:
        """Carry out the user's lines until EOF (False) or ``/quit`` (True)."""
        try:
            async for first in chan:
                # Handle the whole burst the last read completed before yielding again.
                burst = [first]
                with contextlib.suppress(trio.WouldBlock):
                    while True:
                        burst.append(chan.receive_nowait())
                for line in burst:
                    command = proto.parse_line_untrusted(line)
                    if isinstance(command, proto.Quit):
                        return True
                    room = await self._command(session, command, notify)
                    if room is not None and room != session.room:
                        room_scope.cancel()
                        room_scope = await self._join(session, room, nursery, chan.send_many, chan)
        except MessageTooLargeError as exc:
            await notify(f"line too long (limit {exc.limit} bytes); closing")
        return False

    async def _leave(self, session: _Session) -> None:
        self._unregister(session)
        LOGGER.info("%s left", session.nick)
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await self._publish(room_topic(session.room), proto.Left(session.room, session.nick))

    # -- UDP ---------------------------------------------------------------------------

    async def serve_udp_peer(self, peer: UDPPeer) -> None:
        """The ``serve_udp`` handler: one chat user per peer address, tutorial dialect."""
        session = self._register(peer.peer, "udp")
        LOGGER.info("UDP peer %s joined", peer.peer)

        async def send(lines: Sequence[bytes]) -> None:
            for line in lines:
                await peer.send(line + b"\n")

        try:
            with session.scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self._follow, session.inbox, session, send, True)
                    await self._enter_room(session, nursery, send, None)
                    with peer.stop_scope():
                        await self._read_udp(session, peer)
                    _finish_writers(session, cancel=peer.stopping, nursery=nursery)
                await peer.send(proto.BYE + b"\n")
        finally:
            await self._leave(session)

    async def _read_udp(self, session: _Session, peer: UDPPeer) -> None:
        async for data in peer:
            match proto.classify_datagram_untrusted(data):
                case proto.Heartbeat():
                    continue  # the transport already counted it as life
                case proto.UdpQuit():
                    return
                case proto.UdpText(text):
                    text = proto.sanitize_text(text)
                    if text.strip():
                        message = proto.Message(session.room, session.nick, text)
                        await self._publish(room_topic(session.room), message)


@functools.lru_cache(maxsize=1024)
def _render_shared(data: bytes, udp: bool) -> bytes | None:
    """The line every reader of ``data`` sees, or None when it depends on the reader.

    A room event reaches every subscriber as the same bytes, so decoding and rendering
    it once instead of once per subscriber is what keeps fan-out linear and cheap.
    """
    event = proto.decode_event_untrusted(data)
    if udp:
        return _render_udp(event)
    if isinstance(event, proto.Direct):
        return None
    return proto.render_line(event)


def _finish_writers(session: _Session, *, cancel: bool, nursery: trio.Nursery) -> None:
    """End the session's writers: at once when the server stops (``cancel``), else after
    they have written everything already queued for the session.

    A user who says something and quits in the same breath still sees their line, even
    when a writer holds it in hand, waiting for the connection (a reply is being sent);
    the nursery then waits for the writers, which end when their subscriptions run dry.
    """
    if cancel:
        nursery.cancel_scope.cancel()
        return
    for subscription in list(session.subscriptions):
        subscription.unsubscribe()


def _drain_quietly(subscription: Subscription[bytes]) -> list[bytes]:
    """Whatever is queued, or nothing once the subscription has ended."""
    try:
        return subscription.drain_nowait()
    except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
        return []


def _render_udp(event: proto.Event) -> bytes:
    """What a UDP peer sees: its dialect's ack line for UDP senders, else the TCP line."""
    if isinstance(event, proto.Message) and ":" in event.sender:
        host, _, port = event.sender.rpartition(":")
        if port.isdigit():
            return proto.udp_ack_line(host.strip("[]"), int(port), event.text)
    return proto.render_line(event)
