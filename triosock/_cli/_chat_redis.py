"""The chat's Redis, as the command line finds it: coredis installed, the server at
``--redis`` reachable, or, for ``--workers`` without ``--redis``, a private
redis-server of the supervisor's. Each missing piece is one line (status 1), said
before anything is served: before the workers start, when there are workers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from types import ModuleType
from typing import IO, TYPE_CHECKING, Final

import trio

from .._directory import Directory
from .._hub import Hub
from ._console import CLIError, undo_at_exit_at_once
from ._workerenv import die_with_parent

if TYPE_CHECKING:  # imported on first use at run time: see redis_modules
    from .._directory._redis import RedisDirectory
    from .._hub._redis import RedisHub

__all__ = ["check_reachable", "open_shared_state", "private_redis", "redis_modules"]

LOGGER = logging.getLogger("triosock.chat")

#: Seconds to wait for a Redis to answer a PING, or to connect the hub.
REACH_WAIT: Final = 3.0
#: Seconds a private redis-server may take to say it is ready.
START_WAIT: Final = 10.0
#: Nothing written to disk, in the foreground.
_EPHEMERAL: Final = ("--save", "", "--appendonly", "no", "--daemonize", "no")


def redis_modules() -> tuple[type[RedisHub], type[RedisDirectory], ModuleType]:
    """triosock's Redis hub and directory, and its Redis client module.

    They import coredis, an optional dependency (the ``redis`` extra) that costs half a
    second to import: so here, on first use, not at the top of the module.

    Raises:
      CLIError: coredis is not installed.
    """
    try:
        from .. import _redis
        from .._directory import _redis as directory
        from .._hub import _redis as hub
    except ImportError as exc:
        raise CLIError(f"--redis needs coredis ({exc}): pip install 'triosock[redis]'") from None
    return hub.RedisHub, directory.RedisDirectory, _redis


async def check_reachable(url: str) -> None:
    """Return once the Redis at ``url`` answers a PING.

    Raises:
      CLIError: coredis is not installed, or Redis does not answer (and why).
    """
    _, _, client = redis_modules()
    reason = f"no answer within {REACH_WAIT:g} s"
    with trio.move_on_after(REACH_WAIT):
        try:
            async with client.redis_client(url) as redis:
                await redis.ping()
            return
        except Exception as exc:  # coredis raises several kinds; all mean "not there"
            reason = client.describe_failure(exc)
    raise CLIError(f"cannot reach redis at {url}: {reason}")


async def open_shared_state(
    url: str | None, stack: contextlib.AsyncExitStack
) -> tuple[Hub[bytes] | None, Directory | None]:
    """With a Redis ``url``: a Redis hub and directory, running in ``stack``; without,
    None for both (the chat's in-process ones).

    Raises:
      CLIError: coredis is not installed, or Redis cannot be reached.
    """
    if url is None:
        await trio.lowlevel.checkpoint()
        return None, None
    await check_reachable(url)
    redis_hub, redis_directory, _ = redis_modules()
    hub = await stack.enter_async_context(redis_hub(url))
    directory = await stack.enter_async_context(redis_directory(url))
    with trio.move_on_after(REACH_WAIT):
        await hub.wait_connected()
    LOGGER.info("rooms shared through redis at %s", url)
    return hub, directory


async def private_redis(stack: contextlib.AsyncExitStack) -> str:
    """A redis-server for this server's workers only: a unix socket in a private
    directory, nothing written to disk, stopped with ``stack``; and, should this
    process be killed outright, by the kernel (started from the main thread for that).
    Returns its URL.

    Raises:
      CLIError: coredis is not installed, redis-server is not on the PATH, or it did not
        start.
    """
    redis_modules()  # the workers would need it: say so now, not in every worker
    binary = shutil.which("redis-server")
    if binary is None:
        raise CLIError(
            "--workers shares the rooms through redis: install redis-server (Debian's "
            "package redis-server), or give --redis URL"
        )
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="triosock-redis-"))
    # A second Ctrl-C skips the stack: the directory goes all the same.
    undo_at_exit_at_once(functools.partial(shutil.rmtree, folder, ignore_errors=True))
    path = os.path.join(folder, "redis.sock")
    process = subprocess.Popen(  # noqa: ASYNC220 (a fork and exec, from this thread)
        [binary, "--port", "0", "--unixsocket", path, "--unixsocketperm", "700", *_EPHEMERAL],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C is for us: we stop it after the workers
        preexec_fn=die_with_parent,
    )
    stack.push_async_callback(_stop, process)
    assert process.stdout is not None
    seen = b""
    with trio.move_on_after(START_WAIT):
        while b"ready to accept connections" not in seen.lower():
            line = await trio.to_thread.run_sync(process.stdout.readline, abandon_on_cancel=True)
            if not line:
                break
            seen += line
    if b"ready to accept connections" not in seen.lower():
        last = seen.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise CLIError(f"the private redis-server did not start: {last[0]}")
    # Keep reading what it logs, or it blocks once the pipe is full.
    threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
    LOGGER.info("the workers share a private redis at %s", path)
    return f"unix://{path}"


async def _stop(process: subprocess.Popen[bytes]) -> None:
    with trio.CancelScope(shield=True):
        if process.poll() is None:
            process.terminate()
            with trio.move_on_after(5):
                await trio.to_thread.run_sync(process.wait)
            if process.poll() is None:
                process.kill()
                await trio.to_thread.run_sync(process.wait)
        assert process.stdout is not None
        process.stdout.close()


def _drain(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream.readline():
            pass
