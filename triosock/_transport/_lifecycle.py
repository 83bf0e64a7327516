"""The stop sequence servers share: stop scopes, a grace period, then cancellation.

A server's per-peer tasks (TCP connections, UDP peers) live in a nursery that
:meth:`ServerLifecycle.host_tasks` shields from outside cancellation. Stopping runs in
two phases: first every :meth:`~ServerLifecycle.stop_scope` is cancelled and
:attr:`~ServerLifecycle.stopping` turns true, so handlers can say goodbye; then, after
``grace_period`` seconds, whatever still runs is cancelled. No task outlives the nursery.
"""

from __future__ import annotations

import weakref

import trio

__all__ = ["ListeningServer", "ServerLifecycle"]


class ServerLifecycle:
    """Stop state and the shielded task host that servers build on."""

    def __init__(self, *, grace_period: float) -> None:
        if not grace_period >= 0:
            raise ValueError(f"grace_period must not be negative: {grace_period}")
        self.grace_period = grace_period
        self._stop_requested = trio.Event()
        self._stopping = trio.Event()
        # Weak, so that scopes a handler has left do not pile up.
        self._stop_scopes: weakref.WeakSet[trio.CancelScope] = weakref.WeakSet()

    @property
    def stopping(self) -> bool:
        """True once the server has begun to stop."""
        return self._stopping.is_set()

    def stop(self) -> None:
        """Begin the graceful stop; the serving function returns once it has finished."""
        self._stop_requested.set()

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

    def _begin_stop(self) -> None:
        self._stop_requested.set()
        if self._stopping.is_set():
            return
        self._stopping.set()
        for scope in list(self._stop_scopes):
            scope.cancel()

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

    async def _cancel_when_stop_requested(self, scope: trio.CancelScope) -> None:
        await self._stop_requested.wait()
        scope.cancel()


class ListeningServer(ServerLifecycle):
    """A server on TCP listeners: its stop, and where it listens."""

    def __init__(self, listeners: list[trio.SocketListener], *, grace_period: float) -> None:
        super().__init__(grace_period=grace_period)
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
