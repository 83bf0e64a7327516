"""The chat's settings: one frozen record of the numbers every part of the service
reads, checked once, when the server is made."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

from ..._hub import Policy

__all__ = ["ChatSettings"]


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """What :class:`~._server.ChatServer` was made with (its Args say what each means).

    Raises:
      ValueError: a policy that does not exist, or a number out of its range.
    """

    policy: Policy
    buffer: int
    max_line_length: int
    rate: float | None
    burst: int
    max_backlog: int
    stall_timeout: float | None
    goodbye_timeout: float
    presence_limit: int | None
    presence_interval: float
    history_on_join: int = 20
    resume_window: float = 120.0
    max_detached: int = 10_000

    def __post_init__(self) -> None:
        if self.policy not in get_args(Policy):
            raise ValueError(f"unknown policy {self.policy!r}; expected one of {get_args(Policy)}")
        counts = (
            ("buffer", self.buffer, "event"),
            ("max_line_length", self.max_line_length, "byte"),
            ("burst", self.burst, "line"),
            ("max_backlog", self.max_backlog, "byte"),
        )
        for name, count, unit in counts:
            if count < 1:
                raise ValueError(f"{name} must be at least 1 {unit}, not {count}")
        rate = self.rate
        if rate is not None and not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of lines per second: {rate}")
        stall = self.stall_timeout
        if stall is not None and not stall > 0:
            raise ValueError(f"stall_timeout must be a positive number of seconds: {stall}")
        if not self.goodbye_timeout >= 0:
            raise ValueError(f"goodbye_timeout must not be negative: {self.goodbye_timeout}")
        if self.history_on_join < 0:
            raise ValueError(f"history_on_join must not be negative: {self.history_on_join}")
        window = self.resume_window
        if not (window >= 0 and math.isfinite(window)):
            raise ValueError(f"resume_window must be 0 or more seconds: {window}")
        if self.max_detached < 1:
            raise ValueError(f"max_detached must be at least 1 session, not {self.max_detached}")
        limit = self.presence_limit
        if limit is not None and limit < 1:
            raise ValueError(f"presence_limit must be at least 1 member, not {limit}")
        interval = self.presence_interval
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"presence_interval must be a positive number of seconds: {interval}")
