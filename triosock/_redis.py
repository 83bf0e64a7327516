"""What the Redis-backed hub and directory share: a client that fails fast, and how to
tell (and say) that Redis could not be reached.

coredis runs on anyio, natively on trio; its connections live in anyio task groups, so a
lost connection may surface as anyio's errors, or as a group of them.
"""

from __future__ import annotations

import os
from typing import Final

import anyio
import coredis
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy

__all__ = [
    "COMMAND_TIMEOUT",
    "REDIS_ERRORS",
    "describe_failure",
    "is_redis_failure",
    "redis_client",
]

#: Seconds a Redis command (or a connection attempt) may take before it counts as lost.
COMMAND_TIMEOUT: Final = 5.0

#: What a Redis that cannot be reached, or answer, raises.
REDIS_ERRORS: Final = (
    RedisError,
    OSError,
    TimeoutError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
)


def is_redis_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis could not be reached or answered (a group counts when
    everything in it does)."""
    if isinstance(exc, REDIS_ERRORS):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(REDIS_ERRORS)
        return rest is None
    return False


def describe_failure(exc: BaseException) -> str:
    """Why Redis could not be reached, in a few words: the first error inside any
    groups, or better the system's reason under it (``connection refused``), which
    coredis wraps in errors of its own and anyio's."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno).lower()
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


def redis_client(url: str) -> coredis.Redis[bytes]:
    """A coredis client for ``url`` (``redis://HOST:PORT/DB``, ``unix://PATH``) that
    fails fast: the hub and the directory retry on their own terms."""
    return coredis.Redis.from_url(
        url,
        retry_policy=NoRetryPolicy(),
        stream_timeout=COMMAND_TIMEOUT,
        connect_timeout=COMMAND_TIMEOUT,
    )
