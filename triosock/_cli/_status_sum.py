"""The supervisor's status: every worker's figures, asked at once, and their sum."""

from __future__ import annotations

import os
import time
from typing import Any

import trio

from .. import __version__
from .._errors import TriosockError
from ._status_ask import fetch_status
from ._values import Address

__all__ = ["combine", "gather"]

Figures = dict[str, Any]
#: Seconds the supervisor waits for a worker's answer before it reports none.
WORKER_WAIT = 2.0


async def gather(count: int, where: dict[int, Address], started: float) -> Figures:
    """Every worker's figures, asked at once, and their sum.

    Args:
      count: the workers, numbered from 1.
      where: each worker's status port, once it has said it (a worker missing here is
        reported as starting).
      started: when the supervisor started (Unix time).
    """
    answers: dict[int, Figures] = {}

    async def ask(index: int) -> None:
        address = where.get(index)
        if address is None:
            answers[index] = {"worker": index, "error": "starting"}
            await trio.lowlevel.checkpoint()
            return
        with trio.move_on_after(WORKER_WAIT):
            try:
                answers[index] = await fetch_status(address)
            except (TriosockError, trio.BrokenResourceError) as exc:
                answers[index] = {"worker": index, "error": str(exc) or type(exc).__name__}
            return
        answers[index] = {"worker": index, "error": f"no answer within {WORKER_WAIT:g} s"}

    async with trio.open_nursery() as nursery:
        for index in range(1, count + 1):
            nursery.start_soon(ask, index)
    workers = [answers[i] for i in range(1, count + 1)]
    total = combine(workers)
    return {
        "service": total["service"],
        "version": __version__,
        "pid": os.getpid(),
        "worker": None,
        "started": round(started, 3),
        "uptime": round(time.time() - started, 3),
        "workers": workers,
        "total": total,
    }


def combine(workers: list[Figures]) -> Figures:
    """The sum of the workers' figures (the rooms: the first's, as they share them)."""
    answered = [w for w in workers if "error" not in w]
    total: Figures = {"service": answered[0]["service"] if answered else "", "worker": None}
    for key in ("version", "pid", "started", "uptime"):
        total[key] = answered[0][key] if answered else 0
    listeners: dict[tuple[str, str], Figures] = {}
    for worker in answered:
        for listener in worker["listeners"]:
            which = (listener["name"], listener["transport"])
            if which not in listeners:
                listeners[which] = dict(listener)
            else:
                _add_into(listeners[which], listener)
    total["listeners"] = list(listeners.values())
    chats: list[Figures] = [w["chat"] for w in answered if "chat" in w]
    if chats:
        chat = dict(chats[0])
        chat["users_by_transport"] = dict(chat["users_by_transport"])
        for other in chats[1:]:
            _add_into(chat, other)
        chat["rooms"] = chats[0]["rooms"]
        total["chat"] = chat
    return total


def _add_into(into: Figures, other: Figures) -> None:
    for key, value in other.items():
        if isinstance(value, bool) or key == "rooms":
            continue
        if isinstance(value, int | float):
            into[key] = (into.get(key) or 0) + value
        elif isinstance(value, dict):
            inner = into.setdefault(key, {})
            for name, n in value.items():
                if isinstance(n, int):
                    inner[name] = inner.get(name, 0) + n
