"""A ``--workers`` worker process: ``python -m triosock._worker``, started by the
supervisor in :mod:`triosock._cli._workers` with the command's parsed options in its
environment. Not for users."""

from __future__ import annotations

import base64
import os
import pickle

from ._cli import run_parsed
from ._cli._workers import OPTIONS_ENV

if __name__ == "__main__":
    # The options come from our own supervisor, never from a user or the network.
    run_parsed(pickle.loads(base64.b64decode(os.environ[OPTIONS_ENV])))
