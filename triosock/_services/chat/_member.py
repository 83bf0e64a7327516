"""The member interface: what the chat service needs of one transport's user.

A member adapter (TCP lines, the UDP dialect, the WebSocket page) turns its transport
into five things, and nothing of the chat's rules lives in it:

* **admission** — :meth:`Member.screen` may look at the client before its session
  begins, and refuse one that is no chat client before the room hears of it;
* **input** — :meth:`Member.receive` returns the next burst of what the user sent
  (lines, datagrams, messages), and :meth:`Member.handle` hands one item to the
  session's rules (:class:`~triosock._sansio.chat.ChatSession`), which return effects;
* **output** — an :class:`~triosock._transport.outbox.Outbox` over the transport, and
  a :class:`Renderer` that turns events into whole frames for it;
* **farewell** — the last frame for each way a session ends, and a graceful close
  (:meth:`Member.linger`);
* **stop** — the server's stop scope and stopping flag, and what cancelled the session
  when the transport did (:meth:`Member.cancelled_by`).

The service does the rest the same way for every member: the directory, the hub
subscriptions, the fan-out into the outbox, the flow-control rules and the goodbyes.
"""

from __future__ import annotations

import abc
import contextlib
import functools
from collections.abc import Collection, Sequence
from typing import ClassVar

import trio

from ..._sansio import chat as proto
from ..._transport.outbox import Outbox
from ._ending import EndReason, farewell_event

__all__ = ["EndReason", "Member", "Renderer"]


class Renderer(abc.ABC):
    """How events look on one transport, as whole frames for its outbox.

    A renderer is stateless and shared by every member of its transport, so a room's
    batch is rendered once per transport, not once per member.
    """

    __slots__ = ()

    #: Frames of this transport may be joined into one write (a byte stream).
    joinable: ClassVar[bool] = True
    #: What a batch gives depends on who views it beyond :meth:`everyone` (an IRC
    #: client is not sent its own lines): the fan-out shares one member's frames with
    #: another only when :meth:`shares_with` says so.
    per_viewer: ClassVar[bool] = False

    @abc.abstractmethod
    def frame(self, event: proto.Shown, viewer: str) -> bytes:
        """The frame ``viewer`` (a nick) receives for ``event``."""

    def join(self, frames: list[bytes]) -> bytes:
        """The frames of a batch as one write (joinable renderers only): concatenated;
        a WebSocket renderer wraps them in messages."""
        return b"".join(frames)

    def notice(self, text: str) -> bytes:
        """The frame of a notice for one user."""
        return self.frame(proto.Notice(text), "")

    def shared(self, data: bytes) -> bytes | None:
        """The frame every viewer receives for the encoded event ``data``, or None when
        it depends on the viewer (a direct message). Cached: a room line is decoded and
        rendered once, whoever reads it.

        Raises:
          ChatError: ``data`` is not an encoded event.
        """
        return _shared_frame(self, data)

    def frames(self, batch: Sequence[bytes], viewer: str) -> tuple[list[bytes], bool]:
        """The frames of a batch of encoded events, and whether every viewer sees them.

        Undecodable events are left out (they come from a broker, not from a user).
        """
        frames: list[bytes] = []
        everyone = True
        for data in batch:
            try:
                frame = _shared_frame(self, data)
                if frame is None:
                    everyone = False
                    frame = self.frame(proto.decode_event_untrusted(data), viewer)
            except proto.ChatError:
                continue
            frames.append(frame)
        return frames, everyone

    def shares_with(self, batch: Sequence[bytes], viewer: str) -> bool:
        """(A :attr:`per_viewer` renderer's) whether ``viewer`` gets the frames every
        viewer gets for ``batch``; true by default."""
        return True

    def everyone(self, event: proto.Event) -> bool:
        """Whether every viewer sees ``event`` alike (true but for direct messages)."""
        return not isinstance(event, proto.Direct)


# Small: within one pass the fan-out renders a room batch once anyway; this spares the
# decoding when the batches of members differ. At most 256 lines (a few MB at worst).
@functools.lru_cache(maxsize=256)
def _shared_frame(renderer: Renderer, data: bytes) -> bytes | None:
    event = proto.decode_event_untrusted(data)
    if not renderer.everyone(event):
        return None
    return renderer.frame(event, "")


