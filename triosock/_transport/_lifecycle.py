"""The shape every ``serve_*`` shares: bind, host the per-peer tasks, stop in two phases.

A server's per-peer tasks (TCP connections, UDP peers, WebSocket connections) live in a
nursery that :meth:`ServerLifecycle._host_tasks` shields from outside cancellation, so
that a stop can be graceful. :func:`run_server` is the skeleton every ``serve_*`` runs:

1. the host starts, and ``task_status.started(server)`` hands the server to the caller;
2. the server's *intake* runs (an accept loop, a datagram receive loop) until a stop is
   requested (:meth:`ServerLifecycle.stop`, or the ``serve_*`` task is cancelled), or
   until it ends by itself;
3. the stop begins: every :meth:`~ServerLifecycle.stop_scope` is cancelled and
   :attr:`~ServerLifecycle.stopping` turns true, so handlers can say goodbye; after
   ``grace_period`` seconds whatever still runs is cancelled. No task outlives the
   nursery, and ``serve_*`` returns once every per-peer task has ended.

A server whose per-peer tasks live elsewhere (websockets' own server) overrides
``_host_tasks`` and keeps the rest. :func:`binding` turns what binding raises into a
:class:`~triosock.BindError` that names the address; :func:`check_port` refuses a port
that is not one.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from abc import ABCMeta
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import trio

from .._errors import BindError, describe_oserror
from .._sansio.addresses import format_address

__all__ = [
    "ConnectionStatistics",
    "ListeningServer",
    "NoPublicConstructor",
    "ServerLifecycle",
    "binding",
    "check_grace",
    "check_port",
    "check_timeout",
    "run_server",
]

_T = TypeVar("_T")


class NoPublicConstructor(ABCMeta):
    """The metaclass of what only a server makes (a connection, a peer, the server's
    record): calling the class raises :class:`TypeError`; triosock makes instances with
    ``cls._create(...)``. As trio's own ``NoPublicConstructor``."""

    def __call__(cls, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            f"triosock.{cls.__qualname__} has no public constructor: a serve_* function "
            "makes it (its handler, or nursery.start, gets it)"
        )

    def _create(cls: type[_T], *args: Any, **kwargs: Any) -> _T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]


def check_timeout(name: str, seconds: float | None) -> None:
    """Refuse a timeout that is not a positive number of seconds (None: no timeout), when
    the server starts rather than when its first peer arrives.

    Raises:
      TypeError: ``seconds`` is not a number.
      ValueError: it is not positive (or is NaN).
    """
    if seconds is None:
        return
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"{name} must be a number of seconds or None, not {seconds!r}")
    if not seconds > 0:
        raise ValueError(f"{name} must be a positive number of seconds: {seconds}")


def check_grace(grace_period: float) -> None:
    """Refuse a grace period that is negative (or NaN), before anything is bound.

    Raises:
      ValueError: ``grace_period`` is not zero or more.
    """
    if not grace_period >= 0:
        raise ValueError(f"grace_period must not be negative: {grace_period}")


