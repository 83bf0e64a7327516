"""A base for objects that run tasks of their own while their ``async with`` block lasts
(the chat server's fan-out, a Redis hub's reader and publisher, a directory's lease).

trio ties every task to a nursery, and a nursery to a block: such an object's
``__aenter__`` opens one and ``__aexit__`` closes it. :class:`Running` writes that
delegation once; a subclass writes :meth:`Running._run`, an async context manager
(usually an ``@asynccontextmanager`` that opens the nursery, starts the tasks, yields,
and stops them in ``finally``).
"""

from __future__ import annotations

import abc
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Self

__all__ = ["Running"]


class Running(abc.ABC):
    """An object whose ``async with`` block runs :meth:`_run`.

    It runs once at a time: entering it again while it runs raises
    :class:`RuntimeError`; after the block it may run again.
    """

    _running: AbstractAsyncContextManager[None] | None = None

    @abc.abstractmethod
    def _run(self) -> AbstractAsyncContextManager[None]:
        """What runs while the object's block lasts (entered on entry, left on exit)."""

    async def __aenter__(self) -> Self:
        if self._running is not None:
            raise RuntimeError(f"this {type(self).__name__} is running already")
        running = self._run()
        await running.__aenter__()
        self._running = running
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        running, self._running = self._running, None
        if running is None:
            raise RuntimeError(f"this {type(self).__name__} is not running")
        await running.__aexit__(exc_type, exc_value, traceback)
