"""Liveness primitives: idle timers, heartbeats and the expiry rule, all on cancel scopes.

Both transports use these, so the module sits just above trio and below the transports
(it imports nothing else from triosock). Everything runs on trio's clock, so tests on
``autojump_clock`` see exact times.

* :class:`IdleTimer` — a cancel scope whose deadline moves forward each time the peer
  shows life. Run the peer's work inside ``timer.scope``; ``timer.touch()`` on every
  sign of life; ``with timer.held():`` while the server itself keeps the peer waiting;
  when it fires, ``timer.expired`` is true.
* :func:`send_heartbeats` — a task that calls ``send()`` every ``interval`` seconds until
  cancelled.
* :func:`expiry_after` — the expiry rule: a peer that heartbeats every ``interval`` is
  declared gone after ``factor * interval`` of silence (2 by default), so a heartbeat
  may arrive up to one whole interval late (network jitter, a busy client). Surviving a
  *lost* heartbeat needs a factor above 2 (3 tolerates one lost beat plus jitter).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Iterator

import trio

__all__ = ["DEFAULT_EXPIRY_FACTOR", "IdleTimer", "expiry_after", "send_heartbeats"]

#: A peer is expired after this many heartbeat intervals of silence, unless told otherwise.
DEFAULT_EXPIRY_FACTOR = 2.0


def expiry_after(interval: float, factor: float = DEFAULT_EXPIRY_FACTOR) -> float:
    """How long a heartbeating peer may stay silent before it is expired.

    Args:
      interval: the heartbeat interval, in seconds.
      factor: how many intervals of silence are tolerated; at least 1 (2 by default, so
        that a heartbeat up to one interval late does not expire a live peer).

    Raises:
      ValueError: when ``interval`` is not positive or ``factor`` is below 1.
    """
    if not interval > 0 or math.isinf(interval):
        raise ValueError(f"heartbeat interval must be a positive number of seconds: {interval}")
    if not factor >= 1:
        raise ValueError(f"expiry factor must be at least 1: {factor}")
    return interval * factor


class IdleTimer:
    """A cancel scope that fires after ``timeout`` seconds without a :meth:`touch`.

    Args:
      timeout: seconds of silence allowed; ``None`` or ``math.inf`` disables the timer
        (the scope never fires, and :meth:`touch` costs almost nothing).

    Must be created inside a trio run (it reads trio's clock).
    """

    __slots__ = ("_timeout", "scope")

    def __init__(self, timeout: float | None) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"idle timeout must be a positive number of seconds: {timeout}")
        self._timeout = math.inf if timeout is None else timeout
        deadline = trio.current_time() + self._timeout
        #: The scope to run the peer's work in.
        self.scope = trio.CancelScope(deadline=deadline)

    @property
    def timeout(self) -> float:
        return self._timeout

    def touch(self) -> None:
        """The peer showed life: push the deadline ``timeout`` seconds into the future."""
        if self._timeout != math.inf:
            self.scope.deadline = trio.current_time() + self._timeout

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Stop the clock for the body: the peer is not idle while *we* make it wait (a
        server pacing a sender, or waiting for room to publish). On exit the clock
        restarts from now, as after a :meth:`touch`."""
        if self._timeout == math.inf:
            yield
            return
        self.scope.deadline = math.inf
        try:
            yield
        finally:
            self.touch()

    @property
    def expired(self) -> bool:
        """True once the timer has fired: from then on, inside the scope (the work being
        cancelled, in a ``finally``) as after it."""
        return self.scope.cancel_called and self.scope.deadline <= trio.current_time()


async def send_heartbeats(send: Callable[[], Awaitable[object]], interval: float) -> None:
    """Call ``await send()`` every ``interval`` seconds, starting one interval from now.

    Runs until cancelled (or until ``send`` raises). Intervals are measured from the
    planned time of the previous beat, so a slow ``send`` does not make the beat drift.
    """
    if not interval > 0:
        raise ValueError(f"heartbeat interval must be positive: {interval}")
    next_beat = trio.current_time() + interval
    while True:
        await trio.sleep_until(next_beat)
        await send()
        next_beat = max(next_beat + interval, trio.current_time())
