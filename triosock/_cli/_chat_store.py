"""Where ``chat serve`` keeps its history: ``--data DIR`` (a SQLite file there), the
embedded default (the user's state directory), or ``--data none`` (memory only)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from .._errors import TriosockError
from .._store import MemoryStore, NullStore, SqliteStore, Store

__all__ = ["DATA_FILE", "NO_DATA", "default_data_dir", "open_store"]

#: The history's file in the data directory.
DATA_FILE = "chat.sqlite3"
#: What ``--data`` says for memory only.
NO_DATA = "none"


def default_data_dir() -> Path:
    """Where the history lives by default: ``$XDG_STATE_HOME/triosock``, or
    ``~/.local/state/triosock`` (the XDG base directory rules' state directory)."""
    state = os.environ.get("XDG_STATE_HOME") or ""
    base = Path(state) if os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "triosock"


async def open_store(
    data: str | None, history: int, stack: contextlib.AsyncExitStack, *, shared: bool
) -> tuple[Store, str]:
    """The chat's store, opened in ``stack``, and the start-up line that says where the
    history is.

    Args:
      data: the data directory; None for the default one, :data:`NO_DATA` for none.
      history: lines kept per room.
      stack: where an opened file is closed when the server stops.
      shared: the rooms are shared through Redis (each process keeps its own history).

    Raises:
      TriosockError: the file cannot be made or read, or is no SQLite database.
    """
    if shared:
        return NullStore(), (
            "history: off with --redis (a history shared by every server is not there "
            "yet; --data applies to one server alone)"
        )
    if data == NO_DATA:
        return MemoryStore(
            history
        ), "history: in memory only (--data none): a restart begins it again"
    path = (Path(data) if data is not None else default_data_dir()) / DATA_FILE
    store = SqliteStore(path, history)
    try:
        await stack.enter_async_context(store)
    except (OSError, sqlite3.Error) as exc:
        raise TriosockError(f"cannot open the history file {path}: {exc}") from None
    return store, f"history: kept in {path} (--data DIR, or none)"
