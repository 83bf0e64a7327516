"""A ``--workers`` worker process: ``python -m triosock._cli._worker``, started by the
supervisor (:mod:`._supervisor`) with the command's settings record in its environment.
Not for users."""

from __future__ import annotations

import functools
import os
import signal
import threading
from typing import cast

from ._run import run_job
from ._serve_settings import Served
from ._serving import run_serve
from ._workerenv import worker_settings


def _stop_when_orphaned() -> None:
    """Block on stdin, a pipe the supervisor holds; at its end (the supervisor is gone,
    however it died) stop this worker the graceful way."""
    while os.read(0, 4096):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    threading.Thread(target=_stop_when_orphaned, name="orphan-watch", daemon=True).start()
    run_job(functools.partial(run_serve, cast(Served, worker_settings())))