class Member(abc.ABC):
    """One user's connection, as the chat service sees it.

    Attributes:
      kind: the transport's name (``"tcp"``, ``"udp"``, ``"ws"``), for the directory.
      renderer: how this transport shows events; a member may change its own (a TCP
        user's ``/tags on``), to another shared renderer.
      outbox: the member's output queue (see :mod:`triosock._transport.outbox`).
      label: the peer's address, for log lines.
      preferred_nick: the nick to ask the directory for on arrival (a UDP peer's
        address), or None for a guest nick.
      welcome: whether the session starts with a welcome notice.
      tells_token: whether the resume token is told in a notice.
    """

    kind: ClassVar[str]
    renderer: Renderer
    welcome: ClassVar[bool] = True
    #: Whether the session's resume token is told in a notice (the WebSocket's is in its
    #: greeting; a UDP peer resumes by its address).
    tells_token: ClassVar[bool] = True

    outbox: Outbox
    label: str
    preferred_nick: str | None = None

    async def screen(self) -> str | None:
        """Before the session begins (its nick and subscriptions are taken, but nothing
        was said of it, nor to it but what its room says meanwhile): whether to serve
        this client. A member may read the client's first input here (keeping it for
        :meth:`receive`) and refuse a client that is not a chat client: the session
        then ends for ``"refused"``, with the member's farewell as its answer, and the
        room is told nothing.

        Returns:
          None to serve it; otherwise why it is refused, for the log.

        A cancel point; the default serves every client at once, without a schedule
        point.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        return None

    @abc.abstractmethod
    async def receive(self) -> Sequence[object] | None:
        """The next burst of input, for :meth:`handle` (maybe empty, when a read gave
        nothing whole yet but the member put answers in its outbox); None at the end.

        Raises:
          trio.BrokenResourceError: the connection failed.
        """

    @abc.abstractmethod
    def handle(self, session: proto.ChatSession, item: object, now: float) -> list[proto.Effect]:
        """Give one input item to the session's rules; return what they say to do."""

    def farewell(self, reason: EndReason, detail: str) -> bytes | None:
        """The last frame for a session ending for ``reason``, if any: by default the
        chat's farewell for the reason (see :mod:`._ending`), rendered."""
        event = farewell_event(reason, detail)
        return None if event is None else self.renderer.frame(event, "")

    def greeting(self, nick: str, room: str, token: str, epoch: str) -> bytes | None:
        """The first frame of a session, before the welcome (the WebSocket member tells
        its client who and where it is, its resume token (empty: none) and the history's
        epoch); None by default."""
        return None

    def history_reset(self, epoch: str) -> bytes | None:
        """The frame that tells the client the history began again with a new ``epoch``
        (ids it holds mean nothing any more), before the notice that says so; None by
        default (the notice is all)."""
        return None

    #: Whether a list of a room's users marks its operators (an IRC client's ``@``):
    #: then :meth:`listed` answers ``/who``, else the session's rules do.
    marks_operators: ClassVar[bool] = False

    def listed(
        self,
        session: proto.ChatSession,
        room: str,
        nicks: list[str],
        away: Collection[str],
        operators: frozenset[str],
    ) -> list[proto.Effect]:
        """The answer to a list of ``room``'s users, its ``operators`` (nick keys)
        marked; by default the session's answer, unmarked."""
        return session.listed_users(room, nicks, away)

    def after_entering(self, session: proto.ChatSession) -> list[proto.Effect]:
        """What follows a session's entering its room, after its earlier lines and its
        topic (an IRC client's names list); nothing by default."""
        return []

    def told_topic(self, room: str, topic: str, by: str) -> list[proto.Effect]:
        """How this transport's user is told ``room``'s ``topic`` (``""``: none), set by
        ``by`` (on entering the room, and to ``/topic``): a notice by default."""
        if not topic:
            return [proto.Tell(f"{room} has no topic")]
        return [proto.Tell(f"topic of {room}: {topic} (set by {by})")]

    def told_mode(self, room: str, moderated: bool) -> list[proto.Effect]:
        """How this transport's user is told whether ``room`` is moderated (``/mode``):
        a notice by default."""
        mode = "+m (only operators speak)" if moderated else "-m (everyone speaks)"
        return [proto.Tell(f"{room} is {mode}")]

    def take_resume(self) -> proto.ResumeRequest | None:
        """After :meth:`screen`: the client's first input, taken, if it asks for a
        detached session back (``/resume TOKEN``); None otherwise (and by default)."""
        return None

    #: A member that resumes by who it is rather than by a token (a UDP peer, by its
    #: validated address): its key, or None (by default: it resumes with a token).
    resume_key: str | None = None

    def detaches_when_cancelled(self) -> bool:
        """Whether a session cancelled from outside (not by the server's stop) is kept
        for a resume: a UDP peer that expired is (it comes back when it speaks); by
        default a cancelled session ends."""
        return False

    #: Whether a session whose connection ends without ``/quit`` is kept for a resume
    #: (when the server has a resume window); an IRC client's is not: it ends.
    resumable: ClassVar[bool] = True

    #: The account key a client logged in to before its session began (an IRC
    #: client's SASL login), or None.
    account: str | None = None

    def new_session(
        self,
        presence: proto.Presence,
        *,
        max_line_length: int,
        rate: float | None,
        burst: int,
        now: float,
    ) -> proto.ChatSession:
        """The session's rules for this transport's client: the chat's own by default."""
        return proto.ChatSession(
            presence, max_line_length=max_line_length, rate=rate, burst=burst, now=now
        )

    #: The most missed lines a resume shows this member (the rest are counted); None:
    #: the chat's own bound.
    catch_up_limit: ClassVar[int | None] = None

    def hold_idle(self) -> contextlib.AbstractContextManager[None]:
        """Stop the transport's idle clock for the body: the server is keeping the user
        waiting (its rate limit, a full queue), so the user is not idle. None by default."""
        return contextlib.nullcontext()

    async def linger(self) -> None:
        """After the farewell: close gracefully. Nothing to do by default."""
        await trio.lowlevel.checkpoint()

    def idled(self) -> str | None:
        """How long the user sent nothing when the transport's idle timeout ended its
        input (through the stop scope), as text (``"30 s"``); None when it did not."""
        return None

    def cancelled_by(self) -> str | None:
        """What cancelled the session from outside, for the log line of its leaving, or
        None when the member cannot tell (its caller cancelled it).

        Called while the cancellation unwinds (in a ``finally``). The server's stop
        scope only ends the reading (the session then says goodbye), so a member whose
        server is :attr:`stopping` was cancelled by the end of the grace period; a
        transport with an idle timeout or an expiry says so first.
        """
        return "the end of the grace period" if self.stopping else None

    @abc.abstractmethod
    def stop_scope(self) -> trio.CancelScope:
        """A scope the server cancels when it begins to stop."""

    @property
    @abc.abstractmethod
    def stopping(self) -> bool:
        """True once the server has begun to stop."""
