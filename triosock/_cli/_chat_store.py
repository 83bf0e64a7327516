"""Where ``chat serve`` keeps its history: ``--data DIR`` (a SQLite file there), the
embedded default (the user's state directory), or ``--data none`` (memory only)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from .._accounts import Accounts, MemoryAccounts, SqliteAccounts
from .._errors import TriosockError
from .._hub import Hub
from .._store import MemoryStore, SqliteStore, Store

__all__ = ["DATA_FILE", "NO_DATA", "default_data_dir", "open_accounts", "open_store"]

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
    data: str | None, history: int, stack: contextlib.AsyncExitStack, *, hub: Hub[bytes] | None
) -> tuple[Store, str]:
    """The chat's store, opened in ``stack``, and the start-up line that says where the
    history is.

    Args:
      data: the data directory; None for the default one, :data:`NO_DATA` for none.
      history: lines kept per room.
      stack: where an opened file is closed when the server stops.
      hub: the Redis hub when the rooms are shared through Redis (the history is
        then in Redis Streams, shared too), else None.

    Raises:
      TriosockError: the file cannot be made or read, or is no SQLite database.
    """
    if hub is not None:
        from .._store._redis import RedisStore  # imports coredis: only with --redis

        shared = RedisStore(hub, history)  # type: ignore[arg-type]
        await stack.enter_async_context(shared)
        return shared, (
            f"history: in Redis streams, {history} lines per room, shared by every server"
            " (--data is not used with --redis)"
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


async def open_accounts(
    data: str | None, stack: contextlib.AsyncExitStack, *, redis: str | None
) -> tuple[Accounts, str]:
    """The chat's registered nicks, opened in ``stack``, and the words the history's
    start-up line ends with to say where they are: in Redis (at the URL ``redis``, as
    the rooms) for a cluster, in the data directory's SQLite file beside the history,
    or in memory with ``--data none``.

    Raises:
      TriosockError: the file cannot be made or read, or is no SQLite database.
    """
    if redis is not None:
        from .._accounts._redis import RedisAccounts  # imports coredis: only with --redis

        shared = RedisAccounts(redis)
        await stack.enter_async_context(shared)
        return shared, "accounts in Redis too"
    if data == NO_DATA:
        return MemoryAccounts(), "accounts too"
    path = (Path(data) if data is not None else default_data_dir()) / DATA_FILE
    accounts = SqliteAccounts(path)
    try:
        await stack.enter_async_context(accounts)
    except (OSError, sqlite3.Error) as exc:
        raise TriosockError(f"cannot open the accounts in {path}: {exc}") from None
    return accounts, "accounts there too"
