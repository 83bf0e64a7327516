"""One session as the service runs it: its record, and its state as data.

A user's state is two small machines. Both change only through the tables below (h11's
``_state.py`` is the model: the rules in a table, not in branches), and the service
asks the state rather than a set of flags.

The phase of the session (:class:`Phase`)::

    phase     step           next     what it means
    --------  -------------  -------  ---------------------------------------------------
    ARRIVING  arrive         LIVE     its member let it in: it is greeted, its room told
    ARRIVING  end(reason)    ENDING   refused by its member (or the server stopped)
                                      before it began: it never joins
    ENDING    arrive         ENDING   ended while its member screened it: it never joins
    LIVE      end(reason)    ENDING   the first reason is kept (see :mod:`._ending`) and
                                      the input side is cancelled
    ENDING    end(reason)    ENDING   a later reason changes nothing: the first one wins
    LEFT      end(reason)    LEFT     nothing: it is over
    ARRIVING  leave          LEFT     cancelled from outside before it began
    LIVE      leave          LEFT     cancelled from outside: no reason was given, the
                                      member says what cancelled it
    ENDING    leave          LEFT     the directory (and the room, if it was told of the
                                      arrival) were told
    LEFT      leave          LEFT     nothing: that was done once

An ARRIVING user has its nick and its subscriptions (taken in the order clients
arrive), but nothing was said to it or of it yet. Only a LIVE user is disconnected for
being slow (and told why, once) and gets the server's notices (the hub's health);
leaving happens once, and a session whose leaving has begun is not paced again on its
way out.

The flow of its output under ``policy="block"`` (:class:`Flow`)::

    flow      step           next      what it means
    --------  -------------  --------  ---------------------------------------------------
    FLOWING   over_backlog   BLOCKED   the fan-out stops feeding it: its subscriptions
                                       fill, and the publishers wait for it
    BLOCKED   over_backlog   BLOCKED
    BLOCKED   caught_up      FLOWING   half the backlog is written: it is fed again
    FLOWING   caught_up      FLOWING
"""

from __future__ import annotations

import contextlib
import enum
from collections import deque
from typing import Final, Literal, TypeAlias

import trio

from ..._hub import Subscription
from ..._sansio import chat as proto
from ._ending import ENDINGS, Ending, EndReason
from ._member import Member, Renderer

__all__ = [
    "ARRIVING",
    "BLOCKED",
    "ENDING",
    "FLOWING",
    "LEFT",
    "LIVE",
    "Connections",
    "Flow",
    "Phase",
    "User",
]


class Phase(enum.Enum):
    """Where a session is in its life (see the module docstring)."""

    ARRIVING = "arriving"
    LIVE = "live"
    ENDING = "ending"
    LEFT = "left"


class Flow(enum.Enum):
    """Whether the fan-out feeds a member (see the module docstring)."""

    FLOWING = "flowing"
    BLOCKED = "blocked"


ARRIVING, LIVE, ENDING, LEFT = Phase.ARRIVING, Phase.LIVE, Phase.ENDING, Phase.LEFT
FLOWING, BLOCKED = Flow.FLOWING, Flow.BLOCKED

PhaseStep: TypeAlias = Literal["arrive", "end", "leave"]
FlowStep: TypeAlias = Literal["over_backlog", "caught_up"]

#: (phase, step) -> the next phase. A step missing here is a bug, not a rule.
PHASES: Final[dict[tuple[Phase, PhaseStep], Phase]] = {
    (ARRIVING, "arrive"): LIVE,
    (ARRIVING, "end"): ENDING,
    (ENDING, "arrive"): ENDING,
    (ARRIVING, "leave"): LEFT,
    (LIVE, "end"): ENDING,
    (ENDING, "end"): ENDING,
    (LEFT, "end"): LEFT,
    (LIVE, "leave"): LEFT,
    (ENDING, "leave"): LEFT,
    (LEFT, "leave"): LEFT,
}
#: (flow, step) -> the next flow.
FLOWS: Final[dict[tuple[Flow, FlowStep], Flow]] = {
    (FLOWING, "over_backlog"): BLOCKED,
    (BLOCKED, "over_backlog"): BLOCKED,
    (BLOCKED, "caught_up"): FLOWING,
    (FLOWING, "caught_up"): FLOWING,
}

Subscribing: TypeAlias = contextlib.AbstractAsyncContextManager[Subscription[bytes]]


#: The most marks a user keeps (what waits for its socket, a batch each): past it the
#: oldest go, and a resume may repeat a few lines rather than hold more.
MAX_MARKS: Final = 4096


