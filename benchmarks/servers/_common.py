"""What every peer server shares: its command line and how it reports its port."""

from __future__ import annotations

import argparse
import sys

HOST = "127.0.0.1"


def parse_args(description: str, *, loop_choice: bool = False) -> argparse.Namespace:
    """``--port`` (default 0) and, for asyncio servers, ``--uvloop``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    if loop_choice:
        parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    return parser.parse_args()


def announce(port: int) -> None:
    """Tell the runner where we listen: one ``127.0.0.1:PORT`` line on stdout."""
    print(f"listening on {HOST}:{port}", flush=True)
    sys.stdout.flush()


def run_asyncio(main: object, *, use_uvloop: bool) -> None:
    """Run a coroutine on asyncio's default loop or on uvloop."""
    import asyncio
    from collections.abc import Coroutine
    from typing import Any, cast

    coro = cast(Coroutine[Any, Any, None], main)
    if use_uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
