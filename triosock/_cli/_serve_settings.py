"""What every ``serve`` command is asked for, beside its service's own options.

A serve command is parsed once into a frozen settings record: its service's fields and
``common``, a :class:`ServeCommon` (workers, status port, connection limits, grace
period, log level). The record is all a server needs: the supervisor hands it, pickled,
to each worker, which runs it as one process (``workers=1``, its ports fixed, its own
status port). :class:`Served` is what the runner and the supervisor ask of a record;
:class:`ServeSettings` is the base of the records, with the defaults.

The options behind :class:`ServeCommon` are registered here, once, for every serve
command: ``--workers``, ``--status``, ``--max-connections``, ``--idle-timeout``,
``--grace``, ``--config`` and ``-v``/``-q``; and ``--host``/``--port`` for the services
with one address.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol, Self

import trio

from ._console import log_level
from ._parser import Parser
from ._run import Job
from ._status_serve import Status
from ._values import (
    Address,
    count,
    not_negative,
    parse_hostport,
    parse_port,
    positive_or_unlimited,
    workers_count,
)

__all__ = [
    "CONFIG_EXAMPLE",
    "PortSlot",
    "ServeCommon",
    "ServeSettings",
    "Served",
    "add_host_port",
    "add_log_options",
    "add_serve_options",
    "serve_common",
]

#: The line of a config file every serve command's ``--config`` help shows: an option
#: that each of them has (registered below).
CONFIG_EXAMPLE: Final = "max-connections = 500"
#: Seconds a stopping server gives its connections, unless ``--grace`` says otherwise.
DEFAULT_GRACE: Final = 5.0


@dataclass(frozen=True)
class ServeCommon:
    """What a serve command was asked for, whatever the service.

    Attributes:
      service: ``chat``, ``echo``, ``time`` or ``http``.
      prog: how the program was called, for the lines that say what to type.
      workers: processes to serve with (1: this one).
      status: where to answer ``GET /status`` (None: nowhere).
      status_given: the user chose ``status``; a default one that is taken is skipped
        with a warning instead of failing.
      max_connections: connections served at once per listener (None: no limit).
      idle_timeout: seconds a connection may send nothing; None when not given (the
        service's default), ``inf`` for ``none`` (no limit, said on purpose).
      grace: seconds connections get to finish when the server stops.
      log_level: the level of triosock's loggers.
    """

    service: str
    prog: str
    workers: int = 1
    status: Address | None = None
    status_given: bool = False
    max_connections: int | None = None
    idle_timeout: float | None = None
    grace: float = DEFAULT_GRACE
    log_level: int = logging.INFO

    def idle_or(self, default: float | None) -> float | None:
        """The idle timeout to use: ``default`` when none was given, None for ``none``."""
        if self.idle_timeout is None:
            return default
        return None if math.isinf(self.idle_timeout) else self.idle_timeout


@dataclass(frozen=True)
class PortSlot:
    """One port a service binds, as the supervisor sees it: a port given as 0 is chosen
    once, free for every kind it binds, so that every worker binds the same.

    Attributes:
      field: the settings field that holds it.
      host: the address it binds.
      port: the port asked for.
      kinds: what binds it: ``("tcp",)``, ``("udp",)`` or both.
      paired: the field holds ``(host, port)``, not the port alone.
    """

    field: str
    host: str
    port: int
    kinds: tuple[str, ...]
    paired: bool = True

    def value(self, port: int) -> object:
        """The field's value with ``port`` instead."""
        return (self.host, port) if self.paired else port


class Served(Protocol):
    """What the runner and the supervisor ask of a serve command's settings record (a
    frozen dataclass, so that ``dataclasses.replace`` makes a worker's)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def common(self) -> ServeCommon: ...

    def port_slots(self) -> list[PortSlot]:
        """Every port the service binds."""
        ...

    async def prepare(self, stack: contextlib.AsyncExitStack) -> Self:
        """In the supervisor, before any worker starts: check (and start, in ``stack``)
        what the workers share, raising a one-line error for what is missing; return
        the record the workers get."""
        ...

    async def serve(self, status: Status) -> None:
        """In one process: build the service, start its listeners (adding them to
        ``status``) and serve until a stop signal."""
        ...


@dataclass(frozen=True)
class ServeSettings:
    """The base of the settings records: ``common``, and nothing to prepare."""

    common: ServeCommon

    async def prepare(self, stack: contextlib.AsyncExitStack) -> Self:
        await trio.lowlevel.checkpoint()
        return self


def add_log_options(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """``-v/--verbose`` and ``-q/--quiet``, each repeatable. Without ``defaults`` (on a
    command under one that has them) an option left out keeps what was said before it."""
    default: object = 0 if defaults else argparse.SUPPRESS
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="log more: each connection and UDP peer coming and going (-vv: more still)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=default,
        help="log less: warnings only (-qq: errors only)",
    )


def add_host_port(parser: Parser, port: int) -> None:
    """``--host`` and ``--port``, for a service on one address."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=parse_port, default=port, help=f"port (default {port})")


def _status_address(text: str) -> Address | bool:
    """``HOST:PORT``, or False for ``none`` (None stays "not given": the default)."""
    return False if text.lower() == "none" else parse_hostport(text)


def add_serve_options(
    parser: Parser,
    *,
    status_port: int,
    idle_help: str,
    job: Callable[[argparse.Namespace], Job],
    defaults: bool = True,
) -> None:
    """The options every serve command has (see the module notes), and its job.

    Args:
      parser: the command's parser.
      job: makes the command's job from its parsed options.
      status_port: the service's default status port, on 127.0.0.1.
      idle_help: what ``--idle-timeout`` closes, and its default, for this service.
      defaults: False on a command under one that has these options already (``chat
        serve`` under ``chat``): an option left out keeps what was said before it.
    """

    def add(*names: str, default: object, **options: Any) -> None:
        parser.add_argument(*names, default=default if defaults else argparse.SUPPRESS, **options)

    add(
        "--workers",
        type=workers_count,
        default=1,
        metavar="N",
        help="serve with N processes on the same ports (SO_REUSEPORT), restarted when "
        "they die (default 1: this process)",
    )
    add(
        "--status",
        type=_status_address,
        default=None,
        metavar="HOST:PORT|none",
        help=f"where to answer GET /status with this server's figures as JSON (default "
        f"127.0.0.1:{status_port}; skipped with a warning when that is taken; none: "
        "nowhere). Anyone who reaches it sees the figures: keep it on loopback",
    )
    add(
        "--max-connections",
        type=count,
        default=None,
        metavar="N",
        help="connections served at once by each listener; the next wait in the listen "
        "backlog (no limit)",
    )
    add(
        "--idle-timeout",
        type=positive_or_unlimited,
        default=None,
        metavar="SECONDS|none",
        help=idle_help,
    )
    add(
        "--grace",
        type=not_negative,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"seconds connections get to finish (and users to be told) on stop "
        f"({DEFAULT_GRACE:g})",
    )
    parser.add_config_option(CONFIG_EXAMPLE)
    add_log_options(parser, defaults=False)
    parser.set_defaults(job=job)


def serve_common(args: argparse.Namespace, service: str, status_port: int) -> ServeCommon:
    """The :class:`ServeCommon` of a parsed serve command."""
    status: Address | bool | None = args.status  # None: not given; False: none
    where: Address | None = ("127.0.0.1", status_port) if status is None else None
    if isinstance(status, tuple):
        where = status
    return ServeCommon(
        service=service,
        prog=args.prog,
        workers=args.workers,
        status=where,
        status_given=status is not None,
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        grace=args.grace,
        log_level=log_level(getattr(args, "verbose", 0), getattr(args, "quiet", 0)),
    )