class User:
    """One session, as the service runs it.

    Attributes:
      member: the member adapter.
      core: the session's rules and state (nick, room, rate limit).
      outbox: the member's outbox (at hand); renderer: its renderer, the member's
        as it is now (a TCP member's ``/tags`` changes it).
      subs: topic -> (the subscription's context manager, the subscription).
      held: topics whose subscription is not fed yet: the room's earlier lines are
        being shown first (see ``FanOut.release``).
      seen: topic -> the newest id of the earlier lines shown: the live lines up to it
        are not shown again.
      put_total, marks, written_ids: what was handed to the socket, for a resume
        after the last line written (see :meth:`mark` and :meth:`written`).
      scope: the input side; cancelled to end the session.
      phase: see :class:`Phase`; ending: the record of the first end reason (None while
        ARRIVING or LIVE, or when cancelled from outside); detail: that end's detail.
      flow: see :class:`Flow`; unblocked: where a subscription's own feeding task
        (a hub the fan-out cannot watch) waits while BLOCKED.
      missed: lines dropped and not reported to the member yet.
      nursery: the session's nursery (its writer, and feeding tasks if any).
    """

    __slots__ = (
        "core",
        "detail",
        "ending",
        "flow",
        "held",
        "marks",
        "member",
        "missed",
        "nursery",
        "outbox",
        "phase",
        "put_total",
        "scope",
        "seen",
        "subs",
        "unblocked",
        "written_ids",
    )

    def __init__(self, member: Member, core: proto.ChatSession) -> None:
        self.member = member
        self.core = core
        self.outbox = member.outbox
        self.subs: dict[str, tuple[Subscribing, Subscription[bytes]]] = {}
        self.held: set[str] = set()
        self.seen: dict[str, int] = {}
        self.put_total = 0
        self.marks: deque[tuple[int, str, int]] = deque(maxlen=MAX_MARKS)
        self.written_ids: dict[str, int] = {}
        self.scope = trio.CancelScope()
        self.phase = ARRIVING
        self.ending: Ending | None = None
        self.detail = ""
        self.flow = FLOWING
        self.unblocked = trio.lowlevel.ParkingLot()
        self.missed = 0
        self.nursery: trio.Nursery | None = None

    @property
    def renderer(self) -> Renderer:
        """How the member shows events now."""
        return self.member.renderer

    def mark(self, topic: str, count: int, last_id: int = 0) -> None:
        """``count`` messages were put into the outbox; among them, the newest line of
        ``topic`` is ``last_id`` (0: none). Not a checkpoint."""
        self.put_total += count
        if last_id:
            self.marks.append((self.put_total, topic, last_id))
        if len(self.marks) > 64:
            self.written()

    def written(self) -> dict[str, int]:
        """Topic -> the id of the newest line of it handed to the socket whole, or
        dropped by the backlog policy (the outbox counts both; a batch counts once all of
        it has left)."""
        outbox, marks, ids = self.outbox, self.marks, self.written_ids
        done = outbox.written + outbox.discarded  # a dropped line is not waited for
        while marks and marks[0][0] <= done:
            _, topic, last_id = marks.popleft()
            ids[topic] = last_id
        return ids

    def end(self, reason: EndReason, detail: str = "") -> None:
        """End the session for ``reason``: the input side is cancelled, and the rest
        follows the record of the first reason given (a later one changes nothing)."""
        if self._step("end"):
            ending = self.ending = ENDINGS[reason]
            self.detail = detail
            if ending.resets:  # it stopped reading: what it did not take is freed on close
                self.outbox.reset_on_close()
        self.scope.cancel()

    def arrive(self) -> bool:
        """Step from ARRIVING to LIVE; whether it did (not if it ended meanwhile)."""
        return self._step("arrive")

    def leave(self) -> bool:
        """Step to LEFT, once the room and the directory were told; whether this call
        did (the leaving is done once)."""
        return self._step("leave")

    def _step(self, step: PhaseStep) -> bool:
        phase = PHASES[self.phase, step]
        changed = phase is not self.phase
        self.phase = phase
        return changed

    def step_flow(self, step: FlowStep) -> bool:
        """Take a step of the flow machine; whether the flow changed."""
        flow = FLOWS[self.flow, step]
        changed = flow is not self.flow
        self.flow = flow
        return changed


class Connections:
    """The sessions that have more than one connection (an account's laptop and phone):
    session id -> its users, the first the one ``Sessions.users`` names. A session with
    one connection is not here.

    Every connection of a session shares its state (the same ``ChatSession``): its nick,
    room and account. Each has its own member, outbox and subscriptions, so each gets
    what the session is sent; a notice goes to the connection it answers.
    """

    __slots__ = ("_groups",)

    def __init__(self) -> None:
        self._groups: dict[str, list[User]] = {}

    def add(self, running: User, user: User) -> int:
        """``user`` is one more connection of ``running``'s session: how many it has."""
        group = self._groups.setdefault(running.core.session, [running])
        group.append(user)
        return len(group)

    def of(self, user: User) -> list[User]:
        """Every connection of ``user``'s session (``user`` alone, most of the time)."""
        return self._groups.get(user.core.session) or [user]

    def others(self, user: User) -> list[User]:
        """The other connections of ``user``'s session."""
        return [other for other in self.of(user) if other is not user]

    def part(self, user: User, users: dict[str, User]) -> None:
        """``user``'s connection is over, its session goes on on the others: if ``users``
        named it, it names the next one now."""
        session = user.core.session
        group = [other for other in self._groups.get(session, []) if other is not user]
        if len(group) > 1:
            self._groups[session] = group
        else:
            self._groups.pop(session, None)
        if group and users.get(session) is user:
            users[session] = group[0]
