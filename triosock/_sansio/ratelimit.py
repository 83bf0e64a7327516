"""A token bucket, sans-IO: how long to wait before the next action, given the time.

``TokenBucket(rate, burst)`` allows ``burst`` actions at once and ``rate`` actions per
second on average. Each :meth:`~TokenBucket.take` spends one token and returns how many
seconds the caller should wait before acting (0 when a token was there). Time is passed
in, never read, so the rules are tested without a clock and callers use trio's (virtual
in tests) time.

The bucket never goes into debt by more than one action: a caller that waits the time
it was told and then acts is exactly on the rate. A burst after a quiet period refills
up to ``burst`` tokens, never more.
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allow ``burst`` actions at once and ``rate`` actions per second after that.

    Args:
      rate: tokens added per second; positive and finite.
      burst: the bucket's size, at least 1; the bucket starts full.
      now: the current time, in seconds (any clock, as long as it is always the same).

    Raises:
      ValueError: for a rate that is not positive and finite, or a burst below 1.
    """

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of actions per second: {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1 action, not {burst}")
        self.rate = float(rate)
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float) -> float:
        """Spend one token at time ``now``; return the seconds to wait before acting.

        A return of 0 means act now. Otherwise the caller should act ``delay`` seconds
        later; the token is already spent, so it must not call again for this action.
        """
        tokens = self._tokens
        if now > self._stamp:
            tokens = min(float(self.burst), tokens + (now - self._stamp) * self.rate)
            self._stamp = now
        tokens -= 1.0
        self._tokens = tokens
        if tokens >= 0.0:
            return 0.0
        return -tokens / self.rate

    def available(self, now: float) -> float:
        """How many tokens the bucket holds at ``now`` (negative while in debt)."""
        if now <= self._stamp:
            return self._tokens
        return min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
