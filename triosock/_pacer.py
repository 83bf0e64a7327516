"""Spreading a burst of the same work over scheduler batches.

Trio runs every task that is ready in one batch before it looks at the sockets again. So
when a thousand sessions end at once (a thousand peers close, or a thousand UDP peers'
idle timers fall due together), their thousand teardowns run in one batch, and a line
said meanwhile in another room waits for all of them: 100-300 ms on a 2-core machine.
A :class:`Pacer` lets a few of them go on per batch and queues the rest, in order, so the
rest of the server runs between: the burst costs the same CPU, spread thin.
"""

from __future__ import annotations

import trio

__all__ = ["Pacer"]


class Pacer:
    """At most about ``per_batch`` callers of :meth:`turn` go on in one scheduler batch.

    The others wait, first come first served, for later batches. The queue is served by
    a system task that runs only while someone waits, so a pacer needs no nursery and
    outlives nothing: its waiters are let go when the run ends.
    """

    def __init__(self, per_batch: int) -> None:
        if per_batch < 1:
            raise ValueError(f"per_batch must be at least 1: {per_batch}")
        self.per_batch = per_batch
        self._lot = trio.lowlevel.ParkingLot()
        self._went = 0  # callers let through since the queue was last served
        self._serving = False

    @property
    def waiting(self) -> int:
        """How many callers wait for their turn."""
        return len(self._lot)

    async def turn(self) -> None:
        """Return at once if this batch has room, or wait for a later batch's turn.

        Not a schedule point when there is room (it is a cancel point either way), so a
        server that is not under a burst pays nothing for it.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._went < self.per_batch and not self._lot:
            self._went += 1
            return
        if not self._serving:
            self._serving = True
            trio.lowlevel.spawn_system_task(self._serve, name="triosock pacer")
        await self._lot.park()

    async def _serve(self) -> None:
        try:
            while self._lot:
                await trio.lowlevel.checkpoint()  # one batch
                self._went = len(self._lot.unpark(count=self.per_batch))
        finally:
            self._serving = False
            self._went = 0
            self._lot.unpark_all()  # only when the run ends with callers waiting
