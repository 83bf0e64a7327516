"""What a ``--workers`` worker process and its supervisor agree on: the worker's number
and settings in its environment, and how a child dies with its parent.

A leaf: it imports nothing of triosock's, so that anything may ask whether it runs in a
worker (the status port reports the number, the listeners bind with ``SO_REUSEPORT``).
"""

from __future__ import annotations

import base64
import os
import pickle
import signal
import sys
from collections.abc import Mapping
from typing import Final

__all__ = [
    "SETTINGS_ENV",
    "WORKER_ENV",
    "die_with_parent",
    "worker_environment",
    "worker_index",
    "worker_settings",
]

#: Set in a worker's environment: its number, from 1; and the settings record it runs.
WORKER_ENV: Final = "TRIOSOCK_WORKER"
SETTINGS_ENV: Final = "TRIOSOCK_WORKER_SETTINGS"
#: The module a worker runs (``python -m ...``).
WORKER_MODULE: Final = "triosock._cli._worker"

_PR_SET_PDEATHSIG: Final = 1


def worker_index() -> int | None:
    """This process's worker number, or None when it is not a worker."""
    value = os.environ.get(WORKER_ENV)
    return int(value) if value else None


def worker_environment(index: int, settings: object) -> dict[str, str]:
    """The environment of worker ``index``: ours, its number, and ``settings`` (a
    frozen dataclass record, pickled)."""
    encoded = base64.b64encode(pickle.dumps(settings)).decode("ascii")
    return dict(os.environ, **{WORKER_ENV: str(index), SETTINGS_ENV: encoded})


def worker_settings(environ: Mapping[str, str] = os.environ) -> object:
    """In a worker: the settings record its supervisor gave it."""
    # It comes from our own supervisor, never from a user or the network.
    return pickle.loads(base64.b64decode(environ[SETTINGS_ENV]))


def die_with_parent() -> None:
    """In a child between fork and exec: have the kernel send it SIGTERM when the
    thread that started it ends (so start it from the main thread, which lives as long
    as the process: not through trio, which starts processes from worker threads).
    Linux only; elsewhere nothing."""
    if sys.platform != "linux":
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