def check_port(port: int) -> None:
    """Refuse what is not a port number (a bool, a float, out of 0-65535).

    Raises:
      ValueError: ``port`` is not an integer from 0 to 65535.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer from 0 to 65535, not {port!r}")


@contextlib.contextmanager
def binding(host: str | None, port: int, suffix: str = "") -> Iterator[None]:
    """Turn an :class:`OSError` raised inside into a :class:`~triosock.BindError` that
    names the address (``cannot listen on 127.0.0.1:7: permission denied``); ``suffix``
    follows the address (`` (udp)``)."""
    try:
        yield
    except OSError as exc:
        where = format_address((host or "*", port))
        raise BindError(f"cannot listen on {where}{suffix}: {describe_oserror(exc)}") from exc


def _connection_ended(exc: Exception) -> bool:
    """Whether ``exc`` only says the connection broke or was closed (even from a nursery)."""
    ended = (trio.BrokenResourceError, trio.ClosedResourceError)
    if isinstance(exc, ExceptionGroup):
        return exc.split(ended)[1] is None
    return isinstance(exc, ended)


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    """What every connection server counts (the TCP and WebSocket servers' records
    extend it).

    Attributes:
      open_connections: connections whose handler runs now.
      total_connections: connections served since the server started.
      handler_errors: handlers that raised (each closed its connection only).
      stopping: whether the server has begun to stop.
      refused_per_address: connections refused because their source held the most
        connections one address may (``max_per_address``); not in the totals.
      tls_handshakes_failed: TLS connections closed because their handshake failed or
        did not finish within the server's ``handshake_timeout``; not in the totals.
    """

    open_connections: int
    total_connections: int
    handler_errors: int
    stopping: bool
    refused_per_address: int
    tls_handshakes_failed: int


class ServerLifecycle:
    """Stop state, the shielded task host, and the counters every server keeps.

    Args:
      grace_period: seconds handlers get to finish once the stop begins.
      logger: where a handler's failure is logged.
    """

    def __init__(self, *, grace_period: float, logger: logging.Logger) -> None:
        check_grace(grace_period)
        self.grace_period = grace_period
        self._logger = logger
        self._stop_requested = trio.Event()
        self._stopping = trio.Event()
        # Weak, so that scopes a handler has left do not pile up.
        self._stop_scopes: weakref.WeakSet[trio.CancelScope] = weakref.WeakSet()
        # Around the intake (accept or receive loop): cancelled when a stop is requested.
        self._intake = trio.CancelScope()
        self._handler_errors = 0

    @property
    def stopping(self) -> bool:
        """True once the server has begun to stop."""
        return self._stopping.is_set()

    def stop(self) -> None:
        """Begin the graceful stop; the serving function returns once it has finished."""
        self._stop_requested.set()
        self._intake.cancel()

    async def wait_stopping(self) -> None:
        """Return when the server begins to stop."""
        await self._stopping.wait()

    def stop_scope(self) -> trio.CancelScope:
        """A cancel scope the server cancels when it begins to stop.

        Entered after the stop has begun, the scope is cancelled at once.
        """
        scope = trio.CancelScope()
        if self.stopping:
            scope.cancel()
        else:
            self._stop_scopes.add(scope)
        return scope

    def _handler_failed(self, exc: Exception, what: str) -> None:
        """A handler raised ``exc``: a connection that ended is routine (a debug line);
        anything else is counted and logged with its traceback. Only that peer ends."""
        if _connection_ended(exc):  # also from inside a handler's nursery
            self._logger.debug("%s ended: %r", what, exc)
        else:
            self._handler_errors += 1
            self._logger.exception("handler failed on %s; closing it", what)

    def _begin_stop(self) -> None:
        self._stop_requested.set()
        self._intake.cancel()
        if self._stopping.is_set():
            return
        self._stopping.set()
        for scope in list(self._stop_scopes):
            scope.cancel()
        self._stop_begun()

    def _stop_begun(self) -> None:
        """What a server does once its stop has begun, besides the stop scopes."""

    async def _host_tasks(
        self, *, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the per-peer tasks, shielded from outside cancellation until the grace ends."""
        with trio.CancelScope(shield=True) as scope:
            async with trio.open_nursery() as tasks:
                task_status.started(tasks)
                await self._stop_requested.wait()
                scope.deadline = trio.current_time() + self.grace_period
                self._begin_stop()


_S = TypeVar("_S", bound=ServerLifecycle)


async def run_server(
    server: _S,
    intake: Callable[[trio.Nursery], Awaitable[object]],
    task_status: trio.TaskStatus[_S],
) -> None:
    """The ``serve_*`` skeleton (see the module docstring): host ``server``'s per-peer
    tasks, hand ``server`` to ``task_status``, run ``intake(nursery)`` (which starts each
    peer's task in ``nursery``) until a stop is requested, then stop gracefully.

    Returns once every per-peer task has ended; cancelled from outside, it stops the
    same way and then raises :class:`trio.Cancelled`.
    """
    async with trio.open_nursery() as nursery:
        peers: trio.Nursery = await nursery.start(server._host_tasks)
        task_status.started(server)
        try:
            with server._intake:
                if not server._stop_requested.is_set():
                    await intake(peers)
        finally:
            # Reached by stop() and by outside cancellation alike: the host (shielded)
            # now runs the graceful part, and the nursery waits for it.
            server._begin_stop()


class ListeningServer(ServerLifecycle):
    """A server on TCP listeners: its stop, and where it listens."""

    def __init__(
        self,
        listeners: list[trio.SocketListener],
        *,
        grace_period: float,
        logger: logging.Logger,
    ) -> None:
        super().__init__(grace_period=grace_period, logger=logger)
        self.listeners = listeners
        # Read now: once stopped, the sockets are closed and cannot tell any more.
        self._addresses: list[tuple[str, int]] = [
            (str(name[0]), int(name[1]))
            for name in (listener.socket.getsockname() for listener in listeners)
        ]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) of every listener."""
        return list(self._addresses)

    @property
    def port(self) -> int:
        """The bound port (the same for every listener)."""
        return self._addresses[0][1]
