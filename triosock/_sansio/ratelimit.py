"""A token bucket and a doubling delay, sans-IO: how long to wait, given the time.

``TokenBucket(rate, burst)`` allows ``burst`` actions at once and ``rate`` actions per
second on average. Each :meth:`~TokenBucket.take` spends one token and returns how many
seconds the caller should wait before acting (0 when a token was there). Time is passed
in, never read, so the rules are tested without a clock and callers use trio's (virtual
in tests) time.

The bucket never goes into debt by more than one action: a caller that waits the time
it was told and then acts is exactly on the rate. A burst after a quiet period refills
up to ``burst`` tokens, never more.

``Backoff(first, most, memory, kept)`` counts failures per key (an address, an account):
the n-th failure within ``memory`` seconds of the one before waits
``min(first * 2 ** (n - 1), most)`` seconds; at most ``kept`` keys are remembered (the
least recently failed go first).
"""

from __future__ import annotations

import math
from collections import OrderedDict

__all__ = ["Backoff", "TokenBucket"]


class Backoff:
    """A delay that doubles with each failure of a key (see the module docstring)."""

    __slots__ = ("_seen", "first", "kept", "memory", "most")

    def __init__(self, first: float, most: float, memory: float, kept: int) -> None:
        self.first, self.most, self.memory, self.kept = first, most, memory, kept
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> n, when

    def count(self, key: str, now: float) -> int:
        """One more failure of ``key`` at ``now``: how many in a row, this one included."""
        count, last = self._seen.pop(key, (0, now))
        if now - last > self.memory:
            count = 0
        count += 1
        self._seen[key] = (count, now)
        while len(self._seen) > self.kept:
            self._seen.popitem(last=False)
        return count

    def delay(self, count: int) -> float:
        """The seconds the ``count``-th failure in a row waits."""
        return float(min(self.first * 2 ** min(count - 1, 16), self.most))

    def failed(self, key: str, now: float) -> float:
        """One more failure of ``key`` at ``now``: the seconds its answer waits."""
        return self.delay(self.count(key, now))

    def waiting(self, key: str, now: float) -> float:
        """How long ``key`` is still held after its last failure (its delay from then),
        in seconds; 0 when it is not."""
        count, last = self._seen.get(key, (0, now))
        if not count or now - last > self.memory:
            return 0.0
        return max(0.0, last + self.delay(count) - now)

    def forget(self, key: str) -> None:
        """``key`` succeeded: its failures are forgotten."""
        self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)


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
