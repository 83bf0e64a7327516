"""Liveness primitives: idle timers, heartbeats and the expiry rule, all on cancel scopes.

Both transports use these, so the module sits just above trio and below the transports
(it imports nothing else from triosock). Everything runs on trio's clock, so tests on
``autojump_clock`` see exact times.

* :class:`IdleTimer` — a cancel scope whose deadline moves forward each time the peer
  shows life. Run the peer's work inside ``timer.scope``; ``timer.touch()`` on every
  sign of life; ``with timer.held():`` while the server itself keeps the peer waiting;
  when it fires, ``timer.expired`` is true. A goodbye: ``timer.warn(scope)`` has the
  timer cancel ``scope`` (the handler's receive loop) when it fires, and its own scope
  only ``grace`` seconds later, so the code after the loop can say why.
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
      grace: with a :meth:`warn`-ed scope, the seconds between cancelling that scope and
        cancelling :attr:`scope` (the time to say goodbye).

    Must be created inside a trio run (it reads trio's clock).
    """

    __slots__ = ("_grace", "_timeout", "_warned", "scope")

    def __init__(self, timeout: float | None, *, grace: float = 0.0) -> None:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"idle timeout must be a positive number of seconds: {timeout}")
        if not grace >= 0:
            raise ValueError(f"grace must not be negative: {grace}")
        self._timeout = math.inf if timeout is None else timeout
        self._grace = grace
        self._warned: trio.CancelScope | None = None
        deadline = trio.current_time() + self._timeout
        #: The scope to run the peer's work in.
        self.scope = trio.CancelScope(deadline=deadline)

    @property
    def timeout(self) -> float:
        """The seconds of silence allowed (``math.inf`` when disabled)."""
        return self._timeout

    def touch(self) -> None:
        """The peer showed life: push the deadline ``timeout`` seconds into the future.

        Once a :meth:`warn`-ed scope has fired, nothing moves any more: the handler is
        saying goodbye, and what the peer sends meanwhile does not stop that.
        """
        if self._timeout != math.inf:
            deadline = trio.current_time() + self._timeout
            warned = self._warned
            if warned is None:
                self.scope.deadline = deadline
            elif not warned.cancel_called:
                warned.deadline = deadline
                self.scope.deadline = deadline + self._grace

    def warn(self, scope: trio.CancelScope) -> None:
        """Cancel ``scope`` when the timer fires, and :attr:`scope` ``grace`` seconds
        later, from now on: the work in ``scope`` (a receive loop) stops, and the code
        after it has ``grace`` seconds to say goodbye. The timer owns ``scope``'s
        deadline from then on. The last scope warned is the one the timer cancels.
        Nothing happens without a timeout."""
        if self._timeout == math.inf:
            return
        previous, self._warned = self._warned, scope
        deadline = self.scope.deadline  # the last touch's (plus the grace once warned)
        if previous is not None and deadline != math.inf:  # infinity: held
            deadline -= self._grace
        scope.deadline = deadline
        self.scope.deadline = deadline + self._grace

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Stop the clock for the body: the peer is not idle while *we* make it wait (a
        server pacing a sender, or waiting for room to publish). On exit the clock
        restarts from now, as after a :meth:`touch`."""
        warned = self._warned
        if self._timeout == math.inf or (warned is not None and warned.cancel_called):
            yield  # no clock, or it fired already: the goodbye's time is not ours to stop
            return
        self.scope.deadline = math.inf
        if warned is not None:
            warned.deadline = math.inf
        try:
            yield
        finally:
            self.touch()

    @property
    def expired(self) -> bool:
        """True once the timer has fired (or cancelled its warned scope): from then on,
        inside the scopes (the work being cancelled, in a ``finally``) as after them."""
        now = trio.current_time()
        warned = self._warned
        if warned is not None and warned.cancel_called and warned.deadline <= now:
            return True
        return self.scope.cancel_called and self.scope.deadline <= now


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
