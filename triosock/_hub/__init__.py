"""The broadcast hub: the interface and policies are in :mod:`._abc`, the in-process
implementation (:class:`InProcessHub`, :class:`ReadyQueue`) in :mod:`._inprocess`.
"""

from __future__ import annotations

from ._abc import (
    DEFAULT_BUFFER,
    Hub,
    HubStatistics,
    Policy,
    SlowSubscriberError,
    SubscriberStatistics,
    Subscription,
)
from ._inprocess import InProcessHub, ReadyQueue

__all__ = [
    "DEFAULT_BUFFER",
    "Hub",
    "HubStatistics",
    "InProcessHub",
    "Policy",
    "ReadyQueue",
    "SlowSubscriberError",
    "SubscriberStatistics",
    "Subscription",
]
