"""A ``--workers`` worker process: ``python -m triosock._worker``, started by the
supervisor in :mod:`triosock._cli._workers` with the command's parsed options in its
environment. Not for users."""

from __future__ import annotations

import base64
import os
import pickle
import signal
import threading

from ._cli import run_parsed
from ._cli._workers import OPTIONS_ENV


def _stop_when_orphaned() -> None:
    """Block on stdin, a pipe the supervisor holds; at its end (the supervisor is gone,
    however it died) stop this worker the graceful way."""
    while os.read(0, 4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    threading.Thread(target=_stop_when_orphaned, name="orphan-watch", daemon=True).start()
    # The options come from our own supervisor, never from a user or the network.
    run_parsed(pickle.loads(base64.b64decode(os.environ[OPTIONS_ENV])))
