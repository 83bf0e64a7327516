"""Why a session ends, and what each reason does: one frozen record a reason, in a table.

A session's end is data, not branches: :data:`ENDINGS` holds, for each
:data:`EndReason`, whether anything more is written to the member, whether what waits
for it is dropped first, what bounds those last writes, the chat's farewell, and what
the log says. The service looks the reason up and follows the record; a member adapter
renders the farewell (or says goodbye in its own protocol's terms: a WebSocket close
code, the UDP dialect's ``Bye!``).

======== ====== ===== ========== =========================== ================= ===== ======
reason   writes drops bounded by farewell                    log               reset detach
======== ====== ===== ========== =========================== ================= ===== ======
eof      yes    no    stall rule none                        ``eof``           no    yes
quit     yes    no    stall rule notice ``bye``              ``quit``          no    no
stopping yes    no    stall rule ``server closing: goodbye`` ``stopping``      no    no
idle     yes    no    goodbye    notice ``disconnected:      ``idle for 30 s`` no    yes
                                 idle for 30 s``
slow     yes    yes   goodbye    notice ``disconnected:      ``slow``          yes   yes
                                 <why>``
broken   no     --    --         none                        ``broken: <why>`` no    yes
refused  yes    yes   goodbye    none (the member's own      ``refused:        no    no
                                 answer)                     <why>``
moved    yes    yes   goodbye    notice ``your session went  ``moved``         no    yes
                                 on on another connection``
removed  yes    no    goodbye    notice ``disconnected:      ``removed:        no    no
                                 <why>``                     <why>``
======== ====== ===== ========== =========================== ================= ===== ======

* **writes**: a broken connection gets nothing more; every other end writes the lines
  already queued for the member, then the farewell, then closes gracefully (a
  member dropped for not reading: see **reset**).
* **drops**: a member that stopped reading loses what waits for it (the line under
  way is finished first): it would never take it, and the notice must reach it soon.
* **bounded by**: the stall rule (the member drains at its own pace, disconnected only
  if its socket takes nothing for ``stall_timeout`` seconds), or the goodbye deadline
  (``goodbye_timeout`` seconds for everything, whatever it drains).
* **log**: what the log line of the leaving says in its brackets; some give the detail
  (a WebSocket's close code, what the client was taken for, how long it was idle); a
  slow member's warning said why already.
* **reset**: a member disconnected for not reading (a stalled socket, too many bytes
  waiting, too many answers waiting) is closed with a reset (``SO_LINGER`` {1, 0}) if,
  once its goodbye is over, the kernel still holds bytes it has not taken: a graceful
  close would leave them pinned in a FIN-WAIT-1 socket (megabytes each, for every
  dropped reader, until its client closes, even after the server exits), and the
  reset frees them at once, as nginx's ``reset_timedout_connection`` does. A member
  that took everything, its notice included, is closed gracefully like the others.
* **idle**: the transport's idle timeout (``serve_tcp``'s ``idle_timeout``) cancelled
  the member's stop scope: what is queued and the farewell go out within
  ``goodbye_timeout`` (the server's grace period cuts it anyway).
* **detach**: with a resume window (``resume_window``), a session that ends without
  ``/quit`` (the connection was closed or lost, idle, too slow, or taken over by a
  resume on another connection: **moved**) is detached rather than ended: its nick and
  room stay, nobody is told it left, and a resume within the window takes it back (see
  :mod:`._resume`). The server's stop and ``/quit`` end it.
* **refused**: the member found its client is no chat client (an HTTP request on the
  TCP line port, see :mod:`._tcp`), before its session began (then the room is told
  nothing at all) or after. Nothing queued for it is of use to it; the member answers
  it in its own protocol's terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from ..._sansio import chat as proto

__all__ = ["ENDINGS", "EndReason", "Ending", "farewell_event"]

#: Why a session ends: the user left (end of input, ``/quit``), the server is stopping,
#: the user sent nothing for the transport's idle timeout, the member's socket stopped
#: draining, its connection failed, the member refused its client (no chat client), the
#: session went on elsewhere (a resume), or an operator removed it (kicked or banned from
#: the default room, ``/kill``).
EndReason: TypeAlias = Literal[
    "eof", "quit", "stopping", "idle", "slow", "broken", "refused", "moved", "removed"
]


@dataclass(frozen=True, slots=True)
class Ending:
    """What ending a session for one reason does (see the module docstring's table).

    Attributes:
      reason: the reason this record is for.
      writes: whether the queued lines and the farewell are written at all.
      drops_waiting: whether what waits for the member is dropped first (the line under
        way is finished).
      goodbye_deadline: whether the last writes get ``goodbye_timeout`` seconds in all
        (True) or go at the member's pace under the stall rule (False).
      farewell: makes the chat's farewell event from the end's detail; None for none.
      log: what the log line of the leaving says, ``{detail}`` standing for the detail
        (the reason alone when there is none).
      resets: whether the connection is closed with a reset when the kernel still holds
        bytes the member has not taken (see the module docstring).
      detaches: whether the session is detached (kept for a resume) rather than ended,
        when the server has a resume window.
    """

    reason: EndReason
    writes: bool
    drops_waiting: bool
    goodbye_deadline: bool
    farewell: Callable[[str], proto.Event] | None
    log: str = "{reason}"
    resets: bool = False
    detaches: bool = False

    def describe(self, detail: str) -> str:
        """What the log says of this end (see :attr:`log`)."""
        if not detail:
            return self.reason
        return self.log.format(reason=self.reason, detail=detail)


def _bye(detail: str) -> proto.Event:
    return proto.Notice("bye")


def _closing(detail: str) -> proto.Event:
    return proto.ServerClosing("goodbye")


def _told_why(detail: str) -> proto.Event:
    return proto.Notice(f"disconnected: {detail}")


def _moved(detail: str) -> proto.Event:
    return proto.Notice("your session went on on another connection (/resume); closing this one")


def _idle(detail: str) -> proto.Event:
    return proto.Notice(f"disconnected: idle for {detail}")


#: The record of each end reason.
ENDINGS: Final[dict[EndReason, Ending]] = {
    ending.reason: ending
    for ending in (
        Ending(
            "eof",
            writes=True,
            drops_waiting=False,
            goodbye_deadline=False,
            farewell=None,
            detaches=True,
        ),
        Ending("quit", writes=True, drops_waiting=False, goodbye_deadline=False, farewell=_bye),
        Ending(
            "stopping", writes=True, drops_waiting=False, goodbye_deadline=False, farewell=_closing
        ),
        Ending(
            "idle",
            writes=True,
            drops_waiting=False,
            goodbye_deadline=True,
            farewell=_idle,
            log="idle for {detail}",
            detaches=True,
        ),
        Ending(
            "slow",
            writes=True,
            drops_waiting=True,
            goodbye_deadline=True,
            farewell=_told_why,
            resets=True,
            detaches=True,
        ),
        Ending(
            "broken",
            writes=False,
            drops_waiting=False,
            goodbye_deadline=False,
            farewell=None,
            log="{reason}: {detail}",
            detaches=True,
        ),
        Ending(
            "refused",
            writes=True,
            drops_waiting=True,
            goodbye_deadline=True,
            farewell=None,
            log="{reason}: {detail}",
        ),
        Ending(
            "removed",
            writes=True,
            drops_waiting=False,
            goodbye_deadline=True,
            farewell=_told_why,
            log="{reason}: {detail}",
        ),
        Ending(
            "moved",
            writes=True,
            drops_waiting=True,
            goodbye_deadline=True,
            farewell=_moved,
            detaches=True,
        ),
    )
}


def farewell_event(reason: EndReason, detail: str) -> proto.Event | None:
    """The chat's farewell for a session ending for ``reason``, if it has one."""
    make = ENDINGS[reason].farewell
    return None if make is None else make(detail)
